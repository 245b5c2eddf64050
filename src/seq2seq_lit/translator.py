"""Translate raw sentences with a trained model: tokenize, batch by length, search, restore order."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seq2seq_lit.checkpoint import load_checkpoint
from seq2seq_lit.config import DecodingConfig
from seq2seq_lit.data.collate import collate
from seq2seq_lit.data.sampler import BucketBatchSampler
from seq2seq_lit.data.tokenizer import Tokenizer
from seq2seq_lit.data.vocab import PAD_ID
from seq2seq_lit.errors import ConfigError
from seq2seq_lit.search import SearchResult, search

log = logging.getLogger(__name__)


@dataclass
class Hypothesis:
    text: str
    score: float  # log-probability / length penalty
    tokens: list[int]
    attention: torch.Tensor | None = None  # (tgt_len incl. EOS, src_len incl. EOS)


class Translator:
    """A network of either family with its tokenizers; translates lists of raw sentences in their original order."""

    def __init__(
        self, model: nn.Module, src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, max_length: int | None = None
    ) -> None:
        if not getattr(model, "translates", True):
            raise ConfigError("a language model does not translate; score text with python -m seq2seq_lit.score_lm")
        self.model, self.src_tokenizer, self.tgt_tokenizer = model, src_tokenizer, tgt_tokenizer
        self.max_length = max_length

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", direction: str = "src2tgt") -> Translator:
        """Everything comes from the checkpoint: weights, tokenizers, the length limit (``direction=tgt2src``:
        the other direction of a dual-learning checkpoint)."""
        ckpt = load_checkpoint(path, device, direction)
        return cls(ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer, ckpt.data.get("max_length"))

    def encode(self, lines: list[str], first_line: int = 1) -> list[np.ndarray]:
        """SentencePiece ids per line, truncated to ``max_length`` with a warning naming the line."""
        out = []
        for number, ids in enumerate(self.src_tokenizer.encode(lines), start=first_line):
            if self.max_length is not None and len(ids) > self.max_length:
                log.warning(
                    "line %d: %d subword tokens, truncated to the model's limit of %d",
                    number, len(ids), self.max_length,
                )  # fmt: skip
                ids = ids[: self.max_length]
            out.append(np.asarray(ids, dtype=np.int64))
        return out

    def batches(self, src_ids: list[np.ndarray], max_tokens: int, tgt_ids: list[np.ndarray] | None = None):
        """``length_batches`` on this translator's device."""
        return length_batches(src_ids, max_tokens, tgt_ids, next(self.model.parameters()).device)

    @torch.no_grad()
    def translate(
        self, lines: list[str], cfg: DecodingConfig, first_line: int = 1, attention: bool = False
    ) -> list[list[Hypothesis]]:
        """``cfg.n_best`` hypotheses per line, best first; an empty line gives one empty hypothesis."""
        cfg.check()
        self.model.eval()
        src_ids = self.encode(lines, first_line)
        results: list[list[Hypothesis]] = [[Hypothesis("", 0.0, [])] * cfg.n_best for _ in lines]
        for batch in self.batches(src_ids, cfg.max_tokens):
            found: SearchResult = search(
                self.model, batch["src"], batch["src_lengths"], cfg, return_attention=attention
            )
            tokens = found.token_lists()
            scores = found.scores.tolist()
            # One SentencePiece call per batch, not per sentence: each call has a fixed cost, which dominates
            # greedy decoding on a GPU when paid per sentence (BENCHMARKS.md).
            flat = self.tgt_tokenizer.decode([hyp for hyps in tokens for hyp in hyps])
            for row, index in enumerate(batch["ids"].tolist()):
                texts = flat[row * cfg.n_best : (row + 1) * cfg.n_best]
                results[index] = [
                    Hypothesis(
                        texts[n],
                        scores[row][n],
                        tokens[row][n],
                        found.attention[row, n, : found.lengths[row, n], : batch["src_lengths"][row]].cpu()
                        if found.attention is not None
                        else None,
                    )
                    for n in range(cfg.n_best)
                ]
        return results

    @torch.no_grad()
    def score(self, sources: list[str], targets: list[str], max_tokens: int = 4096, first_line: int = 1) -> list[float]:
        """Log-probability of each target given its source (forced decoding), EOS included."""
        self.model.eval()
        src_ids = self.encode(sources, first_line)
        tgt_ids = [np.asarray(t, dtype=np.int64) for t in self.tgt_tokenizer.encode(targets)]
        out = [0.0] * len(sources)
        for batch in self.batches(src_ids, max_tokens, tgt_ids):
            tgt = batch["tgt"]
            log_probs = self.model(batch["src"], batch["src_lengths"], tgt[:, :-1])
            for i, lp in zip(batch["ids"].tolist(), sentence_log_probs(log_probs, tgt[:, 1:]).tolist()):
                out[i] = lp
        return out


EMPTY = np.zeros(0, dtype=np.int64)


def length_batches(
    src_ids: list[np.ndarray],
    max_tokens: int,
    tgt_ids: list[np.ndarray] | None = None,
    device: torch.device | str = "cpu",
) -> Iterator[dict[str, torch.Tensor]]:
    """Length-sorted, collated batches (``BucketBatchSampler``, at most ``max_tokens`` token positions, or one
    sentence if longer) on ``device``; ``ids`` index ``src_ids``. Without targets, empty lines are skipped."""
    keep = [i for i, ids in enumerate(src_ids) if len(ids) or tgt_ids is not None]
    if not keep:
        return
    tgt_ids = tgt_ids or [EMPTY] * len(src_ids)
    src_len = np.array([len(src_ids[i]) + 1 for i in keep])
    tgt_len = np.array([len(tgt_ids[i]) + 2 for i in keep])
    longest = int(max(src_len.max(), tgt_len.max()))
    sampler = BucketBatchSampler(src_len, tgt_len, max(max_tokens, longest), shuffle=False)
    for batch in sampler:
        collated = collate([(keep[j], src_ids[keep[j]], tgt_ids[keep[j]]) for j in batch])
        yield {k: v.to(device) for k, v in collated.items()}


def sentence_log_probs(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum of target-token log-probabilities per sentence, PAD excluded."""
    # |log_probs| = (batch_size, tgt_len, vocab_size), |target| = (batch_size, tgt_len)
    picked = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return (picked * (target != PAD_ID)).sum(dim=1)


def parallel_batch(
    sources: list[str], targets: list[str], src_tokenizer: Tokenizer, tgt_tokenizer: Tokenizer, device: torch.device
) -> dict[str, torch.Tensor]:
    """Sentence pairs encoded and collated as in training (``ids[i]``: the pair of row ``i``)."""
    pairs = zip(src_tokenizer.encode(sources), tgt_tokenizer.encode(targets))
    examples = [(i, np.asarray(s, dtype=np.int64), np.asarray(t, dtype=np.int64)) for i, (s, t) in enumerate(pairs)]
    return {k: v.to(device) for k, v in collate(examples).items()}


def lm_log_probs(
    model: nn.Module, tokenizer: Tokenizer, lines: list[str], device: torch.device | str = "cpu", max_tokens: int = 8192
) -> torch.Tensor:
    """A language model's ``log P(line)`` (natural log, EOS included) of each line, batched by length as
    translation is (``length_batches``, the lines as targets of empty sources)."""
    ids = [np.asarray(t, dtype=np.int64) for t in tokenizer.encode(lines)]
    out = torch.zeros(len(lines), device=device)
    for batch in length_batches([EMPTY] * len(ids), max_tokens, ids, device):
        tgt = batch["tgt"]
        out[batch["ids"]] = sentence_log_probs(model(None, None, tgt[:, :-1]).float(), tgt[:, 1:])
    return out
