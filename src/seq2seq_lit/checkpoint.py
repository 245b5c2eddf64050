"""Checkpoints: safe reading, rebuilding the model they hold, finding the one to resume from, and checking
that one fits the run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seq2seq_lit.data.tokenizer import Tokenizer
from seq2seq_lit.errors import CheckpointError, MissingFileError
from seq2seq_lit.models import RNN_NETWORK, build_model, network_class, network_keys

log = logging.getLogger(__name__)


def architecture_keys(hparams: dict[str, Any]) -> list[str]:
    """The hyper-parameters that decide the network and its tensor shapes (its class, and its arguments but the
    dropout rates); a checkpoint resumes or averages only with the same ones."""
    return ["network"] + [key for key in network_keys(network_class(hparams)) if "dropout" not in key]


def read_checkpoint(path: str | Path, map_location: str = "cpu", key: str = "ckpt_path") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a seq2seq_lit checkpoint, with errors that name the file (as the
    config ``key`` that gave it)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingFileError(f"{key}={path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
        missing = [key for key in ("state_dict", "hyper_parameters", "tokenizers") if key not in ckpt]
    except Exception as err:  # torch raises many types for truncated or foreign files
        reason = f"{type(err).__name__}: {err}"
        raise CheckpointError(f"{key}={path}: not a readable seq2seq_lit checkpoint ({reason})") from None
    if missing:
        raise CheckpointError(f"{key}={path}: not a readable seq2seq_lit checkpoint (no {', '.join(missing)})")
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
        except CheckpointError as err:
            log.warning("ckpt_path=last: skipping %s, the newest checkpoint, as it is unreadable: %s", path, err)
    raise MissingFileError(
        f"ckpt_path=last: no readable checkpoint under {task_dir} (looked for */checkpoints/*.ckpt in "
        f"{len(candidates)} files); give a path with ckpt_path=PATH"
    )


def architecture_differences(saved: dict[str, Any], hparams: dict[str, Any]) -> list[str]:
    """The hyper-parameters that decide the network (``architecture_keys``) on which the two disagree."""
    keys = dict.fromkeys(architecture_keys(saved) + architecture_keys(hparams))
    return [key for key in keys if _network_setting(saved, key) != _network_setting(hparams, key)]


def _network_setting(hparams: dict[str, Any], key: str) -> Any:
    # Checkpoints written before the Transformer name no network: theirs is the RNN.
    return (hparams.get(key) or RNN_NETWORK) if key == "network" else hparams.get(key)


def check_architecture(ckpt: dict[str, Any], where: str, hparams: dict[str, Any], advice: str) -> None:
    """Fail naming each differing key if ``ckpt`` holds another network than ``hparams`` describe."""
    saved = ckpt["hyper_parameters"]
    diffs = [
        f"model.{key}={_network_setting(saved, key)} there, {_network_setting(hparams, key)} here"
        for key in architecture_differences(saved, hparams)
    ]
    if diffs:
        raise CheckpointError(f"{where} was trained with another model configuration: {'; '.join(diffs)}. {advice}")


def check_resumable(ckpt: dict[str, Any], path: str | Path, hparams: dict[str, Any], tokenizers: dict) -> None:
    """Fail with the differing keys if ``ckpt`` was trained with another architecture or vocabulary."""
    advice = "Resume with the run's own config (its config.yaml) or start a new run without ckpt_path"
    check_architecture(ckpt, f"ckpt_path={path}", hparams, advice)
    for side in ("src", "tgt"):
        if not torch.equal(ckpt["tokenizers"][side], tokenizers[side].as_tensor()):
            raise CheckpointError(
                f"ckpt_path={path} was trained with another {side} vocabulary than data.* gives here (other data "
                "files, vocab_size or tokenizer settings); resume with the run's own data settings"
            )


DIRECTIONS = ("src2tgt", "tgt2src")


def network_weights(ckpt: dict[str, Any], direction: str = "src2tgt") -> dict[str, Any]:
    """The network's weights in a checkpoint's state dict: the LightningModule keeps the run's network as
    ``model`` and, in a dual-learning run, the other direction's as ``reverse``."""
    prefix = "model." if direction == "src2tgt" else "reverse."
    return {k.removeprefix(prefix): v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}


def checkpoint_tokenizers(ckpt: dict[str, Any], direction: str = "src2tgt") -> tuple[Tokenizer, Tokenizer]:
    """The source and target tokenizers of a checkpoint's network (``direction=tgt2src``: its reverse one's)."""
    toks = ckpt["tokenizers"]
    prefix = "" if direction == "src2tgt" else "reverse_"
    return Tokenizer.from_tensor(toks[f"{prefix}src"]), Tokenizer.from_tensor(toks[f"{prefix}tgt"])


def direction_hparams(ckpt: dict[str, Any], path: str | Path, direction: str) -> dict[str, Any]:
    """The hyper-parameters of the network that translates in ``direction``: a dual-learning checkpoint
    (``model/objective=dsl``) holds both directions, any other only ``src2tgt``."""
    if direction not in DIRECTIONS:
        raise CheckpointError(f"direction={direction!r}; allowed values: {list(DIRECTIONS)}")
    hparams = ckpt["hyper_parameters"]
    if direction == "src2tgt":
        return hparams
    if "reverse" not in hparams:
        raise CheckpointError(
            f"direction=tgt2src: {path} holds one direction only (trained without model/objective=dsl)"
        )
    return hparams["reverse"]


@dataclass
class Checkpoint:
    """What translating needs from a training checkpoint: the network, its tokenizers, its hyper-parameters."""

    model: nn.Module
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    hparams: dict[str, Any]

    @property
    def data(self) -> dict[str, Any]:
        """The data config the model was trained with."""
        return self.hparams.get("data") or {}


def load_checkpoint(
    path: str | Path, device: str = "cpu", direction: str = "src2tgt", key: str = "ckpt_path"
) -> Checkpoint:
    """Rebuild the network and tokenizers from a checkpoint (``weights_only=True``); the one loader of
    ``translate``, ``evaluate``, ``score_lm`` and the notebook. Needs neither Lightning nor the training config.

    ``direction=tgt2src`` takes the other direction of a dual-learning checkpoint.
    """
    # Read on the CPU: the tokenizers are byte tensors that SentencePiece reads through NumPy.
    ckpt = read_checkpoint(path, key=key)
    hparams = direction_hparams(ckpt, path, direction)
    missing = [name for name in network_keys(network_class(hparams)) if name not in hparams]
    if missing:
        raise CheckpointError(
            f"{key}={path}: its hyper-parameters lack {', '.join(missing)} (written by another version of seq2seq_lit?)"
        )
    model = build_model(hparams).to(device)
    try:
        model.load_state_dict(network_weights(ckpt, direction))
    except RuntimeError as err:
        raise CheckpointError(
            f"{key}={path}: weights do not match the model configuration it records ({err})"
        ) from None
    src, tgt = checkpoint_tokenizers(ckpt, direction)
    return Checkpoint(model.eval(), src, tgt, hparams)


@dataclass
class InitFrom:
    """``init_from=PATH``: a new run (fine-tuning) that starts from a checkpoint's weights and tokenizers, with a
    fresh optimizer, scheduler and step count."""

    path: Path
    ckpt: dict[str, Any]

    @classmethod
    def from_config(cls, cfg: Any, resuming: bool) -> InitFrom | None:
        if not cfg.get("init_from"):
            return None
        if resuming:
            log.info(
                "init_from=%s and ckpt_path=%s: resuming (the checkpoint holds the fine-tuned weights, optimizer "
                "and step); init_from is not used", cfg.init_from, cfg.ckpt_path,
            )  # fmt: skip
            return None
        path = Path(cfg.init_from).expanduser()
        return cls(path, read_checkpoint(path, key="init_from"))

    def tokenizers(self) -> tuple[Tokenizer, Tokenizer]:
        """The checkpoint's tokenizers: the data is encoded with them, so the vocabulary stays the model's."""
        return checkpoint_tokenizers(self.ckpt)

    def load_into(self, module: Any) -> None:
        """Copy the weights into the run's LightningModule, whose network must be the checkpoint's."""
        advice = "Fine-tuning keeps the network: drop the overrides that change it"
        check_architecture(self.ckpt, f"init_from={self.path}", dict(module.hparams), advice)
        module.model.load_state_dict(network_weights(self.ckpt))
        log.info("init_from=%s: weights and tokenizers loaded; optimizer, scheduler and steps start afresh", self.path)
