"""End to end: the CLI in a subprocess, a short real Multi30k run, overfitting, checkpoints, packaging."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import ROOT, compose_train
from omegaconf import OmegaConf

from seq2seq_lit.train import train

TINY = ["experiment=tiny", "logger=csv", "~callbacks.rich_progress_bar"]


def run_cli(args: list[str], cwd: Path, cache_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEQ2SEQ_LIT_CACHE": str(cache_dir), "WANDB_MODE": "offline", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "seq2seq_lit.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def summary_minutes(run_dir: Path) -> float:
    """The run's whole wall time in minutes (summary.json), which bounds every time it logged."""
    return json.loads((run_dir / "summary.json").read_text())["wall_time_s"] / 60 + 0.01


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_cli_fast_dev_run_from_any_directory(tmp_path: Path, multi30k_root: Path, cache_dir: Path) -> None:
    result = run_cli([*TINY, f"data.root={multi30k_root}", "debug=fdr"], tmp_path, cache_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    assert (run_dir / "config.yaml").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "train.log").is_file()


def test_cli_help_and_cfg(tmp_path: Path, cache_dir: Path) -> None:
    help_out = run_cli(["--help"], tmp_path, cache_dir)
    assert help_out.returncode == 0 and "model: lm, rnn, transformer" in help_out.stdout
    assert "data: hf, multi30k, parallel_text" in help_out.stdout
    cfg_out = run_cli(["model.hidden_size=512", "--cfg", "job"], tmp_path, cache_dir)
    assert cfg_out.returncode == 0 and "hidden_size: 512" in cfg_out.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.hidden_size=511", "model.hidden_size=511 must be an even number"),
        ("model.n_layers=0", "model.n_layers=0 must be >= 1"),
        ("model.dropout=1.0", "model.dropout=1.0 must be in [0, 1)"),
        ("model.hidden_size=abc", "model.hidden_size"),
        ("model.hiden_size=3", "hiden_size"),
        ("data.max_tokens=50", "data.max_tokens=50 is smaller than the longest allowed example (data.max_length=100"),
        ("data.spm_model_type=wordpiece", "data.spm_model_type='wordpiece'; allowed values"),
        ("model=nonexistent", "Could not find 'model/nonexistent'"),
        ("model.share_embeddings=true", "model.share_embeddings=true needs data.joint_vocab=true"),
        ("model=transformer model.hidden_size=250", "model.hidden_size=250 must be a multiple of model.n_heads=4"),
        ("model=transformer model.norm=foo", "model.norm='foo' is not supported; allowed values: ['pre', 'post']"),
        ("model=transformer model.dropout=-0.1", "model.dropout=-0.1 must be in [0, 1)"),
        ("model=transformer model.word_vec_size=64", "Key 'word_vec_size' not in 'TransformerConfig'"),
        ("model=transformer model.share_embeddings=true", "model.share_embeddings=true needs data.joint_vocab=true"),
        ("data.tgt_lang=xx", "error: data.tgt_lang='xx' is not a Multi30k language"),  # raised in instantiate
    ],
)
def test_cli_bad_settings_fail_before_any_work(override, message, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = run_cli([*override.split(), "data.root=/nonexistent"], tmp_path, cache)
    assert result.returncode == 1
    assert message in result.stderr + result.stdout
    assert not cache.exists(), "no tokenizer trained, no corpus encoded"
    assert "Traceback" not in result.stderr


def test_short_real_run_logs_curves_and_saves_a_self_contained_checkpoint(
    tmp_path: Path, multi30k_root: Path, cache_dir: Path
) -> None:
    cfg = compose_train(
        tmp_path,
        multi30k_root,
        cache_dir,
        [
            "experiment=tiny",
            "logger=default",
            "~callbacks.rich_progress_bar",
            "trainer.limit_train_batches=40",
            "trainer.limit_val_batches=4",
            "trainer.limit_test_batches=2",
            "trainer.log_every_n_steps=10",
            "model/scheduler=plateau",
            "model.optimizer.lr=0.01",  # a model that emits words after 40 steps, so val/bleu is above 0
        ],
    )
    metrics, objects = train(cfg)
    run_dir = tmp_path / "run"
    rows = read_metrics(run_dir)
    steps = [r for r in rows if r.get("train/loss_step")]
    assert len(steps) == 4 and all(float(r["train/ppl_step"]) > 1 for r in steps)
    assert float(steps[-1]["train/loss_step"]) < float(steps[0]["train/loss_step"])  # it learns
    assert any(r.get("val/ppl") for r in rows) and any(r.get("lr") for r in rows)
    speeds = [float(r["train/tok_s"]) for r in rows if r.get("train/tok_s")]
    assert len(speeds) == 4 and min(speeds) > 0
    assert "test/ppl" in metrics and metrics["val/ppl"] > 1
    # The best checkpoint was tested with beam search; hypotheses and a sacreBLEU report were written.
    report = json.loads((run_dir / "test" / "test_2016_flickr.json").read_text())
    assert report["bleu"] == pytest.approx(metrics["test/bleu"], abs=0.01) and "chrf" in report
    assert report["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    hyps = (run_dir / "test" / "test_2016_flickr.hyp").read_text().splitlines()
    # limit_test_batches=2: the two batches' sentences are scored; the file still has a line per source line.
    dm = objects["datamodule"]
    tested = [i for batch in list(dm.test_dataloader()[0].batch_sampler)[:2] for i in batch]
    lines, n_lines = dm.file_lines("test_2016_flickr", tested)
    assert len(hyps) == n_lines == 1000 and report["sentences"] == len(tested) > 0
    assert all(hyps[line] for line in lines) and not any(hyps[i] for i in set(range(1000)) - set(lines))
    # W&B ran offline, in the run directory, without any account.
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    # Attention heatmaps of two fixed validation sentences: PNG in the run directory and W&B images.
    pngs = sorted((run_dir / "attention").glob("val*_step*.png"))
    assert [p.name[:4] for p in pngs] == ["val0", "val1"] and all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
    images = (run_dir / "wandb").glob("offline-run-*/files/media/images/val/attention_*.png")
    assert {p.name.split("_")[1] for p in images} == {"0", "1"}  # one W&B key per sentence

    # The checkpoint opens with weights_only=True and carries the tokenizers and the config.
    ckpt_path = run_dir / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert set(ckpt["tokenizers"]) == {"src", "tgt"}
    hp = ckpt["hyper_parameters"]
    assert hp["hidden_size"] == 64 and hp["data"]["src_lang"] == "en" and hp["optimizer"]["lr"] == 0.01

    # Reloaded alone, it reproduces the logged corpus-level val/ppl on the same batches.
    from seq2seq_lit.module import TranslationModule

    module = TranslationModule.load_from_checkpoint(ckpt_path, weights_only=True).eval()
    assert module.src_tokenizer.encode(["A dog."]) == objects["datamodule"].src_tokenizer.encode(["A dog."])
    val_loader = objects["datamodule"].val_dataloader()
    hyps, refs = [], []
    with torch.no_grad():
        for i, batch in enumerate(val_loader):
            if i == 4:
                break
            module.shared_step(batch, "val")
            hyps += module.decode(batch, beam_size=1)
            refs += objects["datamodule"].references("val", batch["ids"].tolist())
    # ... and the logged val/bleu is sacreBLEU's corpus BLEU (13a, the default exponential smoothing) of its
    # greedy translations of those sentences.
    from sacrebleu.metrics import BLEU

    logged_bleu = [float(r["val/bleu"]) for r in rows if r.get("val/bleu")][-1]
    assert logged_bleu == pytest.approx(BLEU().corpus_score(hyps, [refs]).score, abs=0.005) and logged_bleu > 0
    logged = [float(r["val/ppl"]) for r in rows if r.get("val/ppl")][-1]
    assert module.ppl["val_"].compute().item() == pytest.approx(logged, rel=1e-4)

    # A report of the run: curves as PNG, from the files alone.
    from seq2seq_lit.report import main as report

    report([str(run_dir)])
    for name in ("loss.png", "ppl.png", "bleu.png", "bleu_vs_minutes.png"):
        assert (run_dir / "report" / name).read_bytes()[:4] == b"\x89PNG"
    minutes = [float(r["val/minutes"]) for r in rows if r.get("val/minutes")]
    assert minutes and minutes == sorted(minutes) and 0 < minutes[-1] < summary_minutes(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["params"] == sum(p.numel() for p in module.parameters())


def test_seed_zero_is_honoured(tmp_path: Path, multi30k_root: Path, cache_dir: Path) -> None:
    def run(seed: int, name: str) -> float:
        overrides = [
            *TINY,
            f"seed={seed}",
            "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=2",
            "test=false",
        ]
        cfg = compose_train(tmp_path / name, multi30k_root, cache_dir, overrides)
        return train(cfg)[0]["val/ppl"]

    assert run(0, "a") == run(0, "b") != run(1, "c")


def test_max_time_ends_a_run_inside_its_first_epoch(tmp_path: Path, multi30k_root: Path, cache_dir: Path) -> None:
    # A fine-tuning run (MRT) can have epochs far longer than its time budget; Lightning's min_epochs would
    # keep it training to the end of the epoch.
    overrides = [*TINY, "trainer.max_time=00:00:00:02", "trainer.max_epochs=1", "test=false"]
    _, objects = train(compose_train(tmp_path, multi30k_root, cache_dir, overrides))
    trainer = objects["trainer"]
    assert 0 < trainer.global_step < trainer.num_training_batches


def test_one_embedding_matrix_for_source_target_and_output_survives_the_checkpoint(
    tmp_path: Path, multi30k_root: Path, cache_dir: Path
) -> None:
    from seq2seq_lit.translator import Translator

    overrides = [*TINY, "trainer.max_steps=3", "trainer.limit_val_batches=1", "test=false", "data.joint_vocab=true"]
    overrides += ["model.share_embeddings=true", "model.tie_embeddings=true"]
    train(compose_train(tmp_path, multi30k_root, cache_dir, overrides))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    assert torch.equal(saved["model.encoder.embedding.weight"], saved["model.generator.output.weight"])
    model = Translator.from_checkpoint(ckpt).model
    assert model.encoder.embedding.weight is model.decoder.embedding.weight is model.generator.output.weight
    torch.testing.assert_close(model.generator.proj.weight, saved["model.generator.proj.weight"])


FAMILY_OVERFIT = {
    "rnn": ["model.hidden_size=128", "model.word_vec_size=64", "model.optimizer.lr=0.005"],
    "transformer": [
        "model=transformer", "model.hidden_size=64", "model.ffn_size=128", "model.n_layers=2",
        "model.optimizer.lr=0.003",
    ],
}  # fmt: skip


@pytest.mark.parametrize("family", FAMILY_OVERFIT)
def test_overfit_a_few_sentences(family: str, tmp_path: Path, multi30k_root: Path, cache_dir: Path) -> None:
    cfg = compose_train(
        tmp_path,
        multi30k_root,
        cache_dir,
        [
            "experiment=tiny",
            "logger=csv",
            "debug=overfit",
            "callbacks=none",  # no attention plots either
            "data.batch_size=8",
            "trainer.overfit_batches=1",
            "trainer.max_epochs=150",
            "model.decoding.val_bleu=false",
            *FAMILY_OVERFIT[family],
        ],
    )
    metrics, _ = train(cfg)
    assert metrics["train/ppl_epoch"] < 1.5


def test_configs_ship_in_a_plain_wheel(tmp_path: Path, cache_dir: Path) -> None:
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, ROOT], check=True)
    (wheel,) = tmp_path.glob("seq2seq_lit-*.whl")
    assert "seq2seq_lit/conf/train.yaml" in zipfile.ZipFile(wheel).namelist()
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", tmp_path / "site", wheel], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(tmp_path / "site")}
    result = run_cli(["model.hidden_size=512", "--cfg", "job"], elsewhere, cache_dir, env)
    assert result.returncode == 0, result.stderr
    assert "hidden_size: 512" in result.stdout
    where = subprocess.run(
        [sys.executable, "-c", "import seq2seq_lit; print(seq2seq_lit.__file__)"],
        cwd=elsewhere, env={**os.environ, **env}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(tmp_path / "site"))


def test_multirun_gives_each_job_its_own_directory_metrics_and_wandb_run(
    tmp_path: Path, multi30k_root: Path, cache_dir: Path
) -> None:
    args = [
        "-m", "experiment=tiny", "logger=default", "~callbacks.rich_progress_bar", f"data.root={multi30k_root}",
        "model=rnn,transformer", "model.hidden_size=32,64", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "model.decoding.val_bleu=false", "test=false", f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]  # fmt: skip
    result = run_cli(args, tmp_path, cache_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    configs, run_ids = set(), set()
    for job in jobs:
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        configs.add(tuple(line for line in overrides.splitlines() if "hidden_size" in line or "model=" in line))
        assert any(r.get("val/ppl") for r in read_metrics(job))
        (wandb_run,) = (job / "wandb").glob("offline-run-*")
        run_ids.add(wandb_run.name.rsplit("-", 1)[-1])
        # Named after its overrides, grouped by sweep (the offline run file holds both strings).
        record = next(wandb_run.glob("run-*.wandb")).read_bytes()
        assert b"model.hidden_size=" in record and b"model=" in record and b"train-sweep" in record
        assert (job / "checkpoints" / "last.ckpt").is_file()
    assert len(configs) == 4 and len(run_ids) == 4  # distinct configs, one W&B run each

    # The sweep report: one row per job, sorted by the optimised metric, and a plot per swept parameter.
    report = subprocess.run(
        [sys.executable, "-m", "seq2seq_lit.report", str(tmp_path / "sweep")], capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr
    with open(tmp_path / "sweep" / "report" / "report.csv") as f:
        table = list(csv.DictReader(f))
    assert sorted(r["job"] for r in table) == ["0", "1", "2", "3"]
    assert all(r["status"] == "finished" and int(r["params"]) > 0 for r in table)
    ppl = [float(r["val/ppl"]) for r in table]
    assert ppl == sorted(ppl)
    for job in table:
        assert "model.hidden_size=" in job["overrides"] and "model=" in job["overrides"]
    # Both families in one sweep, each built as its config says.
    assert {r["params"] for r in table if "model=transformer" in r["overrides"]}.isdisjoint(
        {r["params"] for r in table if "model=rnn" in r["overrides"]}
    )
    pngs = sorted(p.name for p in (tmp_path / "sweep" / "report").glob("*.png"))
    assert pngs == ["val_ppl_vs_model.hidden_size.png", "val_ppl_vs_model.png"]
    for png in (tmp_path / "sweep" / "report").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| job |" in (tmp_path / "sweep" / "report" / "report.md").read_text()


def test_seed_null_draws_a_seed_that_repeats_the_run(tmp_path: Path, multi30k_root: Path, cache_dir: Path) -> None:
    def run(seed: str, name: str) -> tuple[float, int]:
        overrides = [
            *TINY,
            f"seed={seed}",
            "trainer.limit_train_batches=3",
            "trainer.limit_val_batches=2",
            "test=false",
        ]
        metrics, _ = train(compose_train(tmp_path / name, multi30k_root, cache_dir, overrides))
        saved = OmegaConf.load(tmp_path / name / "run" / "config.yaml")
        assert saved.data.seed == saved.seed  # the batch order used the drawn seed too
        return metrics["val/ppl"], saved.seed

    ppl, seed = run("null", "drawn")
    assert isinstance(seed, int)
    assert run(str(seed), "repeated") == (ppl, seed)


def test_the_monitored_checkpoint_is_tested_whatever_the_callback_order(
    tmp_path: Path, multi30k_root: Path, cache_dir: Path
) -> None:
    overrides = [
        *TINY, "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "callbacks.periodic_checkpoint.every_n_train_steps=1", "callbacks.periodic_checkpoint.train_time_interval=null",
        "model.decoding.val_bleu=false", "~callbacks.attention_plots",
    ]  # fmt: skip
    cfg = compose_train(tmp_path, multi30k_root, cache_dir, overrides)
    callbacks = OmegaConf.to_container(cfg.callbacks, resolve=True)
    # The periodic checkpoint (no monitor) first: Trainer.checkpoint_callback is then latest.ckpt's.
    cfg.callbacks = {"periodic_checkpoint": callbacks.pop("periodic_checkpoint"), **callbacks}
    _, objects = train(cfg)
    best = tmp_path / "run" / "checkpoints" / "epoch_000.ckpt"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best"]["path"] == str(best) and set(summary["best"]) == {"val/ppl", "path"}
    assert objects["trainer"].ckpt_path == str(best)  # what the test stage loaded


def test_last_ckpt_holds_the_final_weights_when_the_monitored_metric_stops_improving(
    tmp_path: Path, multi30k_root: Path, cache_dir: Path
) -> None:
    # monitor=epoch, mode=min: only the first epoch is ever the best, so the top-k checkpoint stops at step 2.
    # Lightning's own save_last writes last.ckpt only beside a top-k save; ours must follow every epoch.
    overrides = [
        *TINY, "trainer.max_epochs=3", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test=false",
        "callbacks.model_checkpoint.monitor=epoch", "callbacks.model_checkpoint.mode=min",
        "~callbacks.early_stopping", "~callbacks.attention_plots", "model.decoding.val_bleu=false",
    ]  # fmt: skip
    _, objects = train(compose_train(tmp_path, multi30k_root, cache_dir, overrides))
    checkpoints = tmp_path / "run" / "checkpoints"
    assert torch.load(checkpoints / "epoch_000.ckpt", weights_only=True)["global_step"] == 2
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert last["global_step"] == objects["trainer"].global_step == 6
    weights = objects["model"].state_dict()
    assert all(torch.equal(last["state_dict"][name], weights[name].cpu()) for name in weights)


def test_a_misspelled_optimized_metric_fails_naming_the_metrics(tmp_path: Path, multi30k_root: Path, cache_dir: Path):
    args = [*TINY, f"data.root={multi30k_root}", "debug=fdr", "optimized_metric=val/pll"]
    result = run_cli(args, tmp_path, cache_dir)
    assert result.returncode == 1
    assert "error: optimized_metric=val/pll is not a metric of this run; its metrics: [" in result.stderr
    assert "'val/ppl'" in result.stderr and "Traceback" not in result.stderr


def test_test_hypotheses_are_line_aligned_with_the_source_file(
    tmp_path: Path, multi30k_root: Path, cache_dir: Path
) -> None:
    from seq2seq_lit.data.corpus import read_parallel

    src_lines, tgt_lines = (side[:8] for side in read_parallel(*(multi30k_root / f"val.{x}.gz" for x in ("en", "de"))))
    src_lines[3] = tgt_lines[5] = ""  # two pairs the data module drops as empty
    (tmp_path / "test.en").write_text("\n".join(src_lines) + "\n")
    (tmp_path / "test.de").write_text("\n".join(tgt_lines) + "\n")
    data = [
        "data=parallel_text", f"data.train=[{multi30k_root}/train.en.gz,{multi30k_root}/train.de.gz]",
        f"data.val=[{multi30k_root}/val.en.gz,{multi30k_root}/val.de.gz]",
        f"data.test=[{tmp_path}/test.en,{tmp_path}/test.de]", "data.vocab_size=1000", "data.max_tokens=2048",
    ]  # fmt: skip
    overrides = [
        *TINY,
        *data,
        "trainer.limit_train_batches=40",
        "trainer.limit_val_batches=1",
        "~callbacks.attention_plots",
        "model.decoding.val_bleu=false",
        "model.optimizer.lr=0.01",  # a model that emits words after 40 steps
    ]
    train(compose_train(tmp_path, multi30k_root, cache_dir, overrides))
    hyps = (tmp_path / "run" / "test" / "test.hyp").read_text().split("\n")
    assert hyps[-1] == "" and len(hyps[:-1]) == 8  # one line per source line
    # Line N holds the translation of source line N (as the tested checkpoint translates it alone).
    from seq2seq_lit.config import DecodingConfig
    from seq2seq_lit.translator import Translator

    best = json.loads((tmp_path / "run" / "summary.json").read_text())["best"]["path"]
    cfg = DecodingConfig(beam_size=5)  # the module's test beam and search limits
    expected = [h[0].text for h in Translator.from_checkpoint(best).translate(src_lines, cfg)]
    assert [hyps[i] for i in (0, 1, 2, 4, 6, 7)] == [expected[i] for i in (0, 1, 2, 4, 6, 7)]
    assert hyps[3] == hyps[5] == ""  # the dropped pairs: empty lines
    assert len({expected[i] for i in (0, 1, 2, 4, 6, 7)}) >= 2  # not all alike, so a shifted line would show
    assert json.loads((tmp_path / "run" / "test" / "test.json").read_text())["sentences"] == 6
