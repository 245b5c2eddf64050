"""Training objectives beyond maximum likelihood: minimum risk training (Shen et al., 2016) and dual supervised
learning (Xia et al., 2017).

``model/objective=mrt``: for each source, ``samples`` candidate translations are sampled from the model or taken
from a beam search's ``samples`` best (the reference may be one of them), scored against the reference with a
sentence-level sacreBLEU metric, and the loss is the expected risk ``sum_j Q(y_j | x) (1 - metric_j / 100)`` under
the model's distribution renormalised over the candidates with sharpness ``alpha``, ``Q(y_j | x) ∝ P(y_j | x) **
alpha`` (or, length-normalised, ``exp(alpha * mean token log-probability)``), mixed with the MLE loss.

``model/objective=dsl``: the two directions x -> y and y -> x train together on each pair, and the loss adds
``dual_weight * ((log P(x) + log P(y|x)) - (log P(y) + log P(x|y))) ** 2``, with ``P(x)`` and ``P(y)`` from two
frozen language models: both factorisations of the joint probability should agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sacrebleu.metrics import BLEU, CHRF

from seq2seq_lit.data.vocab import BOS_ID, PAD_ID
from seq2seq_lit.errors import ConfigError
from seq2seq_lit.translator import sentence_log_probs

OBJECTIVES = ("mle", "mrt", "dsl")
METRICS = ("bleu", "chrf")
CANDIDATE_SOURCES = ("sample", "beam")


def expected_risk(
    seq_log_probs: torch.Tensor, cost: torch.Tensor, alpha: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Per sentence, ``sum_j Q_j cost_j`` with ``Q = softmax(alpha * log P(y_j | x))`` over its valid candidates.

    ``seq_log_probs``, ``cost`` and ``valid`` are ``(batch, k)``; returns ``(batch,)``.
    """
    scores = alpha * seq_log_probs
    if valid is not None:
        scores = scores.masked_fill(~valid, float("-inf"))
    q = torch.softmax(scores, dim=1)
    # |q| = (batch_size, k)
    return (q * cost).sum(dim=1)


def candidate_scores(log_probs: torch.Tensor, target: torch.Tensor, length_normalize: bool) -> torch.Tensor:
    """Each row's log-probability of its target, PAD excluded: the sum, or with ``length_normalize`` the mean
    over its tokens. ``log_probs`` ``(rows, len, vocab)``, ``target`` ``(rows, len)``; returns ``(rows,)``."""
    total = sentence_log_probs(log_probs, target)
    if not length_normalize:
        return total
    # clamp: a row without tokens (a candidate the search did not find) must not divide by zero in backward
    return total / (target != PAD_ID).sum(dim=1).clamp(min=1)


def dual_gap(
    log_p_x: torch.Tensor, log_p_y_given_x: torch.Tensor, log_p_y: torch.Tensor, log_p_x_given_y: torch.Tensor
) -> torch.Tensor:
    """Per pair, the squared difference of the two factorisations of ``log P(x, y)``; all inputs ``(batch,)``."""
    return ((log_p_x + log_p_y_given_x) - (log_p_y + log_p_x_given_y)) ** 2


def sentence_metric(name: str):
    """A function ``(hypothesis, reference) -> score in [0, 100]``: smoothed sentence BLEU or chrF."""
    if name not in METRICS:
        raise ConfigError(f"model.objective.metric={name!r}; allowed values: {list(METRICS)}")
    metric = BLEU(effective_order=True) if name == "bleu" else CHRF()
    return lambda hyp, ref: metric.sentence_score(hyp, [ref]).score


@dataclass
class Candidates:
    """``k`` candidate translations per sentence, as teacher-forcing input and target."""

    tgt: torch.Tensor  # (batch * k, len): BOS y EOS PAD...
    valid: torch.Tensor  # (batch, k): False for a candidate not found or a duplicate of an earlier one of its sentence


def candidates(
    outputs: torch.Tensor, k: int, reference: torch.Tensor | None, found: torch.Tensor | None = None
) -> Candidates:
    """Decoded outputs (``search.sample``'s rows, or a beam's ``k`` best flattened to ``(batch * k, len)``) as
    ``[BOS] y [EOS]`` rows; with ``reference`` (the batch's ``tgt``) each sentence's last candidate is replaced by
    its reference. Duplicates within a sentence count once; ``found`` ``(batch, k)`` marks the outputs a search
    returned (a beam may finish fewer than ``k``), the others count as none."""
    rows = outputs.size(0)
    # An output row holds y EOS PAD...; prepend BOS.
    tgt = torch.cat([outputs.new_full((rows, 1), BOS_ID), outputs], dim=1)
    if reference is not None:
        width = max(tgt.size(1), reference.size(1))
        tgt = torch.nn.functional.pad(tgt, (0, width - tgt.size(1)), value=PAD_ID)
        ref = torch.nn.functional.pad(reference, (0, width - reference.size(1)), value=PAD_ID)
        tgt = tgt.view(-1, k, width).clone()
        tgt[:, -1] = ref
        tgt = tgt.view(rows, width)
    batch = rows // k
    as_lists = [tuple(row[row != PAD_ID].tolist()) for row in tgt]
    keep = [[True] * k for _ in range(batch)] if found is None else found.tolist()
    for i in range(batch):
        seen: set[tuple] = set()
        for j in range(k):
            row = as_lists[i * k + j]
            keep[i][j] = (keep[i][j] or (reference is not None and j == k - 1)) and row not in seen
            seen.add(row)
    valid = torch.tensor(keep, dtype=torch.bool, device=tgt.device)
    return Candidates(tgt, valid)


def check_objective(objective: dict) -> None:
    """Settings the objectives cannot take, named by key."""
    name = objective.get("name", "mle")
    if name not in OBJECTIVES:
        raise ConfigError(f"model.objective.name={name!r}; allowed values: {list(OBJECTIVES)}")
    if name == "mrt":
        if objective["samples"] < 2:
            raise ConfigError(f"model.objective.samples={objective['samples']} must be >= 2")
        if objective["candidates"] not in CANDIDATE_SOURCES:
            raise ConfigError(
                f"model.objective.candidates={objective['candidates']!r}; allowed values: {list(CANDIDATE_SOURCES)}"
            )
        if not 0.0 <= objective["mle_weight"] < 1.0:
            raise ConfigError(f"model.objective.mle_weight={objective['mle_weight']} must be in [0, 1)")
        sentence_metric(objective["metric"])
    if name == "dsl":
        for key in ("reverse_from", "src_lm", "tgt_lm"):
            if not objective.get(key):
                raise ConfigError(
                    f"model.objective.{key} is required with model.objective.name=dsl: dual learning needs the "
                    "other direction's checkpoint (reverse_from) and a language model checkpoint of each language "
                    "(src_lm, tgt_lm; experiment=lm_de|lm_en)"
                )
        if objective["dual_weight"] < 0:
            raise ConfigError(f"model.objective.dual_weight={objective['dual_weight']} must be >= 0")
        if objective["dual_warmup_steps"] < 0:
            raise ConfigError(f"model.objective.dual_warmup_steps={objective['dual_warmup_steps']} must be >= 0")
