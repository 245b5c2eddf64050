"""Batched greedy and beam search over any network of ``seq2seq_lit.models``.

Search only calls the network's ``encode``, ``decode`` and ``reorder_state``; the state is the network's own.
Both work on the whole batch at once (beam search on ``batch x beam`` rows): one decoder call and a few
tensor operations per time step, no Python loop over sentences or hypotheses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seq2seq_lit.config import DecodingConfig, SearchLimits
from seq2seq_lit.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seq2seq_lit.errors import ConfigError
from seq2seq_lit.precision import autocast_bf16

# Defaults of the keyword arguments below: the config schema's, so code and commands decode alike.
_LIMITS = SearchLimits()


@dataclass
class SearchResult:
    """``n`` hypotheses per sentence, best first. Lengths count the final EOS."""

    tokens: torch.Tensor  # (batch, n, max_len), PAD after EOS
    lengths: torch.Tensor  # (batch, n)
    scores: torch.Tensor  # (batch, n), log-probability / length penalty
    log_probs: torch.Tensor  # (batch, n), plain log-probability of the hypothesis
    attention: torch.Tensor | None = None  # (batch, n, max_len, src_len)

    def token_lists(self) -> list[list[list[int]]]:
        """Per sentence, per hypothesis: the token ids without EOS."""
        lengths = self.lengths.tolist()
        tokens = self.tokens.tolist()
        return [[hyp[: n - 1] for hyp, n in zip(sent, ns)] for sent, ns in zip(tokens, lengths)]


def length_penalty(length: torch.Tensor | int, alpha: float) -> torch.Tensor | float:
    """GNMT length penalty ``((5 + len) / 6) ** alpha`` (1 when alpha is 0)."""
    return ((5 + length) / 6) ** alpha


def score_dtype(model) -> torch.dtype:
    """Scores are kept in float32, or float64 for a float64 model (bf16 autocast still scores in float32)."""
    param = next(iter(model.parameters()), None)
    return torch.promote_types(param.dtype if param is not None else torch.float32, torch.float32)


def max_lengths(src_lengths: torch.Tensor, a: float, b: int) -> torch.Tensor:
    """Longest output allowed per sentence: ``a * src_len + b`` tokens, EOS included."""
    return (a * src_lengths.float() + b).long().clamp(min=1)


def search(
    model, src: torch.Tensor, src_lengths: torch.Tensor, cfg: DecodingConfig, *, return_attention: bool = False
) -> SearchResult:
    """Greedy search when ``cfg.beam_size`` is 1, beam search otherwise; under bf16 autocast if ``cfg.bf16``."""
    a, b, alpha = cfg.max_len_a, cfg.max_len_b, cfg.alpha
    bf16 = autocast_bf16(cfg.bf16, src.device, "bf16")
    with torch.autocast(src.device.type, dtype=torch.bfloat16, enabled=bf16):
        if cfg.beam_size == 1:
            return greedy_search(
                model, src, src_lengths, alpha=alpha, max_len_a=a, max_len_b=b, return_attention=return_attention
            )
        return beam_search(
            model, src, src_lengths, beam_size=cfg.beam_size, n_best=cfg.n_best, alpha=alpha, max_len_a=a,
            max_len_b=b, return_attention=return_attention,
        )  # fmt: skip


@torch.no_grad()
def greedy_search(
    model, src: torch.Tensor, src_lengths: torch.Tensor, *, alpha: float = _LIMITS.alpha,
    max_len_a: float = _LIMITS.max_len_a, max_len_b: int = _LIMITS.max_len_b, return_attention: bool = False,
) -> SearchResult:  # fmt: skip
    """Pick the most probable token at every step until EOS or the length limit.

    Finished sentences leave the batch, so the decoder only runs on the ones still going.
    """
    batch, device = src.size(0), src.device
    state = model.encode(src, src_lengths)
    dtype = score_dtype(model)
    limit = max_lengths(src_lengths, max_len_a, max_len_b).to(device)
    max_len = int(limit.max())
    tokens = src.new_full((batch, max_len), PAD_ID)
    log_prob = torch.zeros(batch, dtype=dtype, device=device)
    lengths = limit.clone()
    # Without return_attention the attention tensors stay empty and are never indexed.
    attention = (
        torch.zeros(batch, max_len, src.size(1), dtype=dtype, device=device) if return_attention else src.new_empty(0)
    )
    active = torch.arange(batch, device=device)  # rows of the original batch still decoding
    y = src.new_full((batch, 1), BOS_ID)
    for t in range(max_len):
        step_lp, attn, state = model.decode(y, state, return_attention)
        lp = step_lp[:, -1]
        # |lp| = (n_active, vocab_size)
        at_limit = t + 1 >= limit[active]
        if bool(at_limit.any()):  # force EOS there; masking only then spares a full-vocabulary mask every step
            forced = at_limit.unsqueeze(1) & (torch.arange(lp.size(1), device=device) != EOS_ID)
            lp = lp.masked_fill(forced, float("-inf"))
        best, token = lp.max(dim=-1)
        tokens[active, t] = token
        log_prob[active] += best
        if return_attention:
            attention[active, t] = attn[:, -1]
        ended = token == EOS_ID
        if bool(ended.any()):
            lengths[active[ended]] = t + 1
            keep = (~ended).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            active, token = active[keep], token[keep]
            state = model.reorder_state(state, keep)
        y = token.unsqueeze(1)
    used = int(lengths.max())
    return SearchResult(
        tokens[:, :used].unsqueeze(1),
        lengths.unsqueeze(1),
        (log_prob / length_penalty(lengths.float(), alpha)).unsqueeze(1),
        log_prob.unsqueeze(1),
        attention[:, :used].unsqueeze(1) if return_attention else None,
    )


def encode_rows(model, src: torch.Tensor, src_lengths: torch.Tensor, n: int):
    """The encoder's state for ``n`` decoder rows per sentence (a sentence's rows together); each source is
    encoded once and kept once per sentence (``reorder_state``)."""
    rows = torch.arange(src.size(0), device=src.device).repeat_interleave(n)
    return model.reorder_state(model.encode(src, src_lengths), rows)


@torch.no_grad()
def beam_search(
    model, src: torch.Tensor, src_lengths: torch.Tensor, *, beam_size: int, n_best: int = 1,
    alpha: float = _LIMITS.alpha, max_len_a: float = _LIMITS.max_len_a, max_len_b: int = _LIMITS.max_len_b,
    return_attention: bool = False,
) -> SearchResult:  # fmt: skip
    """Beam search with GNMT length penalty; returns the ``n_best`` finished hypotheses per sentence.

    A sentence stops when its ``n_best``-th finished hypothesis scores at least as well as the best live
    one could still reach (its log-probability only falls; the penalty is largest at the length limit),
    or when it reaches its length limit, where EOS is forced.
    """
    if not 1 <= n_best <= beam_size:
        raise ConfigError(f"n_best={n_best} must be between 1 and beam_size={beam_size}")
    batch, k, device = src.size(0), beam_size, src.device
    state = encode_rows(model, src, src_lengths, k)
    dtype = score_dtype(model)
    limit = max_lengths(src_lengths, max_len_a, max_len_b).to(device)
    max_len, src_len = int(limit.max()), src.size(1)
    neg_inf = float("-inf")

    # Finished hypotheses: the best k per sentence, by normalised score.
    fin_score = torch.full((batch, k), neg_inf, dtype=dtype, device=device)
    fin_lp = torch.full((batch, k), neg_inf, dtype=dtype, device=device)
    fin_tokens = src.new_full((batch, k, max_len), PAD_ID)
    fin_len = torch.ones(batch, k, dtype=torch.long, device=device)
    fin_attn = (
        torch.zeros(batch, k, max_len, src_len, dtype=dtype, device=device) if return_attention else src.new_empty(0)
    )
    # Sentences still decoding (indices into the batch); a sentence that is done leaves the decoder batch,
    # so the tensors below have one row per active sentence (or k, one per live hypothesis).
    active = torch.arange(batch, device=device)
    # Live hypotheses: k per sentence; only the first is real at the start.
    live_lp = torch.full((batch, k), neg_inf, dtype=dtype, device=device)
    live_lp[:, 0] = 0.0
    live_tokens = src.new_empty((batch * k, 0))
    live_attn = torch.zeros(batch * k, 0, src_len, dtype=dtype, device=device)
    cand_order = torch.arange(2 * k, device=device)
    y = src.new_full((batch * k, 1), BOS_ID)

    for t in range(max_len):
        step_lp, attn, state = model.decode(y, state, return_attention)
        n, vocab = active.numel(), step_lp.size(-1)
        lp = step_lp[:, -1].view(n, k, vocab)
        at_limit = t + 1 >= limit[active]
        if bool(at_limit.any()):
            not_eos = torch.arange(vocab, device=device) != EOS_ID
            lp = lp.masked_fill(at_limit.view(n, 1, 1) & not_eos, neg_inf)
        # Only a hypothesis' best 2k words can be among its sentence's best 2k candidates: pick those per row
        # first, so the step adds and ranks (n, k, 2k) scores rather than (n, k, vocab).
        word_lp, word = lp.topk(min(2 * k, vocab), dim=2)
        cand_lp, cand = (live_lp.unsqueeze(2) + word_lp).view(n, -1).topk(2 * k, dim=1)
        # |cand_lp| = |cand| = (n_active, 2 * beam_size); at most k of them end in EOS
        beam, token = cand // word.size(2), word.view(n, -1).gather(1, cand)
        offsets = (torch.arange(n, device=device) * k).unsqueeze(1)
        source_row = (offsets + beam).view(-1)
        is_eos = token == EOS_ID

        # EOS candidates ranked among the top k end here (as in fairseq, so beam 1 is greedy) and join
        # the finished pool if they rank among its best k.
        ending = is_eos & (cand_order < k)
        eos_score = (cand_lp / length_penalty(t + 1, alpha)).masked_fill(~ending, neg_inf)
        if bool(ending.any()):
            prefix = live_tokens.index_select(0, source_row).view(n, 2 * k, t)
            new_tokens = torch.cat(
                [prefix, token.unsqueeze(2), prefix.new_full((n, 2 * k, max_len - t - 1), PAD_ID)], 2
            )
            score, pick = torch.cat([fin_score[active], eos_score], 1).topk(k, dim=1)
            fin_score[active] = score
            fin_lp[active] = torch.cat([fin_lp[active], cand_lp], 1).gather(1, pick)
            ended_len = torch.full_like(cand_lp, t + 1, dtype=torch.long)
            fin_len[active] = torch.cat([fin_len[active], ended_len], 1).gather(1, pick)
            all_tokens = torch.cat([fin_tokens[active], new_tokens], 1)
            fin_tokens[active] = all_tokens.gather(1, pick.unsqueeze(2).expand(-1, -1, max_len))
            if return_attention:
                steps = torch.cat([live_attn, attn[:, -1:]], 1).index_select(0, source_row)
                pad = steps.new_zeros(n * 2 * k, max_len - t - 1, src_len)
                new_attn = torch.cat([steps, pad], 1).view(n, 2 * k, max_len, src_len)
                index = pick.view(n, k, 1, 1).expand(-1, -1, max_len, src_len)
                fin_attn[active] = torch.cat([fin_attn[active], new_attn], 1).gather(1, index)

        # The best k candidates that do not end in EOS stay live (stable: EOS ones sorted last).
        keep = (is_eos.long() * 2 * k + cand_order).argsort(dim=1)[:, :k]
        live_lp = cand_lp.gather(1, keep)
        live_rows = (offsets + beam.gather(1, keep)).view(-1)
        next_token = token.gather(1, keep).view(-1, 1)

        best_reachable = live_lp[:, 0] / length_penalty(limit[active].float(), alpha)
        done = at_limit | (fin_score[active, n_best - 1] >= best_reachable)
        if bool(done.any()):
            going = (~done).nonzero().squeeze(1)
            if going.numel() == 0:
                break
            active, live_lp = active[going], live_lp[going]
            live_rows, next_token = live_rows.view(n, k)[going].view(-1), next_token.view(n, k)[going].view(-1, 1)
        live_tokens = torch.cat([live_tokens.index_select(0, live_rows), next_token], 1)
        if return_attention:
            live_attn = torch.cat([live_attn, attn[:, -1:]], 1).index_select(0, live_rows)
        state = model.reorder_state(state, live_rows)
        y = next_token

    used = int(fin_len[:, :n_best].max())
    return SearchResult(
        fin_tokens[:, :n_best, :used],
        fin_len[:, :n_best],
        fin_score[:, :n_best],
        fin_lp[:, :n_best],
        fin_attn[:, :n_best, :used] if return_attention else None,
    )


@torch.no_grad()
def sample(
    model, src: torch.Tensor, src_lengths: torch.Tensor, *, n: int, max_len_a: float = _LIMITS.max_len_a,
    max_len_b: int = _LIMITS.max_len_b,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``n`` translations per sentence drawn from the model's distribution, token by token (ancestral sampling).

    Returns the tokens ``(batch * n, max_len)`` (a sentence's ``n`` rows together, PAD after EOS) and their
    lengths, EOS included. EOS is forced at the length limit.
    """
    batch, device = src.size(0), src.device
    state = encode_rows(model, src, src_lengths, n)
    limit = max_lengths(src_lengths, max_len_a, max_len_b).to(device).repeat_interleave(n)
    max_len = int(limit.max())
    tokens = src.new_full((batch * n, max_len), PAD_ID)
    lengths = limit.clone()
    done = torch.zeros(batch * n, dtype=torch.bool, device=device)
    y = src.new_full((batch * n, 1), BOS_ID)
    for t in range(max_len):
        step_lp, _, state = model.decode(y, state)
        token = torch.multinomial(step_lp[:, -1].float().exp(), 1).squeeze(1)
        token = torch.where(t + 1 >= limit, torch.full_like(token, EOS_ID), token)
        token = token.masked_fill(done, PAD_ID)
        tokens[:, t] = token
        ended = (token == EOS_ID) & ~done
        lengths[ended] = t + 1
        done |= ended
        if bool(done.all()):
            break
        y = token.masked_fill(done, EOS_ID).unsqueeze(1)  # finished rows keep stepping (their output is ignored)
    return tokens[:, : int(lengths.max())], lengths
