"""LightningDataModules: Multi30k and any parallel text files, tokenized, filtered and bucketed."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from seq2seq_lit.data import multi30k
from seq2seq_lit.data.collate import collate
from seq2seq_lit.data.corpus import file_digest, iter_lines, read_parallel
from seq2seq_lit.data.prepared import PreparedCorpus, prepare_split
from seq2seq_lit.data.sampler import BucketBatchSampler
from seq2seq_lit.data.tokenizer import Tokenizer, cache_key, load_or_train
from seq2seq_lit.errors import ConfigError, FileAccessError, MissingFileError
from seq2seq_lit.resume import batches_done

log = logging.getLogger(__name__)


@dataclass
class EvalText:
    """The raw sentences of a validation or test split: the only text kept in memory (BLEU needs it)."""

    src: list[str]
    tgt: list[str]


class TranslationDataModule(L.LightningDataModule):
    """Parallel text files per split -> SentencePiece ids -> length-bucketed, padded batches.

    ``prepare_data`` (one process per machine) trains the tokenizers and writes each split's ids as memory-mapped
    arrays into the cache (``data.prepared``); ``setup`` (every process) opens them, preparing first under a
    file lock if no ``prepare_data`` ran, so processes that start at once prepare once. The keyword arguments are
    ``data.*`` (defaults: ``config.DataConfig``; ``config.schema_defaults`` gives them for code that builds a data
    module without Hydra).
    """

    def __init__(
        self,
        train: list[str],
        val: list[str],
        test: dict[str, list[str]] | list[str] | None = None,
        *,
        cache_dir: str,
        vocab_size: int,
        joint_vocab: bool,
        spm_model_type: str,
        character_coverage: float,
        spm_sample_size: int,
        spm_normalization: str,
        max_length: int,
        max_tokens: int | None,
        batch_size: int | None,
        eval_max_tokens: int | None,
        pool_size: int,
        num_workers: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.files: dict[str, tuple[Path, Path]] = {"train": _pair("data.train", train)}
        if val is not None:
            self.files["val"] = _pair("data.val", val)
        if test is not None and not hasattr(test, "items"):  # one [SRC, TGT] pair rather than {name: pair}
            test = {"test": test}
        for name, pair in (test or {}).items():
            self.files[name] = _pair(f"data.test.{name}", pair)
        self.test_names = [n for n in self.files if n not in ("train", "val")]
        self.src_tokenizer: Tokenizer | None = None
        self.tgt_tokenizer: Tokenizer | None = None
        self.datasets: dict[str, PreparedCorpus] = {}
        self.text: dict[str, EvalText] = {}
        self.train_sampler: BucketBatchSampler | None = None
        self._prepared: dict[str, Path] = {}
        self._given_tokenizers = False

    # -- set-up -------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._prepare()

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return  # idempotent: train.py sets up early to learn the vocabulary sizes
        hp = self.hparams
        self._prepare()  # nothing to do when prepare_data ran
        for name, directory in self._prepared.items():
            self.datasets[name] = PreparedCorpus(directory)
            if name != "train":
                src, tgt = read_parallel(*self.files[name])
                self.text[name] = EvalText(src, tgt)
        src_len, tgt_len = self.datasets["train"].lengths()
        self.train_sampler = BucketBatchSampler(
            src_len, tgt_len, hp.max_tokens, hp.batch_size, shuffle=True, pool_size=hp.pool_size, seed=hp.seed
        )

    def _prepare(self) -> None:
        """Tokenizers and prepared splits, from the cache or made now; under a lock on the cache directory."""
        if self._prepared:
            return
        from filelock import FileLock

        hp = self.hparams
        cache = Path(hp.cache_dir)
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise FileAccessError(f"cannot write cache file {cache}/.prepare.lock: {err.strerror or err}") from None
        with FileLock(cache / ".prepare.lock"):
            self._fetch()
            for path in (p for pair in self.files.values() for p in pair):
                if not path.is_file():
                    raise MissingFileError(f"{path}: no such file")
            digests = {name: [file_digest(p) for p in pair] for name, pair in self.files.items()}
            self._build_tokenizers(digests["train"])
            assert self.src_tokenizer is not None and self.tgt_tokenizer is not None
            protos = [cache_key(tok.proto.hex()) for tok in (self.src_tokenizer, self.tgt_tokenizer)]
            for name, (src_path, tgt_path) in self.files.items():
                max_length = hp.max_length if name == "train" else None
                directory = cache / f"prepared-{cache_key('prepared', digests[name], protos, max_length)}"
                if directory.is_dir():
                    log.info("%s: using prepared corpus %s", name, directory)
                else:
                    prepare_split(
                        directory, name, src_path, tgt_path, self.src_tokenizer, self.tgt_tokenizer, max_length
                    )
                self._prepared[name] = directory

    def _fetch(self) -> None:
        """Make the split files available (a source that exports them does it here, under the lock)."""

    def use_tokenizers(self, src: Tokenizer, tgt: Tokenizer) -> None:
        """Encode with these tokenizers (a fine-tuned checkpoint's) instead of training new ones."""
        self.src_tokenizer, self.tgt_tokenizer, self._given_tokenizers = src, tgt, True

    def _build_tokenizers(self, train_digests: list[str]) -> None:
        if self._given_tokenizers:
            return
        hp = self.hparams
        settings = dict(
            vocab_size=hp.vocab_size, model_type=hp.spm_model_type, character_coverage=hp.character_coverage,
            sample_size=hp.spm_sample_size, normalization=hp.spm_normalization,
        )  # fmt: skip
        src_path, tgt_path = self.files["train"]
        if hp.joint_vocab:
            key = cache_key("joint", train_digests, settings)
            tok = load_or_train(hp.cache_dir, key, lambda: _nonempty(src_path, tgt_path), **settings)
            self.src_tokenizer = self.tgt_tokenizer = tok
        else:
            src_key, tgt_key = (cache_key(side, d, settings) for side, d in zip(("src", "tgt"), train_digests))
            self.src_tokenizer = load_or_train(hp.cache_dir, src_key, lambda: _nonempty(src_path), **settings)
            self.tgt_tokenizer = load_or_train(hp.cache_dir, tgt_key, lambda: _nonempty(tgt_path), **settings)

    # -- loaders ------------------------------------------------------------------------------------
    def _eval_sampler(self, name: str) -> BucketBatchSampler:
        hp = self.hparams
        src_len, tgt_len = self.datasets[name].lengths()
        max_tokens = hp.eval_max_tokens or hp.max_tokens
        if max_tokens is not None:
            max_tokens = max(max_tokens, int(np.maximum(src_len, tgt_len).max()))
        return BucketBatchSampler(src_len, tgt_len, max_tokens, hp.batch_size, shuffle=False)

    def _eval_loader(self, name: str) -> DataLoader:
        sampler = self._eval_sampler(name)
        return DataLoader(
            self.datasets[name], batch_sampler=sampler, collate_fn=collate, num_workers=self.hparams.num_workers
        )

    def train_dataloader(self) -> DataLoader:
        sampler = self.train_sampler
        assert sampler is not None, "setup() first"
        if self.trainer is not None and self.trainer.overfit_batches > 0:
            # Lightning turns shuffling off for overfit_batches but cannot reach a custom batch sampler.
            sampler = self._eval_sampler("train")
        log.info(
            "training batches for rank %d of %d: %d, the first holding examples %s",
            sampler.rank, sampler.num_replicas, len(sampler), sampler.batch(0)[:4],
        )  # fmt: skip
        return ResumableLoader(
            self.datasets["train"],
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            # Its own generator: otherwise each epoch's iterator draws from the global RNG, and a resumed run
            # would draw at a different moment than the uninterrupted one (dropout masks would differ).
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader(name) for name in self.test_names]

    # -- what the LightningModule reads -------------------------------------------------------------
    def references(self, split: str, ids: list[int]) -> list[str]:
        """The raw target sentences of examples ``ids`` of ``split`` (for BLEU on detokenized output)."""
        return self._text(split, ids, "tgt")

    def sources(self, split: str, ids: list[int]) -> list[str]:
        """The raw source sentences of examples ``ids`` of ``split``."""
        return self._text(split, ids, "src")

    def file_lines(self, split: str, ids: list[int]) -> tuple[list[int], int]:
        """The 0-based line of each example in ``split``'s files (filtered pairs have no example), and the
        files' line count."""
        corpus = self.datasets[split]
        return corpus.index[ids].tolist(), corpus.n_lines

    def _text(self, split: str, ids: list[int], side: str) -> list[str]:
        if split not in self.text:  # the training split's text is not kept: its pieces, decoded
            corpus, tokenizer = self.datasets[split], getattr(self, f"{side}_tokenizer")
            return tokenizer.decode([corpus[i][1 if side == "src" else 2].tolist() for i in ids])
        lines = getattr(self.text[split], side)
        return [lines[i] for i in self.datasets[split].index[ids].tolist()]

    # -- resuming -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The training sampler's place in the epoch, counted as Lightning will count it when resuming."""
        if self.train_sampler is None:
            return {}
        done = None
        if self.trainer is not None:
            done = batches_done(self.trainer.fit_loop.epoch_loop.batch_progress)
        return {"train_sampler": self.train_sampler.state_dict(done)}

    def load_state_dict(self, state: dict) -> None:
        if self.train_sampler is not None and "train_sampler" in state:
            self.train_sampler.load_state_dict(state["train_sampler"])


class ResumableLoader(DataLoader):
    """The training DataLoader. Lightning treats a loader with ``state_dict``/``load_state_dict`` as one that
    resumes mid-epoch (and does not warn that batches repeat). This one does: its sampler's place travels in
    the datamodule's state, so the loader's own state is empty."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Multi30kDataModule(TranslationDataModule):
    """Multi30k task 1 from ``root`` in the official ``{split}.{lang}.gz`` layout, downloaded if missing."""

    def __init__(
        self,
        root: str,
        *,
        src_lang: str,
        tgt_lang: str,
        test_splits: Sequence[str],
        download: bool,
        **kwargs: Any,
    ) -> None:
        for key, lang in (("data.src_lang", src_lang), ("data.tgt_lang", tgt_lang)):
            if lang not in multi30k.LANGS:
                raise ConfigError(f"{key}={lang!r} is not a Multi30k language; allowed values: {list(multi30k.LANGS)}")
        if src_lang == tgt_lang:
            raise ConfigError(f"data.src_lang and data.tgt_lang are both {src_lang!r}")
        for split in test_splits:
            if split not in multi30k.SPLITS[2:]:
                raise ConfigError(
                    f"data.test_splits: unknown split {split!r}; allowed values: {list(multi30k.SPLITS[2:])}"
                )
        root_path = Path(root)

        def pair(split: str) -> list[str]:
            return [str(root_path / multi30k.file_name(split, lang)) for lang in (src_lang, tgt_lang)]

        self.root, self.download = root_path, download
        self.needed = [Path(p).name for split in ("train", "val", *test_splits) for p in pair(split)]
        super().__init__(train=pair("train"), val=pair("val"), test={s: pair(s) for s in test_splits}, **kwargs)

    def prepare_data(self) -> None:
        multi30k.ensure_files(self.root, self.needed, allow_download=self.download)
        super().prepare_data()

    def setup(self, stage: str | None = None) -> None:
        multi30k.ensure_files(self.root, self.needed, allow_download=False)
        super().setup(stage)


def _pair(key: str, pair) -> tuple[Path, Path]:
    if pair is None or len(pair) != 2:
        raise ConfigError(f"{key} must be a list [SRC_FILE, TGT_FILE], got {pair!r}")
    return Path(pair[0]).expanduser(), Path(pair[1]).expanduser()


def _nonempty(*paths: Path) -> Iterator[str]:
    """The non-empty lines of the files, streamed (SentencePiece samples from them)."""
    for path in paths:
        yield from (line for line in iter_lines(path) if line.strip())
