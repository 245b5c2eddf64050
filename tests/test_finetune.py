"""``init_from``: fine-tuning starts a new run from a checkpoint's weights and tokenizers."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from conftest import TRAINED_OVERRIDES, compose_train
from test_datamodule import DE, EN, write

from seq2seq_lit.train import train


def finetune_overrides(tmp_path: Path, ckpt: Path, *extra: str) -> list[str]:
    train_files = [write(tmp_path / "ft.en", EN), write(tmp_path / "ft.de", DE)]
    val_files = [write(tmp_path / "ftval.en", EN[:10]), write(tmp_path / "ftval.de", DE[:10])]
    return [
        *TRAINED_OVERRIDES, "data=parallel_text", f"data.train=[{train_files[0]},{train_files[1]}]",
        f"data.val=[{val_files[0]},{val_files[1]}]", f"init_from={ckpt}", "trainer.max_steps=2",
        "trainer.max_epochs=10", *extra,
    ]  # fmt: skip


def test_init_from_keeps_weights_and_vocabulary_and_starts_afresh(
    trained_ckpt: Path, tmp_path: Path, multi30k_root, cache_dir
) -> None:
    # A zero learning rate leaves the weights where init_from put them: the run's last checkpoint shows them.
    cfg = compose_train(
        tmp_path, multi30k_root, cache_dir, finetune_overrides(tmp_path, trained_ckpt, "model.optimizer.lr=0")
    )
    _, objects = train(cfg)
    start = torch.load(trained_ckpt, weights_only=True)
    done = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    for side in ("src", "tgt"):  # the vocabulary is the checkpoint's, not one trained on the new data
        assert torch.equal(done["tokenizers"][side], start["tokenizers"][side])
    weights = objects["model"].state_dict()
    for key, value in start["state_dict"].items():
        assert torch.equal(weights[key], value), key
    trainer = objects["trainer"]
    assert trainer.global_step == 2 < start["global_step"]  # the step count starts at 0
    (state,) = {int(s["step"]) for s in trainer.optimizers[0].state.values()}
    assert state == 2  # a fresh optimizer: two updates, not the old run's count plus two


def test_init_from_another_architecture_names_the_key(trained_ckpt: Path, tmp_path: Path, multi30k_root, cache_dir):
    cfg = compose_train(
        tmp_path, multi30k_root, cache_dir, finetune_overrides(tmp_path, trained_ckpt, "model.hidden_size=64")
    )
    with pytest.raises(ValueError, match=rf"init_from={trained_ckpt} was trained with another model configuration: "
                                         r"model.hidden_size=128 there, 64 here"):  # fmt: skip
        train(cfg)


def test_ckpt_path_wins_over_init_from(trained_ckpt: Path, tmp_path: Path, multi30k_root, cache_dir, caplog) -> None:
    overrides = [*TRAINED_OVERRIDES, f"init_from={tmp_path / 'missing.ckpt'}", f"ckpt_path={trained_ckpt}"]
    cfg = compose_train(tmp_path, multi30k_root, cache_dir, overrides)
    with caplog.at_level(logging.INFO):
        train(cfg)
    assert "init_from is not used" in caplog.text  # resumed, so the missing init_from file was never read
