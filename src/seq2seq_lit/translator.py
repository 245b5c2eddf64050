"""Translate raw sentences with a trained model: tokenize, batch by length, search, restore order."""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seq2seq_lit.checkpoint import read_checkpoint
from seq2seq_lit.collate import collate
from seq2seq_lit.config import DecodingConfig
from seq2seq_lit.model import Seq2Seq
from seq2seq_lit.sampler import BucketBatchSampler
from seq2seq_lit.search import SearchResult, beam_search, greedy_search
from seq2seq_lit.tokenizer import Tokenizer
from seq2seq_lit.vocab import PAD_ID

log = logging.getLogger(__name__)


@dataclass
class Hypothesis:
    text: str
    score: float  # log-probability / length penalty
    tokens: list[int]
    attention: torch.Tensor | None = None  # (tgt_len incl. EOS, src_len incl. EOS)


def search(model, src: torch.Tensor, src_lengths: torch.Tensor, cfg: DecodingConfig, attention: bool = False):
    """Greedy when ``beam_size`` is 1 and one hypothesis is wanted, beam search otherwise."""
    with torch.autocast(src.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        if cfg.beam_size == 1:
            found = greedy_search(model, src, src_lengths, cfg.max_len_a, cfg.max_len_b, cfg.alpha, attention)
        else:
            found = beam_search(
                model, src, src_lengths, cfg.beam_size, cfg.n_best, cfg.alpha, cfg.max_len_a, cfg.max_len_b, attention
            )
    return found


class Translator:
    """A Seq2Seq model with its tokenizers; translates lists of raw sentences in their original order."""

    def __init__(self, model, src_tokenizer, tgt_tokenizer, max_length: int | None = None) -> None:
        self.model, self.src_tokenizer, self.tgt_tokenizer = model, src_tokenizer, tgt_tokenizer
        self.max_length = max_length

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> Translator:
        """Everything comes from the checkpoint: weights, tokenizers, the length limit."""
        ckpt = load_checkpoint(path, device)
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
        """Length-sorted, collated batches; ``ids`` index ``src_ids``. Without targets, empty lines are skipped."""
        keep = [i for i, ids in enumerate(src_ids) if len(ids) or tgt_ids is not None]
        if not keep:
            return
        empty = np.zeros(0, dtype=np.int64)
        tgt_ids = tgt_ids or [empty] * len(src_ids)
        src_len = np.array([len(src_ids[i]) + 1 for i in keep])
        tgt_len = np.array([len(tgt_ids[i]) + 2 for i in keep])
        longest = int(max(src_len.max(), tgt_len.max()))
        sampler = BucketBatchSampler(src_len, tgt_len, max(max_tokens, longest), shuffle=False)
        device = next(self.model.parameters()).device
        for batch in sampler:
            collated = collate([(keep[j], src_ids[keep[j]], tgt_ids[keep[j]]) for j in batch])
            yield {k: v.to(device) for k, v in collated.items()}

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
            found: SearchResult = search(self.model, batch["src"], batch["src_lengths"], cfg, attention)
            tokens = found.token_lists()
            scores = found.scores.tolist()
            # One SentencePiece call per batch, not per sentence: each call has a fixed cost (0.1 ms on 2 cores,
            # about 1 ms on 16), which made greedy decoding on a GPU 3-4x slower (BENCHMARKS.md).
            flat = self.tgt_tokenizer.decode([hyp for hyps in tokens for hyp in hyps])
            for row, index in enumerate(batch["ids"].tolist()):
                texts = flat[row * cfg.n_best : (row + 1) * cfg.n_best]
                results[index] = [
                    Hypothesis(
                        texts[n],
                        scores[row][n],
                        tokens[row][n],
                        found.attention[row, n, : found.lengths[row, n], : batch["src_lengths"][row]].cpu()
                        if attention
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


def sentence_log_probs(log_probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Sum of target-token log-probabilities per sentence, PAD excluded."""
    # |log_probs| = (batch_size, tgt_len, vocab_size), |target| = (batch_size, tgt_len)
    picked = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return (picked * (target != PAD_ID)).sum(dim=1)


@dataclass
class Checkpoint:
    model: Seq2Seq
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    hparams: dict

    @property
    def data(self) -> dict:
        return self.hparams.get("data") or {}


def load_checkpoint(path: str | Path, device: str = "cpu") -> Checkpoint:
    """Rebuild the Seq2Seq model and tokenizers from a training checkpoint (``weights_only=True``).

    Needs neither Lightning nor the training config, so translation starts fast.
    """
    # Read on the CPU: the tokenizers are byte tensors that SentencePiece reads through NumPy.
    ckpt = read_checkpoint(path)
    hparams, weights, toks = ckpt["hyper_parameters"], ckpt["state_dict"], ckpt["tokenizers"]
    args = {k: hparams[k] for k in inspect.signature(Seq2Seq).parameters if k in hparams}
    model = Seq2Seq(**args).to(device)
    try:
        model.load_state_dict({k.removeprefix("model."): v for k, v in weights.items() if k.startswith("model.")})
    except RuntimeError as err:
        raise ValueError(f"ckpt_path={path}: weights do not match the model configuration it records ({err})") from None
    src, tgt = Tokenizer.from_tensor(toks["src"]), Tokenizer.from_tensor(toks["tgt"])
    return Checkpoint(model.eval(), src, tgt, hparams)
