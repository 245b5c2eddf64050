"""Sweeps through Hydra's own engines: Optuna sweeper, joblib launcher, submitit (SLURM) launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

TINY = [
    "experiment=tiny", "logger=csv", "callbacks=none", "model.decoding.val_bleu=false", "test=false",
    "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
]  # fmt: skip


def run(args: list[str], cwd: Path, cache_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEQ2SEQ_LIT_CACHE": str(cache_dir), "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, "-m", "seq2seq_lit.train", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip


def test_optuna_search_records_a_failing_trial_and_goes_on(tmp_path: Path, multi30k_root: Path, cache_dir) -> None:
    args = [
        "-m", "hparams_search=optuna", *TINY, f"data.root={multi30k_root}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "hydra.sweeper.n_trials=4", "hydra.sweeper.sampler.n_startup_trials=4",
        # an odd hidden size fails at start-up: that trial must be recorded as failed, not end the study
        "hydra.sweeper.params={model.hidden_size:'choice(15, 16, 32)',model.dropout:'interval(0.0, 0.3)'}",
    ]  # fmt: skip
    result = run(args, tmp_path, cache_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = [p for p in (tmp_path / "sweep").iterdir() if p.name.isdigit()]
    assert len(jobs) == 4
    hidden = [yaml.safe_load((j / ".hydra" / "overrides.yaml").read_text()) for j in jobs]
    failed = [h for h in hidden if "model.hidden_size=15" in h]
    assert failed and len(failed) < 4, hidden
    assert "Failed experiment" in result.stderr + result.stdout
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        if "model.hidden_size=15" in overrides:
            assert summary["status"] == "failed" and "model.hidden_size=15 must be an even number" in summary["error"]
        else:
            assert summary["status"] == "finished"
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_params"]["model.hidden_size"] in (16, 32) and best["best_value"] > 1


def test_optuna_sqlite_storage_persists_the_study(tmp_path: Path, multi30k_root: Path, cache_dir) -> None:
    db = tmp_path / "optuna.db"
    args = [
        "-m", "hparams_search=optuna", *TINY, f"data.root={multi30k_root}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "hydra.sweeper.n_trials=2", f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=persisted",
        "hydra.sweeper.params={model.hidden_size:'choice(16, 32)'}",
    ]  # fmt: skip
    result = run(args, tmp_path, cache_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    import optuna

    study = optuna.load_study(study_name="persisted", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)


def test_joblib_launcher_runs_jobs_in_parallel_sharing_threads(tmp_path: Path, multi30k_root, cache_dir) -> None:
    args = [
        "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY, f"data.root={multi30k_root}",
        "model.hidden_size=16,32", f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]  # fmt: skip
    result = run(args, tmp_path, cache_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    logs = [(tmp_path / "sweep" / job / "train.log").read_text() for job in ("0", "1")]
    cpus = os.cpu_count() or 1
    threads = max(1, cpus // min(cpus, 2))
    assert all(f"joblib launcher: {min(cpus, 2)} parallel jobs, {threads} threads each" in log for log in logs)
    assert all((tmp_path / "sweep" / job / "summary.json").is_file() for job in ("0", "1"))


def test_submitit_slurm_launcher_composes(tmp_path: Path, cache_dir) -> None:
    args = [
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.partition=gpu",
        "--cfg",
        "hydra",
        "--package",
        "hydra.launcher",
    ]
    result = run(args, tmp_path, cache_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    launcher = yaml.safe_load(result.stdout)
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["partition"] == "gpu"
