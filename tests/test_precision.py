"""seq2seq_lit.precision: bf16 settings fall back to float32 on a CPU without bfloat16, and only there."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from conftest import compose_train
from omegaconf import OmegaConf

from seq2seq_lit import precision
from seq2seq_lit.train import train


@pytest.fixture
def cpu_bf16(monkeypatch: pytest.MonkeyPatch):
    """Set whether this CPU has bfloat16; each test sees the warnings afresh."""

    def set_to(value: bool) -> None:
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda: value)
        precision._warn_float32.cache_clear()

    return set_to


@pytest.mark.parametrize("value", ["bf16-mixed", "bf16-true"])
def test_bf16_training_on_a_cpu_without_it_falls_back_to_float32_naming_the_key(value, cpu_bf16, caplog) -> None:
    cpu_bf16(False)
    trainer = OmegaConf.create({"accelerator": "cpu", "precision": value})
    with caplog.at_level(logging.WARNING, logger="seq2seq_lit.precision"):
        precision.resolve_precision(trainer)
    assert trainer.precision == "32-true"
    assert f"trainer.precision={value}" in caplog.text and "AVX-512 or AMX" in caplog.text


@pytest.mark.parametrize(
    ("has_bf16", "accelerator", "value"),
    [(True, "cpu", "bf16-mixed"), (False, "cpu", "32-true"), (False, "cpu", "16-mixed"), (False, "gpu", "bf16-mixed")],
)
def test_precision_is_kept_where_it_runs(has_bf16, accelerator, value, cpu_bf16, caplog) -> None:
    cpu_bf16(has_bf16)
    trainer = OmegaConf.create({"accelerator": accelerator, "precision": value})
    precision.resolve_precision(trainer)
    assert trainer.precision == value and not caplog.text


def test_decoding_bf16_is_dropped_only_on_a_cpu_without_it(cpu_bf16, caplog) -> None:
    cpu_bf16(False)
    with caplog.at_level(logging.WARNING, logger="seq2seq_lit.precision"):
        assert precision.autocast_bf16(True, torch.device("cpu"), "bf16") is False
        assert precision.autocast_bf16(True, "cpu", "bf16") is False
    assert caplog.text.count("bf16=true") == 1  # warned once, not per batch
    assert precision.autocast_bf16(True, "cuda", "bf16") is True
    assert precision.autocast_bf16(False, "cpu", "bf16") is False
    cpu_bf16(True)
    assert precision.autocast_bf16(True, "cpu", "bf16") is True


def test_the_lstm_trains_under_bf16_mixed_on_this_cpu(tmp_path: Path, multi30k_root: Path, cache_dir: Path) -> None:
    # oneDNN has no bf16 LSTM on AVX2-only CPUs: before the fallback the recipes' precision failed there.
    overrides = ["experiment=tiny", "logger=csv", "trainer.precision=bf16-mixed", "trainer.max_steps=2", "test=false"]
    overrides += ["~callbacks.rich_progress_bar"]
    metrics, objects = train(compose_train(tmp_path, multi30k_root, cache_dir, overrides))
    expected = "bf16-mixed" if precision.cpu_has_bf16() else "32-true"
    assert objects["trainer"].precision == expected and objects["trainer"].global_step == 2
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
