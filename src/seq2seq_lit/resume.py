"""Resuming a run from a checkpoint, gathered in one place.

``Resume.from_config(cfg)`` is the one entry point of ``train``: it finds and reads the checkpoint
(``ckpt_path=PATH`` or ``last``), checks it fits the run's model and vocabulary, builds the loggers (the W&B
run continues under its id, ``metrics.csv`` starts with the history up to the checkpoint) and the callbacks
(with :class:`RunState`, which saves and restores the torch RNG and the W&B id), and gives ``Trainer.fit`` its
path. The rest travels through Lightning's own checkpoint hooks: the model's non-finite step counters in
``TranslationModule.on_save_checkpoint``, the place in the epoch's batch order in
``TranslationDataModule.state_dict``. Lightning offers no public count of the batches a resumed run skips, so
:func:`batches_done` and :func:`first_logged_step` read its loop progress and follow its restart rule.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch import Callback
from lightning.pytorch.loggers import CSVLogger, WandbLogger

log = logging.getLogger(__name__)


@dataclass
class Resume:
    """The checkpoint a run resumes from; ``path`` and ``ckpt`` are None for a fresh run."""

    path: Path | None = None
    ckpt: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> Resume:
        """The checkpoint ``ckpt_path`` names (a path, or ``last``: the newest readable one of this task's runs)."""
        from seq2seq_lit.checkpoint import find_last_checkpoint, read_checkpoint

        if cfg.get("ckpt_path") is None:
            return cls()
        if cfg.ckpt_path == "last":
            path, ckpt = find_last_checkpoint(Path(cfg.paths.log_dir) / cfg.task_name)
            log.info("ckpt_path=last: resuming from %s", path)
            return cls(path, ckpt)
        path = Path(cfg.ckpt_path).expanduser()
        return cls(path, read_checkpoint(path))

    def check(self, hparams: dict[str, Any], tokenizers: dict[str, Any]) -> None:
        """Fail, naming the key, if the checkpoint holds another architecture or vocabulary than the run."""
        from seq2seq_lit.checkpoint import check_resumable

        if self.ckpt is not None and self.path is not None:
            check_resumable(self.ckpt, self.path, hparams, tokenizers)

    def callbacks(self, group: Any) -> list[Any]:
        """The run's callbacks, and :class:`RunState`."""
        from seq2seq_lit.train import instantiate_group

        return [*instantiate_group(group), RunState()]

    def loggers(self, group: Any) -> list[Any]:
        """The run's loggers; when resuming, W&B continues the checkpoint's run and the CSV keeps its history."""
        from seq2seq_lit.train import instantiate_group

        wandb_id = self.ckpt.get("wandb_id") if self.ckpt is not None else None
        loggers = instantiate_group(group, WandbLogger={"id": wandb_id, "resume": "allow"} if wandb_id else {})
        if self.ckpt is not None and self.path is not None:
            history = read_csv_history(self.path)
            for logger in loggers:
                if history and isinstance(logger, CSVLogger):
                    carry_csv_history(logger, history, before_step=first_logged_step(self.ckpt))
        return loggers


class RunState(Callback):
    """Saves what Lightning does not: the torch RNG (dropout after a resume must draw the masks the
    uninterrupted run would have drawn) and the W&B run id (a resumed run continues the same W&B run)."""

    def __init__(self) -> None:
        self._rng_to_restore: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint["rng_state"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_initialized():
            checkpoint["rng_state"]["cuda"] = torch.cuda.get_rng_state_all()
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                checkpoint["wandb_id"] = logger.version

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._rng_to_restore = checkpoint.get("rng_state")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Restored here, not at load time, so nothing between loading and the first step draws from it.
        rng, self._rng_to_restore = self._rng_to_restore, None
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])


def restart_stage(progress: dict[str, int]) -> str:
    """Where in a training step Lightning's batch progress counts were saved, by Lightning's own rule
    (``_TrainingEpochLoop.update_restart_stage``), which decides what a resumed run repeats.

    ``batch_end``: a batch processed but not yet marked completed (a save in ``on_train_batch_end``);
    ``last``: every count equal (a save after validation or at the epoch's end); ``other``: mid-step
    (an interrupt), where the unfinished batch is trained again.
    """
    ready, started, processed, completed = (progress[k] for k in ("ready", "started", "processed", "completed"))
    if ready == started == processed == completed + 1:
        return "batch_end"
    return "last" if ready == started == processed == completed else "other"


def batches_done(batch_progress: Any) -> int:
    """Training batches of the current epoch that a run resumed from here must not repeat.

    ``batch_progress``: the live ``fit_loop.epoch_loop.batch_progress``. Lightning counts a batch saved at
    its end as done; otherwise only the completed ones.
    """
    current = batch_progress.current
    if restart_stage(batch_progress.total.state_dict()) == "batch_end":
        return current.processed
    return current.completed


def first_logged_step(ckpt: dict[str, Any]) -> int:
    """The logger step of the first metrics a run resumed from ``ckpt`` logs.

    Lightning adds one to its stepped-batch counter on a restart anywhere but at ``last``.
    """
    loop = ckpt["loops"]["fit_loop"]
    step = int(loop["epoch_loop.state_dict"]["_batches_that_stepped"])
    return step if restart_stage(loop["epoch_loop.batch_progress"]["total"]) == "last" else step + 1


def read_csv_history(ckpt_path: str | Path) -> list[dict[str, str]]:
    """The metrics rows of the run that wrote ``ckpt_path`` (``<run>/csv/metrics.csv``), if any."""
    metrics = Path(ckpt_path).resolve().parent.parent / "csv" / "metrics.csv"
    if not metrics.is_file():
        return []
    with metrics.open(newline="") as f:
        return list(csv.DictReader(f))


def carry_csv_history(csv_logger: Any, rows: list[dict[str, str]], before_step: int) -> None:
    """Start a resumed run's ``metrics.csv`` with the rows logged before ``before_step``.

    The rows at or after it came from training the checkpoint never saw; the resumed run logs them again.
    """
    rows = [row for row in rows if row.get("step") and int(row["step"]) < before_step]
    if not rows:
        return
    writer = csv_logger.experiment  # creating it clears an existing metrics.csv: the rows are in memory
    keys = sorted(set().union(*rows))
    Path(writer.log_dir).mkdir(parents=True, exist_ok=True)
    with open(writer.metrics_file_path, "w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=keys)
        out.writeheader()
        out.writerows(rows)
    writer.metrics_keys = keys  # new keys make Lightning rewrite the header, keeping these rows
