"""benchmarks/textbook.py against our model and searches: the harness compares their speeds, so they must
compute the same thing. It also checks the tensorised beam search against one that does its bookkeeping
sentence by sentence in Python."""

import sys
from pathlib import Path

import pytest
import torch
from conftest import make_seq2seq

from seq2seq_lit.config import DecodingConfig
from seq2seq_lit.data.vocab import EOS_ID, PAD_ID
from seq2seq_lit.models.rnn.seq2seq import Seq2Seq
from seq2seq_lit.search import greedy_search, max_lengths, search

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import textbook  # noqa: E402


def small_model(seed: int, scale: float = 1.0, eos_bias: float = 0.0) -> Seq2Seq:
    """A random float64 model; ``scale`` on every weight makes its outputs depend more on the input, and
    ``eos_bias`` makes EOS likelier."""
    torch.manual_seed(seed)
    model = make_seq2seq(30, 25, word_vec_size=8, hidden_size=16, n_layers=2, dropout=0.0).double().eval()
    with torch.no_grad():
        for weight in model.parameters():
            weight *= scale
        model.generator.output.bias[EOS_ID] += eos_bias
    return model


def source(seed: int, batch: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 10, (batch,), generator=g)
    src = torch.randint(4, 30, (batch, int(lengths.max())), generator=g)
    src[torch.arange(src.size(1)) >= lengths.unsqueeze(1)] = PAD_ID
    return src, lengths


@pytest.mark.parametrize("seed", [0, 1])
def test_textbook_forward_equals_the_model(seed: int) -> None:
    model, (src, lengths) = small_model(seed), source(seed)
    tgt_in = torch.randint(4, 25, (src.size(0), 7))
    with torch.no_grad():
        ours, theirs = model(src, lengths, tgt_in), textbook.forward(model, src, lengths, tgt_in)
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-12)


# Settings where outputs of many lengths end before their length limit and beam search finds other outputs.
@pytest.mark.parametrize(("seed", "scale", "eos_bias"), [(0, 3.0, 0.0), (0, 5.0, 0.0), (3, 5.0, 1.0)])
def test_textbook_searches_find_our_translations(seed: int, scale: float, eos_bias: float) -> None:
    model, (src, lengths) = small_model(seed, scale, eos_bias), source(seed)
    cfg = DecodingConfig(beam_size=3, alpha=0.6, max_len_a=1.5, max_len_b=4)
    greedy = [
        hyps[0]
        for hyps in greedy_search(model, src, lengths, max_len_a=cfg.max_len_a, max_len_b=cfg.max_len_b).token_lists()
    ]
    assert textbook.greedy(model, src, lengths, cfg) == greedy
    limits = max_lengths(lengths, cfg.max_len_a, cfg.max_len_b)
    assert any(len(tokens) + 1 < limit for tokens, limit in zip(greedy, limits.tolist()))  # not all forced
    found = search(model, src, lengths, cfg)
    beam = [hyps[0] for hyps in found.token_lists()]
    assert textbook.beam(model, src, lengths, cfg) == beam
    assert beam != greedy  # the beam finds something greedy does not, so the check covers its bookkeeping
    assert len({len(tokens) for tokens in beam}) >= 4
