"""Shared fixtures: the Multi30k copy beside the project, a session-wide tokenizer cache, config composition."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from seq2seq_lit.config import DataConfig, Multi30kConfig, RNNConfig, register_configs, schema_defaults

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("SEQ2SEQ_LIT_TEST_DATA", ROOT.parent / "shared" / "data" / "multi30k"))

register_configs()

# A tiny model trained without decoding or a test stage: the fastest real `train` run.
TINY_QUIET = [
    "experiment=tiny", "logger=csv", "~callbacks.rich_progress_bar", "model.decoding.val_bleu=false", "test=false",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_wandb_network(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never talk to W&B's servers, whatever the developer's login.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    # An in-process W&B run leaves its service's address in the environment, and a command started as a
    # subprocess would share that service (and its run ids): each test starts without it.
    monkeypatch.delenv("WANDB_SERVICE", raising=False)


@pytest.fixture(scope="session")
def multi30k_root() -> Path:
    if not (MULTI30K / "train.en.gz").is_file():
        pytest.fail(f"Multi30k copy not found at {MULTI30K}; set SEQ2SEQ_LIT_TEST_DATA")
    return MULTI30K


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tokenizer/corpus cache for the whole session, so SentencePiece trains once per setting."""
    return tmp_path_factory.mktemp("cache")


def make_seq2seq(src_vocab_size: int, tgt_vocab_size: int, **overrides):
    """A Seq2Seq network with the schema's defaults except ``overrides``."""
    from seq2seq_lit.models import build_model

    return build_model(
        {
            **schema_defaults(RNNConfig),
            "src_vocab_size": src_vocab_size,
            "tgt_vocab_size": tgt_vocab_size,
            **overrides,
        }
    )


def make_module(src_vocab_size: int, tgt_vocab_size: int, **overrides):
    """A TranslationModule with the schema's defaults except ``overrides``."""
    from seq2seq_lit.module import TranslationModule

    hparams = schema_defaults(RNNConfig)
    return TranslationModule(src_vocab_size, tgt_vocab_size, **{**hparams, **overrides})


def multi30k_args(**overrides) -> dict:
    """Keyword arguments of a Multi30kDataModule: the schema's defaults, seed 0, then ``overrides``."""
    return {**schema_defaults(Multi30kConfig), "seed": 0, "max_tokens": 2048, **overrides}


def parallel_text_args(**overrides) -> dict:
    """Keyword arguments of a TranslationDataModule: the schema's defaults, seed 0, then ``overrides``."""
    return {**schema_defaults(DataConfig), "seed": 0, **overrides}


def compose_train(tmp_path: Path, multi30k_root: Path, cache_dir: Path, overrides: list[str] = ()) -> DictConfig:
    """Compose conf/train.yaml as `python -m seq2seq_lit.train` would, with paths under ``tmp_path``."""
    other_data = any(o.startswith("data=") and o != "data=multi30k" for o in overrides)
    base = [
        f"paths.root_dir={tmp_path}",
        f"paths.output_dir={tmp_path / 'run'}",
        f"paths.cache_dir={cache_dir}",
    ]
    base += [] if other_data else [f"data.root={multi30k_root}"]
    with initialize_config_module(version_base="1.3", config_module="seq2seq_lit.conf"):
        return compose(config_name="train", overrides=[*base, *overrides])


@pytest.fixture(scope="session")
def tiny_datamodule(multi30k_root: Path, cache_dir: Path):
    """Multi30k en-de with 1000-piece vocabularies, set up once."""
    from seq2seq_lit.data.datamodule import Multi30kDataModule

    dm = Multi30kDataModule(**multi30k_args(root=str(multi30k_root), cache_dir=str(cache_dir), vocab_size=1000))
    dm.prepare_data()
    dm.setup("fit")
    return dm


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory: pytest.TempPathFactory, multi30k_root: Path, cache_dir: Path) -> Path:
    """A tiny en-de model trained for a few hundred steps: enough to emit real German words."""
    from seq2seq_lit.train import train

    tmp = tmp_path_factory.mktemp("trained")
    train(compose_train(tmp, multi30k_root, cache_dir, TRAINED_OVERRIDES))
    return tmp / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def transformer_ckpt(tmp_path_factory: pytest.TempPathFactory, multi30k_root: Path, cache_dir: Path) -> Path:
    """A tiny en-de Transformer trained like ``trained_ckpt``."""
    from seq2seq_lit.train import train

    tmp = tmp_path_factory.mktemp("transformer")
    overrides = [o for o in TRAINED_OVERRIDES if "word_vec_size" not in o and "lr=" not in o]
    overrides += ["model=transformer", "model.ffn_size=256", "model.optimizer.lr=0.002", "~model/scheduler"]
    train(compose_train(tmp, multi30k_root, cache_dir, overrides))
    return tmp / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture
def scaled_ckpt(trained_ckpt: Path, tmp_path: Path) -> Path:
    """The trained checkpoint with every weight tripled: another system (its mean with the original is 2x)."""
    import torch

    ckpt = torch.load(trained_ckpt, weights_only=True)
    ckpt["state_dict"] = {k: 3 * v for k, v in ckpt["state_dict"].items()}
    path = tmp_path / "scaled.ckpt"
    torch.save(ckpt, path)
    return path


# The config of ``trained_ckpt``.
TRAINED_OVERRIDES = [
    "experiment=tiny",
    "logger=csv",
    "callbacks=model_checkpoint",
    "model.hidden_size=128",
    "model.word_vec_size=64",
    "model.optimizer.lr=0.003",
    "model.decoding.val_bleu=false",
    "data.max_length=40",
    "trainer.limit_train_batches=150",
    "trainer.limit_val_batches=2",
    "test=false",
]


def command(module: str, args: list[str], stdin: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m seq2seq_lit.<module> ARGS`` as a real subprocess, W&B offline."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, "-m", f"seq2seq_lit.{module}", *args], input=stdin, cwd=cwd, env=env, capture_output=True,
        timeout=300,
    )  # fmt: skip
