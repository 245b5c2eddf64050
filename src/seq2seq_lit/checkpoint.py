"""Checkpoints: safe reading, finding the one to resume from, and checking it fits the run."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

# Hyper-parameters that decide tensor shapes; a checkpoint resumes only into the same ones.
ARCHITECTURE_KEYS = (
    "src_vocab_size", "tgt_vocab_size", "word_vec_size", "hidden_size", "n_layers", "rnn", "attention",
    "tie_embeddings", "share_embeddings",
)  # fmt: skip
# Keys added after checkpoints were first written: an older checkpoint without one had this value.
LATER_KEY_DEFAULTS = {"share_embeddings": False}


def read_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a seq2seq_lit checkpoint, with errors that name the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
        missing = [key for key in ("state_dict", "hyper_parameters", "tokenizers") if key not in ckpt]
    except Exception as err:  # torch raises many types for truncated or foreign files
        reason = f"{type(err).__name__}: {err}"
        raise ValueError(f"ckpt_path={path}: not a readable seq2seq_lit checkpoint ({reason})") from None
    if missing:
        raise ValueError(f"ckpt_path={path}: not a readable seq2seq_lit checkpoint (no {', '.join(missing)})")
    return ckpt


def find_last_checkpoint(task_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """The newest readable checkpoint of the runs under ``task_dir``, and its contents.

    Unreadable newer ones are skipped with a warning.
    """
    task_dir = Path(task_dir)
    candidates = sorted(task_dir.rglob("checkpoints/*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in candidates:
        try:
            return path, read_checkpoint(path)
        except ValueError as err:
            log.warning("ckpt_path=last: skipping %s, the newest checkpoint, as it is unreadable: %s", path, err)
    raise FileNotFoundError(
        f"ckpt_path=last: no readable checkpoint under {task_dir} (looked for */checkpoints/*.ckpt in "
        f"{len(candidates)} files); give a path with ckpt_path=PATH"
    )


def architecture_differences(saved: dict[str, Any], hparams: dict[str, Any]) -> list[str]:
    """The hyper-parameters that decide tensor shapes (``ARCHITECTURE_KEYS``) on which the two disagree."""
    return [key for key in ARCHITECTURE_KEYS if architecture_value(saved, key) != architecture_value(hparams, key)]


def architecture_value(hparams: dict[str, Any], key: str) -> Any:
    """``hparams[key]``, or for a key older checkpoints lack, the value they were trained with."""
    return hparams.get(key, LATER_KEY_DEFAULTS.get(key))


def check_resumable(ckpt: dict[str, Any], path: str | Path, hparams: dict[str, Any], tokenizers: dict) -> None:
    """Fail with the differing keys if ``ckpt`` was trained with another architecture or vocabulary."""
    saved = ckpt["hyper_parameters"]
    diffs = [
        f"model.{key}={architecture_value(saved, key)} there, {architecture_value(hparams, key)} here"
        for key in architecture_differences(saved, hparams)
    ]
    if diffs:
        raise ValueError(
            f"ckpt_path={path} was trained with another model configuration: {'; '.join(diffs)}. Resume with the "
            "run's own config (its config.yaml) or start a new run without ckpt_path"
        )
    for side in ("src", "tgt"):
        if not torch.equal(ckpt["tokenizers"][side], tokenizers[side].as_tensor()):
            raise ValueError(
                f"ckpt_path={path} was trained with another {side} vocabulary than data.* gives here (other data "
                "files, vocab_size or tokenizer settings); resume with the run's own data settings"
            )


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
