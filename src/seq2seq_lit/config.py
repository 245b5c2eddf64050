"""Structured-config schemas: every default lives here, and Hydra checks types and key names against these
before any work starts. The YAML files under ``conf/`` hold only what differs from these defaults."""

from __future__ import annotations

import functools
import netrc
import os
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, OmegaConf

from seq2seq_lit.errors import ConfigError

SPM_MODEL_TYPES = ("bpe", "unigram", "char", "word")
SPM_NORMALIZATIONS = ("nmt_nfkc", "nfkc", "nmt_nfkc_cf", "nfkc_cf", "identity")


def validate_model_args(hp: Any) -> None:
    """Fail early, naming the config key, on settings no network family can take; each family's ``validate``
    adds its own checks."""
    if hp["hidden_size"] < 1:
        raise ConfigError(f"model.hidden_size={hp['hidden_size']} must be >= 1")
    for key in ("n_layers", "decoder_layers"):
        if hp.get(key) is not None and hp[key] < 1:
            raise ConfigError(f"model.{key}={hp[key]} must be >= 1")
    for key in ("dropout", "attention_dropout", "activation_dropout"):
        if key in hp and not 0.0 <= hp[key] < 1.0:
            raise ConfigError(f"model.{key}={hp[key]} must be in [0, 1)")
    # Once the vocabularies are known (building the network), not at start-up:
    if hp.get("share_embeddings") and "src_vocab_size" in hp and hp["src_vocab_size"] != hp["tgt_vocab_size"]:
        raise ConfigError(
            f"model.share_embeddings=true needs one vocabulary for both languages (data.joint_vocab=true); "
            f"got {hp['src_vocab_size']} source and {hp['tgt_vocab_size']} target pieces"
        )


def validate_data_args(data: Any) -> None:
    """Batching settings that cannot work, named by key, before any data is read."""
    from seq2seq_lit.data.sampler import check_batch_limits

    if data.get("max_length", 0) < 1:
        raise ConfigError(f"data.max_length={data.get('max_length')} must be >= 1")
    longest = data.max_length + 2  # BOS and EOS around the longest allowed target
    check_batch_limits(
        data.get("max_tokens"), data.get("batch_size"), longest,
        f"the longest allowed example (data.max_length={data.max_length} + BOS/EOS = {longest} tokens)",
    )  # fmt: skip
    if data.get("spm_model_type") not in SPM_MODEL_TYPES:
        raise ConfigError(
            f"data.spm_model_type={data.get('spm_model_type')!r}; allowed values: {list(SPM_MODEL_TYPES)}"
        )
    if data.get("spm_normalization") not in SPM_NORMALIZATIONS:
        raise ConfigError(
            f"data.spm_normalization={data.get('spm_normalization')!r}; allowed values: {list(SPM_NORMALIZATIONS)}"
        )
    sample = data.get("spm_sample_size", 0)
    if sample != 0 and sample <= 100:  # SentencePiece's own lower bound
        raise ConfigError(f"data.spm_sample_size={sample} must be 0 (every sentence) or more than 100")


def validate_train_config(cfg: Any) -> None:
    """The start-up checks of ``train``: settings the model or the data cannot take, named by key."""
    from seq2seq_lit.models import network_class
    from seq2seq_lit.objectives import check_objective

    m = cfg.model
    network_class(m).validate(m)
    check_objective(m.objective)
    if not getattr(network_class(m), "translates", True) and m.objective.name != "mle":
        raise ConfigError(f"model.objective.name={m.objective.name}: a language model (model=lm) trains with mle only")
    validate_data_args(cfg.data)
    if m.share_embeddings and not cfg.data.joint_vocab:
        raise ConfigError("model.share_embeddings=true needs data.joint_vocab=true: one vocabulary for both languages")


@dataclass
class SearchLimits:
    """Length penalty and output length limit: one set of defaults for training-time and command decoding."""

    alpha: float = 0.6  # GNMT length penalty ((5 + len) / 6) ** alpha
    max_len_a: float = 1.5  # outputs stop at max_len_a * src_len + max_len_b tokens
    max_len_b: int = 10


@dataclass
class DecodingSettings(SearchLimits):
    """How the module decodes during validation (val/bleu) and testing (test/bleu)."""

    val_bleu: bool = True  # decode the validation set each validation and log val/bleu (sacreBLEU, cased)
    val_beam_size: int = 1  # 1 = greedy
    test_beam_size: int = 5  # after fit, the best checkpoint is tested with this beam: test/bleu, test/chrf


@dataclass
class ObjectiveConfig:
    """``model.objective``: what training minimises, chosen with ``model/objective=mle|mrt|dsl``."""

    # mle: the masked NLL; mrt: minimum risk training; dsl: dual supervised learning (seq2seq_lit.objectives)
    name: str = "mle"
    samples: int = 8  # mrt: candidates per source sentence
    candidates: str = "sample"  # mrt: sample (ancestral sampling, Shen et al.) | beam (its k best; Edunov et al.)
    alpha: float = 0.005  # mrt: sharpness of the distribution renormalised over the candidates
    length_normalize: bool = False  # mrt: Q from each candidate's mean token log-probability instead of its sum
    metric: str = "bleu"  # mrt: the risk is 1 - metric / 100; bleu (smoothed sentence BLEU) | chrf
    include_reference: bool = True  # mrt: the reference is one of the candidates
    mle_weight: float = 0.3  # mrt: loss = mle_weight * MLE + (1 - mle_weight) * risk
    reverse_from: str | None = None  # dsl: checkpoint of the other direction (tgt -> src), trained alongside
    src_lm: str | None = None  # dsl: language model checkpoint of the source language (model=lm), frozen
    tgt_lm: str | None = None  # dsl: language model checkpoint of the target language, frozen
    dual_weight: float = 0.01  # dsl: lambda of the squared gap between log P(x)P(y|x) and log P(y)P(x|y)
    dual_warmup_steps: int = 0  # dsl: optimizer steps trained on the two MLE losses alone before the term


def default_optimizer() -> dict[str, Any]:
    return {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.001, "weight_decay": 0.0}


@dataclass
class ModelConfig:
    """``model.*`` keys both families share: the network's size and how the LightningModule trains it."""

    _target_: str = "seq2seq_lit.module.TranslationModule"
    network: str = MISSING  # the network's class, as a _target_: each family's schema sets it
    hidden_size: int = MISSING
    n_layers: int = MISSING
    dropout: float = MISSING
    tie_embeddings: bool = False  # generator output matrix = decoder embedding
    share_embeddings: bool = False  # encoder and decoder embeddings are one matrix; needs data.joint_vocab=true
    label_smoothing: float = 0.0
    max_nonfinite_steps: int = 5  # consecutive steps with a NaN/inf loss (skipped) before training stops
    optimizer: Any = field(default_factory=default_optimizer)
    scheduler: Any = None  # chosen with the model/scheduler group
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    decoding: DecodingSettings = field(default_factory=DecodingSettings)


@dataclass
class RNNConfig(ModelConfig):
    """``model=rnn``: the attentional RNN encoder-decoder (seq2seq_lit.models.rnn.Seq2Seq)."""

    network: str = "seq2seq_lit.models.rnn.Seq2Seq"
    rnn: str = "lstm"  # lstm | gru
    word_vec_size: int = 256
    hidden_size: int = 512  # even: each encoder direction gets hidden_size/2
    n_layers: int = 2
    dropout: float = 0.3  # on embeddings, between RNN layers and on the attentional vectors, in [0, 1)
    attention: bool = True  # Luong general attention + input feeding


@dataclass
class TransformerConfig(ModelConfig):
    """``model=transformer``: the Transformer (Vaswani et al., 2017; seq2seq_lit.models.transformer)."""

    network: str = "seq2seq_lit.models.transformer.Transformer"
    hidden_size: int = 256  # d_model; a multiple of n_heads
    n_layers: int = 3  # encoder layers, and decoder layers unless decoder_layers is set
    decoder_layers: int | None = None
    n_heads: int = 4
    ffn_size: int = 1024
    dropout: float = 0.1  # on embeddings and on each sublayer's output, in [0, 1)
    attention_dropout: float = 0.0  # on the attention weights
    activation_dropout: float = 0.0  # after the feed-forward activation
    activation: str = "relu"  # relu | gelu
    norm: str = "pre"  # pre: LayerNorm before each sublayer (and a final one); post: after, as in the paper
    positions: str = "sinusoidal"  # sinusoidal | learned
    max_positions: int = 1024  # longest sequence learned positions cover
    attention_layer: int = -1  # the decoder layer whose cross-attention is plotted and returned


@dataclass
class LMConfig(ModelConfig):
    """``model=lm``: an RNN language model of the target side (seq2seq_lit.models.lm), for dual learning."""

    network: str = "seq2seq_lit.models.lm.LanguageModel"
    rnn: str = "lstm"  # lstm | gru
    word_vec_size: int = 256
    hidden_size: int = 512
    n_layers: int = 2
    dropout: float = 0.3  # on embeddings, between RNN layers and on the outputs, in [0, 1)


@dataclass
class DataConfig:
    """``data.*`` settings every data source shares."""

    _target_: str = MISSING
    cache_dir: str = II("paths.cache_dir")  # tokenizers and encoded corpora, keyed by content
    vocab_size: int = 8000  # SentencePiece pieces per side (or shared with joint_vocab)
    joint_vocab: bool = False  # one SentencePiece model for both languages
    spm_model_type: str = "bpe"  # bpe | unigram | char | word
    character_coverage: float = 1.0
    spm_sample_size: int = 1_000_000  # SentencePiece trains on a random sample of this many sentences; 0: all
    # SentencePiece's normalisation: nmt_nfkc (its default: NFKC, so full-width digits become ASCII) or identity
    # (text as written); nfkc, nmt_nfkc_cf, nfkc_cf (case-folded) too
    spm_normalization: str = "nmt_nfkc"
    max_length: int = 100  # training pairs with more subword tokens on either side are dropped
    max_tokens: int | None = 4096  # token positions per batch, padding included
    batch_size: int | None = None  # optional cap on sentences per batch
    eval_max_tokens: int | None = None  # validation/test batches; null: max_tokens
    pool_size: int = 65536  # examples shuffled together, then sorted by length and cut into batches
    num_workers: int = 0
    seed: int | None = II("seed")  # the batch order's seed


@dataclass
class Multi30kConfig(DataConfig):
    """Multi30k task 1 (Elliott et al., 2016), official raw files ``{split}.{lang}.gz`` under ``root``."""

    _target_: str = "seq2seq_lit.data.datamodule.Multi30kDataModule"
    root: str = "${paths.data_dir}/multi30k"
    src_lang: str = "en"  # en | de | fr | cs
    tgt_lang: str = "de"
    test_splits: list[str] = field(default_factory=lambda: ["test_2016_flickr"])
    download: bool = True  # missing files are downloaded once and checked against their SHA-256 sums


@dataclass
class ParallelTextConfig(DataConfig):
    """Any line-aligned plain or gzipped text files, one sentence per line."""

    _target_: str = "seq2seq_lit.data.datamodule.TranslationDataModule"
    train: list[str] = MISSING  # [SRC_FILE, TGT_FILE]
    val: list[str] = MISSING
    test: Any = None  # [SRC_FILE, TGT_FILE] or {name: [SRC_FILE, TGT_FILE], ...}


@dataclass
class HFConfig(DataConfig):
    """A Hugging Face dataset (``pip install 'seq2seq_lit[hf]'``): a Hub name or a local ``save_to_disk``
    directory, exported once to text in the cache and prepared like any parallel text."""

    _target_: str = "seq2seq_lit.data.hf.HFDataModule"
    path: str = MISSING  # e.g. wmt14, or a local directory written by Dataset(Dict).save_to_disk
    name: str | None = None  # the dataset's config, e.g. de-en
    revision: str | None = None
    src_lang: str = "en"
    tgt_lang: str = "de"
    # Dotted paths to each side's text in a row; the Hub's translation datasets hold {"translation": {lang: ...}}.
    src_field: str = "translation.${data.src_lang}"
    tgt_field: str = "translation.${data.tgt_lang}"
    train_split: str = "train"
    val_split: str = "validation"
    test_splits: list[str] = field(default_factory=lambda: ["test"])  # each tested after fit; [] for none


@dataclass
class TrainConfig:
    # Typed as Any here; each group option carries its own schema (schema/model/rnn, schema/data/multi30k, ...).
    model: Any = MISSING
    data: Any = MISSING
    trainer: Any = MISSING
    logger: Any = None
    callbacks: Any = None
    paths: Any = MISSING
    task_name: str = "train"
    tags: list[str] = field(default_factory=list)
    # Seed for Python, NumPy, torch and dataloader workers; 0 is a valid seed; null draws one (logged).
    seed: int | None = 42
    ckpt_path: str | None = None  # resume: a checkpoint path, or `last` for the newest under logs/<task_name>/
    # Fine-tune: a new run from a checkpoint's weights and tokenizers, with a fresh optimizer, scheduler and step
    # count (ckpt_path, if also given, resumes and wins).
    init_from: str | None = None
    train: bool = True
    test: bool = True  # test the best checkpoint on data's test sets after fit
    optimized_metric: str = "val/ppl"  # what `train` returns to sweepers


@dataclass
class DecodingConfig(SearchLimits):
    """Search settings for translating: shared by the Translator and the translate/evaluate commands."""

    beam_size: int = 5  # 1 = greedy
    n_best: int = 1  # > 1: translate prints "index ||| hypothesis ||| score" lines
    max_tokens: int = 4096  # source tokens per batch, padding included
    bf16: bool = False  # decode under bf16 autocast: for GPUs and CPUs with AVX-512/AMX (float32 elsewhere)

    def check(self) -> None:
        if self.beam_size < 1:
            raise ConfigError(f"beam_size={self.beam_size} must be >= 1")
        if not 1 <= self.n_best <= self.beam_size:
            raise ConfigError(f"n_best={self.n_best} must be between 1 and beam_size={self.beam_size}")


@dataclass
class CommandConfig(DecodingConfig):
    """What the translate and evaluate commands share beyond the search."""

    device: str = "cpu"
    direction: str = "src2tgt"  # tgt2src: the other direction of a dual-learning checkpoint (model/objective=dsl)


@dataclass
class TranslateConfig(CommandConfig):
    ckpt_path: str = MISSING
    chunk_lines: int = 2000  # lines read, sorted and translated together (not in interactive mode)
    interactive: bool | None = None  # a line in, a line out; null: when stdin is a terminal
    score: bool = False  # read "src<TAB>tgt" lines, print log P(tgt | src)


@dataclass
class ScoreLMConfig:
    ckpt_path: str = MISSING  # a language model checkpoint (experiment=lm_de|lm_en)
    chunk_lines: int = 2000  # lines read and scored together
    max_tokens: int = 8192  # token positions per batch, padding included
    device: str = "cpu"


@dataclass
class EvaluateData:
    root: str = "${oc.env:SEQ2SEQ_LIT_DATA,${hydra:runtime.cwd}/data}/multi30k"
    src_lang: str | None = None  # null: the checkpoint's training languages
    tgt_lang: str | None = None
    src: str | None = None  # or any source file and its reference (plain or .gz), instead of a split
    ref: str | None = None


@dataclass
class EvaluateConfig(CommandConfig):
    ckpt_path: Any = MISSING  # a checkpoint, or a list of them to compare: ckpt_path=[A,B]
    # one for every checkpoint, or one per checkpoint: ckpt_path=[DE_EN,DSL] direction=[src2tgt,tgt2src]
    direction: Any = "src2tgt"
    bootstrap_samples: int = 1000  # resamples of the paired bootstrap test when comparing checkpoints
    split: str = "test_2016_flickr"  # a Multi30k split under data.root, read as {split}.{lang}.gz
    data: EvaluateData = field(default_factory=EvaluateData)
    output_dir: str = "${hydra:runtime.output_dir}"


def schema_defaults(schema: type) -> dict[str, Any]:
    """The keys of a schema with a plain default (not ``???``, not an interpolation such as ``${seed}``) and
    their defaults, as plain types: the keyword arguments a class configured by that schema takes."""
    node = OmegaConf.structured(schema)
    values: dict[str, Any] = OmegaConf.to_container(node, resolve=False)  # type: ignore[assignment]
    return {
        key: values[key]
        for key in values
        if key != "_target_" and not OmegaConf.is_missing(node, key) and not OmegaConf.is_interpolation(node, key)
    }


def require(cfg: Any, key: str, hint: str) -> None:
    """A mandatory key (``???``) left unset is a user error naming the key, not a traceback."""
    if OmegaConf.is_missing(cfg, key):
        raise ConfigError(f"{key} is required: {hint}")


def wandb_mode() -> str:
    """``online`` only when the user is logged in to W&B and its server answers, else ``offline``.

    ``WANDB_MODE`` in the environment wins. Never prompts, never waits more than two seconds.
    """
    return os.environ.get("WANDB_MODE") or _wandb_reachable_mode()


@functools.cache
def _wandb_reachable_mode() -> str:
    # Probed once per process: Hydra resolves the config several times a run, and each would open a socket.
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
    cs.store(name="score_lm_schema", node=ScoreLMConfig)
    # A group of their own keeps the schemas out of the options that --help lists.
    cs.store(group="schema/model", name="rnn", node=RNNConfig)
    cs.store(group="schema/model", name="transformer", node=TransformerConfig)
    cs.store(group="schema/model", name="lm", node=LMConfig)
    cs.store(group="schema/data", name="multi30k", node=Multi30kConfig)
    cs.store(group="schema/data", name="parallel_text", node=ParallelTextConfig)
    cs.store(group="schema/data", name="hf", node=HFConfig)
