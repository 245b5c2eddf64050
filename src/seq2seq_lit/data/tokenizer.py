"""SentencePiece tokenizers: trained on the training split, cached by content, embedded in checkpoints."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm
import torch

from seq2seq_lit.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from seq2seq_lit.errors import ConfigError, DataError, FileAccessError

log = logging.getLogger(__name__)


class Tokenizer:
    """A SentencePiece model held as bytes, so it can travel inside a checkpoint."""

    def __init__(self, proto: bytes) -> None:
        self.proto = proto
        self.sp = spm.SentencePieceProcessor(model_proto=proto)
        if (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id()) != (
            PAD_ID,
            UNK_ID,
            BOS_ID,
            EOS_ID,
        ):
            raise DataError("SentencePiece model does not use the fixed PAD/UNK/BOS/EOS ids 0/1/2/3")

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def as_tensor(self) -> torch.Tensor:
        """The model as a uint8 tensor: checkpoints hold tensors, so ``weights_only=True`` opens them."""
        return torch.frombuffer(bytearray(self.proto), dtype=torch.uint8)

    @classmethod
    def from_tensor(cls, tensor: torch.Tensor) -> Tokenizer:
        return cls(tensor.numpy().tobytes())

    def encode(self, sentences: list[str]) -> list[list[int]]:
        return self.sp.encode(sentences, out_type=int, num_threads=os.cpu_count() or 1)

    def pieces(self, sentence: str) -> list[str]:
        return self.sp.encode(sentence, out_type=str)

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.sp.decode(ids)

    def id_to_piece(self, ids: list[int]) -> list[str]:
        """The subword piece of each id (for attention plots)."""
        return [self.sp.id_to_piece(i) for i in ids]


def train_tokenizer(
    sentences: Iterable[str],
    vocab_size: int,
    model_type: str = "unigram",
    character_coverage: float = 1.0,
    sample_size: int = 0,
    normalization: str = "nmt_nfkc",
) -> Tokenizer:
    """Train SentencePiece in memory; a vocab_size the corpus cannot support gets a clear error.

    ``sentences`` is read once, as a stream; with ``sample_size`` > 0 SentencePiece trains on a uniform random
    sample of that many sentences (its ``input_sentence_size``). ``normalization`` is its normalisation rule
    (``nmt_nfkc``, ``nfkc``, ``identity``, ...), stored in the model, so encoding applies it too.
    """
    model = io.BytesIO()
    failed: list[Exception] = []

    def guarded() -> Iterator[str]:
        # An error while reading (a bad line) would otherwise end SentencePiece's input early, or come back
        # from C++ without its message: keep it and raise it as it was.
        try:
            yield from sentences
        except Exception as err:
            failed.append(err)

    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=guarded(),
            input_sentence_size=sample_size,
            shuffle_input_sentence=True,
            normalization_rule_name=normalization,
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            num_threads=os.cpu_count() or 1,
            minloglevel=2,
        )
    except RuntimeError as err:
        if failed:
            raise failed[0] from None
        limit = re.search(r"value <= (\d+)", str(err))
        if limit:
            raise ConfigError(
                f"data.vocab_size={vocab_size} is too large for this training corpus: SentencePiece "
                f"({model_type}) can build at most {limit.group(1)} pieces from it. "
                f"Set data.vocab_size={limit.group(1)} or smaller."
            ) from None
        needed = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", str(err))
        if needed:
            raise ConfigError(
                f"data.vocab_size={vocab_size} is too small for this training corpus: its characters and the "
                f"4 special tokens need {needed.group(2)} pieces. Set data.vocab_size={needed.group(2)} or "
                "larger (or lower data.character_coverage)."
            ) from None
        raise ConfigError(f"SentencePiece training failed (data.vocab_size={vocab_size}): {err}") from None
    if failed:
        raise failed[0]
    return Tokenizer(model.getvalue())


def cache_key(*parts: object) -> str:
    """A short stable hash of JSON-serialisable settings and file digests."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def load_or_train(cache_dir: str | Path, key: str, sentences_fn, **settings) -> Tokenizer:
    """Return the cached tokenizer for ``key``, training (on ``sentences_fn()``) and caching it if absent."""
    path = Path(cache_dir) / f"spm-{key}.model"
    if path.is_file():
        log.info("using cached tokenizer %s", path)
        return Tokenizer(path.read_bytes())
    tokenizer = train_tokenizer(sentences_fn(), **settings)
    write_atomic(path, tokenizer.proto)
    log.info("trained tokenizer (%d pieces) -> %s", len(tokenizer), path)
    return tokenizer


def write_atomic(path: Path, data: bytes, what: str = "cache file") -> None:
    """Write to a temporary file and rename, so a crash never leaves a truncated file; errors name ``what``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        raise FileAccessError(f"cannot write {what} {path}: {err.strerror or err}") from None
