"""Train a translation model: ``python -m seq2seq_lit.train [overrides]``.

Config (conf/train.yaml) -> DataModule (datamodule.py) -> TranslationModule (module.py) -> Seq2Seq
(model.py). Heavy imports live inside ``train`` so ``--help`` and ``--cfg`` stay fast.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from seq2seq_lit.config import register_configs, validate_data_args, validate_model_args

log = logging.getLogger(__name__)
register_configs()


def instantiate_group(group: DictConfig | None, **extra: dict[str, Any]) -> list[Any]:
    """Instantiate every non-null ``_target_`` entry of a callbacks/logger group.

    ``extra`` maps a class name (``WandbLogger``) to further keyword arguments for entries of that class.
    """
    from hydra.utils import instantiate

    if not group:
        return []
    nodes = [node for node in group.values() if node is not None and "_target_" in node]
    return [instantiate(node, **extra.get(node._target_.rsplit(".", 1)[-1], {})) for node in nodes]


def load_resume_checkpoint(cfg: DictConfig) -> tuple[Path | None, dict[str, Any] | None]:
    """The checkpoint ``ckpt_path`` names (a path, or ``last``: the newest readable one of this task's runs)
    and its contents; ``(None, None)`` when not resuming."""
    from seq2seq_lit.checkpoint import find_last_checkpoint, read_checkpoint

    if cfg.get("ckpt_path") is None:
        return None, None
    if cfg.ckpt_path == "last":
        path, ckpt = find_last_checkpoint(Path(cfg.paths.log_dir) / cfg.task_name)
        log.info("ckpt_path=last: resuming from %s", path)
        return path, ckpt
    path = Path(cfg.ckpt_path).expanduser()
    return path, read_checkpoint(path)


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit (and optionally test) a model; return the final metrics and the objects built.

    ``summary.json`` in the run directory records the outcome (finished/failed), wall time, parameter
    count and metrics, whatever happens.
    """
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"status": "failed", "params": None, "metrics": {}}
    start = time.time()
    try:
        metrics, objects = _train(cfg, output_dir, summary)
        summary.update(status="finished", metrics=metrics)
        return metrics, objects
    except BaseException as err:
        summary["error"] = f"{type(err).__name__}: {err}"
        raise
    finally:
        summary["wall_time_s"] = round(time.time() - start, 1)
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        _finish_wandb()


def _train(cfg: DictConfig, output_dir: Path, summary: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    m = cfg.model
    validate_model_args(m.hidden_size, m.n_layers, m.dropout, m.rnn, m.word_vec_size)
    validate_data_args(cfg.data)
    if m.get("share_embeddings") and not cfg.data.get("joint_vocab"):
        raise ValueError("model.share_embeddings=true needs data.joint_vocab=true: one vocabulary for both languages")

    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.loggers import CSVLogger

    from seq2seq_lit.checkpoint import carry_csv_history, check_resumable, first_logged_step, read_csv_history

    ckpt_path, resume = load_resume_checkpoint(cfg)
    if logging.getLogger().hasHandlers():
        # `import lightning` adds its own console handler; Hydra's handlers already print and file it.
        logging.getLogger("lightning").handlers.clear()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    _share_cpu_threads()

    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)

    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule = instantiate(cfg.data, _convert_="all")
    # Tokenizers are needed to size the model, so set up the data before the Trainer does.
    datamodule.prepare_data()
    datamodule.setup("fit")

    log.info("Instantiating model <%s>", cfg.model._target_)
    model = instantiate(
        cfg.model,
        src_vocab_size=len(datamodule.src_tokenizer),
        tgt_vocab_size=len(datamodule.tgt_tokenizer),
        data=OmegaConf.to_container(cfg.data, resolve=True),
        _recursive_=False,
        _convert_="all",
    )
    model.set_tokenizers(datamodule.src_tokenizer, datamodule.tgt_tokenizer)
    if resume is not None:
        tokenizers = {"src": datamodule.src_tokenizer, "tgt": datamodule.tgt_tokenizer}
        check_resumable(resume, ckpt_path, dict(model.hparams), tokenizers)

    callbacks = instantiate_group(cfg.get("callbacks"))
    # A resumed run continues its W&B run, and its metrics.csv starts with the history up to the checkpoint.
    wandb_id = resume.get("wandb_id") if resume is not None else None
    loggers = instantiate_group(cfg.get("logger"), WandbLogger={"id": wandb_id, "resume": "allow"} if wandb_id else {})
    history = read_csv_history(ckpt_path) if resume is not None else []
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True)})
        if history and isinstance(logger, CSVLogger):
            carry_csv_history(logger, history, before_step=first_logged_step(resume))

    summary["params"] = sum(p.numel() for p in model.parameters())
    if cfg.get("train"):
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.best_model_score is not None:
        summary["best"] = {checkpoint.monitor: float(checkpoint.best_model_score), "path": checkpoint.best_model_path}
    if cfg.get("test") and datamodule.test_names:
        best = checkpoint.best_model_path if checkpoint else ""
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


def _share_cpu_threads() -> None:
    """Under the joblib launcher, give each of the parallel jobs its share of the CPU threads."""
    import os

    import torch
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    launcher = HydraConfig.get().launcher
    if "joblib" not in str(launcher.get("_target_", "")):
        return
    cpus = os.cpu_count() or 1
    n_jobs = launcher.get("n_jobs", -1)
    parallel = cpus if n_jobs in (None, -1) else min(cpus, abs(n_jobs))
    torch.set_num_threads(max(1, cpus // parallel))
    log.info("joblib launcher: %d parallel jobs, %d threads each", parallel, torch.get_num_threads())


def _finish_wandb() -> None:
    """Close the W&B run so the next job of a multirun starts its own."""

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        metrics, _ = train(cfg)
    except (ValueError, OSError, FloatingPointError) as err:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the failed job and goes on
        # Bad input or config: the message names the file or key; a traceback would only bury it.
        log.error("%s", err)
        sys.exit(f"error: {err}")
    value = metrics.get(cfg.get("optimized_metric"))
    if value is not None and not math.isfinite(value):
        log.warning("%s is not finite (%s)", cfg.optimized_metric, value)
    return value


if __name__ == "__main__":
    main()
