"""Structured-config schemas: Hydra checks types and key names against these before any work starts."""

from __future__ import annotations

import netrc
import os
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

RNN_NAMES = ("gru", "lstm")


def validate_model_args(hidden_size: int, n_layers: int, dropout: float, rnn: str, word_vec_size: int) -> None:
    """Fail early, naming the config key, on settings the architecture cannot take."""
    if rnn not in RNN_NAMES:
        raise ValueError(f"model.rnn={rnn!r} is not supported; allowed values: {list(RNN_NAMES)}")
    if hidden_size < 2 or hidden_size % 2:
        raise ValueError(
            f"model.hidden_size={hidden_size} must be an even number >= 2: the bidirectional encoder "
            "gives each direction hidden_size/2 units"
        )
    if n_layers < 1:
        raise ValueError(f"model.n_layers={n_layers} must be >= 1")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"model.dropout={dropout} must be in [0, 1)")
    if word_vec_size < 1:
        raise ValueError(f"model.word_vec_size={word_vec_size} must be >= 1")


def validate_data_args(data: Any) -> None:
    """Batching settings that cannot work, named by key, before any data is read."""
    if data.get("max_tokens") is None and data.get("batch_size") is None:
        raise ValueError("set data.max_tokens or data.batch_size (or both)")
    if data.get("max_length", 0) < 1:
        raise ValueError(f"data.max_length={data.get('max_length')} must be >= 1")
    longest = data.max_length + 2  # BOS and EOS around the longest allowed target
    if data.get("max_tokens") is not None and data.max_tokens < longest:
        raise ValueError(
            f"data.max_tokens={data.max_tokens} is smaller than the longest allowed example "
            f"(data.max_length={data.max_length} + BOS/EOS = {longest} tokens); raise data.max_tokens to at "
            f"least {longest} or lower data.max_length"
        )
    if data.get("batch_size") is not None and data.batch_size < 1:
        raise ValueError(f"data.batch_size={data.batch_size} must be >= 1 (or null)")
    if data.get("spm_model_type") not in ("bpe", "unigram", "char", "word"):
        raise ValueError(
            f"data.spm_model_type={data.get('spm_model_type')!r}; allowed values: ['bpe', 'unigram', 'char', 'word']"
        )


@dataclass
class SearchLimits:
    """Length penalty and output length limit: one set of defaults for training-time and command decoding."""

    alpha: float = 0.6  # GNMT length penalty ((5 + len) / 6) ** alpha
    max_len_a: float = 1.5  # outputs stop at max_len_a * src_len + max_len_b tokens
    max_len_b: int = 10


@dataclass
class DecodingSettings(SearchLimits):
    """How the module decodes during validation (val/bleu) and testing (test/bleu)."""

    val_bleu: bool = True
    val_beam_size: int = 1
    test_beam_size: int = 5
    attention_plots: int = 2


@dataclass
class ModelConfig:
    _target_: str = "seq2seq_lit.module.TranslationModule"
    rnn: str = "lstm"
    word_vec_size: int = 256
    hidden_size: int = 512
    n_layers: int = 2
    dropout: float = 0.3
    attention: bool = True
    tie_embeddings: bool = False
    share_embeddings: bool = False
    label_smoothing: float = 0.0
    max_nonfinite_steps: int = 5
    optimizer: Any = None
    scheduler: Any = None
    decoding: DecodingSettings = field(default_factory=DecodingSettings)


@dataclass
class DataConfig:
    _target_: str = MISSING
    cache_dir: str = MISSING
    vocab_size: int = 8000
    joint_vocab: bool = False
    spm_model_type: str = "bpe"
    character_coverage: float = 1.0
    max_length: int = 100
    max_tokens: int | None = 4096
    batch_size: int | None = None
    eval_max_tokens: int | None = None
    pool_size: int = 65536
    num_workers: int = 0
    seed: int | None = 0


@dataclass
class Multi30kConfig(DataConfig):
    _target_: str = "seq2seq_lit.datamodule.Multi30kDataModule"
    root: str = MISSING
    src_lang: str = "en"
    tgt_lang: str = "de"
    test_splits: list[str] = field(default_factory=lambda: ["test_2016_flickr"])
    download: bool = True


@dataclass
class ParallelTextConfig(DataConfig):
    _target_: str = "seq2seq_lit.datamodule.TranslationDataModule"
    train: list[str] = MISSING
    val: list[str] = MISSING
    test: Any = None


@dataclass
class TrainConfig:
    # Typed as Any here; each group option carries its own schema (model_schema, multi30k_schema, ...).
    model: Any = MISSING
    data: Any = MISSING
    trainer: Any = MISSING
    logger: Any = None
    callbacks: Any = None
    paths: Any = MISSING
    task_name: str = "train"
    tags: list[str] = field(default_factory=list)
    seed: int | None = 42
    ckpt_path: str | None = None
    train: bool = True
    test: bool = True
    optimized_metric: str = "val/ppl"


@dataclass
class DecodingConfig(SearchLimits):
    """Search settings for translating: shared by the Translator and the translate/evaluate commands."""

    beam_size: int = 5
    n_best: int = 1
    max_tokens: int = 4096
    bf16: bool = False  # run the decoder under bfloat16 autocast (faster on CPUs with AVX512-BF16/AMX)

    def check(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size={self.beam_size} must be >= 1")
        if not 1 <= self.n_best <= self.beam_size:
            raise ValueError(f"n_best={self.n_best} must be between 1 and beam_size={self.beam_size}")


@dataclass
class TranslateConfig(DecodingConfig):
    ckpt_path: str = MISSING
    chunk_lines: int = 2000
    interactive: bool | None = None
    score: bool = False
    device: str = "cpu"


@dataclass
class EvaluateData:
    root: str = MISSING
    src_lang: str | None = None
    tgt_lang: str | None = None
    src: str | None = None
    ref: str | None = None


@dataclass
class EvaluateConfig(DecodingConfig):
    ckpt_path: str = MISSING
    split: str = "test_2016_flickr"
    data: EvaluateData = field(default_factory=EvaluateData)
    device: str = "cpu"
    output_dir: str = MISSING


def wandb_mode() -> str:
    """``online`` only when the user is logged in to W&B and its server answers, else ``offline``.

    ``WANDB_MODE`` in the environment wins. Never prompts, never waits more than two seconds.
    """
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    logged_in = bool(os.environ.get("WANDB_API_KEY"))
    if not logged_in:
        try:
            logged_in = netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
        except (OSError, netrc.NetrcParseError):
            logged_in = False
    if not logged_in:
        return "offline"
    try:
        socket.create_connection((host, 443), timeout=2).close()
    except OSError:
        return "offline"
    return "online"


def sweep_name() -> str | None:
    """In a multirun, the sweep directory's name (W&B groups a sweep's runs by it); None otherwise."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return f"{HydraConfig.get().job.name}-{os.path.basename(HydraConfig.get().sweep.dir)}"


def run_name() -> str | None:
    """A run named after its command-line overrides (``model.hidden_size=256,model.n_layers=2``), if any."""
    from hydra.core.hydra_config import HydraConfig

    return (HydraConfig.get().job.override_dirname or None) if HydraConfig.initialized() else None


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore and register the resolvers the configs use."""
    for name, fn in (("wandb_mode", wandb_mode), ("sweep_name", sweep_name), ("run_name", run_name)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="translate_schema", node=TranslateConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    # A group of their own keeps the schemas out of the options that --help lists.
    cs.store(group="schema/model", name="rnn", node=ModelConfig)
    cs.store(group="schema/data", name="multi30k", node=Multi30kConfig)
    cs.store(group="schema/data", name="parallel_text", node=ParallelTextConfig)
