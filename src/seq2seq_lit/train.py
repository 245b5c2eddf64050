"""Train a translation model: ``python -m seq2seq_lit.train [overrides]``.

Config (conf/train.yaml) -> DataModule (data/datamodule.py) -> TranslationModule (module.py) -> the network
``model.network`` names (models/: rnn/seq2seq.py or transformer.py) -> Trainer -> fit -> test. Heavy imports
live inside ``train`` so ``--help`` and ``--cfg`` stay fast.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from seq2seq_lit.config import register_configs, validate_train_config
from seq2seq_lit.errors import ConfigError, exit_on_user_error

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
    validate_train_config(cfg)

    import lightning as L
    from hydra.utils import instantiate

    from seq2seq_lit.checkpoint import InitFrom
    from seq2seq_lit.precision import resolve_precision
    from seq2seq_lit.resume import Resume

    resume = Resume.from_config(cfg)
    if logging.getLogger().hasHandlers():
        # `import lightning` adds its own console handler; Hydra's handlers already print and file it.
        logging.getLogger("lightning").handlers.clear()
    cfg.seed = resolve_seed(cfg.seed)
    L.seed_everything(cfg.seed, workers=True)
    _share_cpu_threads()
    resolve_precision(cfg.trainer)
    OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)

    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule = instantiate(cfg.data, _convert_="all")
    init = InitFrom.from_config(cfg, resuming=resume.path is not None)
    if init is not None:
        datamodule.use_tokenizers(*init.tokenizers())
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
    resume.check(dict(model.hparams), {"src": datamodule.src_tokenizer, "tgt": datamodule.tgt_tokenizer})
    if init is not None:
        init.load_into(model)

    loggers = resume.loggers(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=resume.callbacks(cfg.get("callbacks")), logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True)})
    summary["params"] = sum(p.numel() for p in model.parameters())

    if cfg.get("train"):
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=resume.path, weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best = monitored_checkpoint(trainer)
    best_path = best.best_model_path if best is not None else ""
    if best is not None and best.best_model_score is not None:
        summary["best"] = {best.monitor: float(best.best_model_score), "path": best_path}
    if cfg.get("test") and datamodule.test_names:
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best_path or None, weights_only=True)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


def resolve_seed(seed: int | None) -> int:
    """``seed``, or for ``seed=null`` a fresh one, logged so the run can be repeated with ``seed=N``.

    A DDP worker process inherits the seed rank 0 drew (Lightning passes it on as ``PL_GLOBAL_SEED``).
    """
    if seed is not None:
        return seed
    inherited = os.environ.get("PL_GLOBAL_SEED") if os.environ.get("LOCAL_RANK", "0") != "0" else None
    seed = int(inherited) if inherited is not None else random.SystemRandom().randrange(2**31)
    log.info("seed=null: this run uses seed %d (repeat it with seed=%d)", seed, seed)
    return seed


def monitored_checkpoint(trainer: Any) -> Any:
    """The ``ModelCheckpoint`` that keeps the best checkpoint by a metric, whatever the callbacks' order
    (``trainer.checkpoint_callback`` is merely the first, e.g. the periodic ``latest.ckpt`` with no monitor)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    monitored = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor]
    return monitored[0] if monitored else None


def optimized_value(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value of ``optimized_metric`` for sweepers.

    A name the run could not have logged (a stage other than train/val/test, or one whose stage ran and logged
    other names: a misspelling) is a config error listing the metrics there are. A run that stopped before
    the metric's stage (``max_steps`` before the first validation) returns None with a warning.
    """
    name = cfg.get("optimized_metric")
    if name is None:
        return None
    if name not in metrics:
        stage = name.split("/")[0]
        if stage not in ("train", "val", "test") or any(key.startswith(f"{stage}/") for key in metrics):
            raise ConfigError(f"optimized_metric={name} is not a metric of this run; its metrics: {sorted(metrics)}")
        log.warning("optimized_metric=%s: the run ended before logging it; returning None", name)
        return None
    value = metrics[name]
    if not math.isfinite(value):
        log.warning("%s is not finite (%s)", name, value)
    return value


def _share_cpu_threads() -> None:
    """Under the joblib launcher, give each of the parallel jobs its share of the CPU threads."""
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

    def run() -> float | None:
        return optimized_value(cfg, train(cfg)[0])

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return run()  # the sweeper records a failed job and goes on
    return exit_on_user_error(run, log)


if __name__ == "__main__":
    main()
