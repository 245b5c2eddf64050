"""Train a translation model: ``python -m seq2seq_lit.train [overrides]``.

Config (conf/train.yaml) -> DataModule (datamodule.py) -> TranslationModule (module.py) -> Seq2Seq
(model.py). Heavy imports live inside ``train`` so ``--help`` and ``--cfg`` stay fast.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from seq2seq_lit.config import register_configs, validate_model_args

log = logging.getLogger(__name__)
register_configs()


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every non-null ``_target_`` entry of a callbacks/logger group."""
    from hydra.utils import instantiate

    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None and "_target_" in node]


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit (and optionally test) a model; return the final metrics and the objects built."""
    m = cfg.model
    validate_model_args(m.hidden_size, m.n_layers, m.dropout, m.rnn, m.word_vec_size, m.tie_embeddings)

    import lightning as L
    from hydra.utils import instantiate

    if logging.getLogger().hasHandlers():
        # `import lightning` adds its own console handler; Hydra's handlers already print and file it.
        logging.getLogger("lightning").handlers.clear()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
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

    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in loggers:
        logger.log_hyperparams({"config": OmegaConf.to_container(cfg, resolve=True)})

    try:
        if cfg.get("train"):
            trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if cfg.get("test") and datamodule.test_names:
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    finally:
        _finish_wandb()
    return metrics, {"cfg": cfg, "datamodule": datamodule, "model": model, "trainer": trainer}


def _finish_wandb() -> None:
    """Close the W&B run so the next job of a multirun starts its own."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics, _ = train(cfg)
    value = metrics.get(cfg.get("optimized_metric"))
    if value is not None and not math.isfinite(value):
        log.warning("%s is not finite (%s)", cfg.optimized_metric, value)
    return value


if __name__ == "__main__":
    main()
