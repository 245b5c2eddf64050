import math

import pytest
import torch
from conftest import make_seq2seq

from seq2seq_lit.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seq2seq_lit.models.rnn import Seq2Seq
from seq2seq_lit.search import beam_search, greedy_search, length_penalty

A, B = 4, 5


class MarkovModel:
    """A hand-built 'model' whose next-token distribution depends only on the previous token."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int = 6) -> None:
        self.log_probs = torch.full((vocab, vocab), float("-inf"))
        for prev, dist in table.items():
            for tok, p in dist.items():
                self.log_probs[prev, tok] = math.log(p)

    def parameters(self):
        return iter(())

    def encode(self, src, src_lengths):
        return src.size(1), src[:, 0]  # the state: the source length (uniform attention), each row's first token

    def decode(self, y, state, need_attention=False):
        src_len, first = state
        lp = self.next_log_probs(first, y[:, -1]).unsqueeze(1)
        return lp, torch.full((y.size(0), 1, src_len), 1.0 / src_len), state

    def reorder_state(self, state, index):
        return state[0], state[1].index_select(0, index)

    def next_log_probs(self, first, prev):
        return self.log_probs[prev]


# After BOS: A .5, B .4, EOS .1; after A: EOS .4; after B: EOS .9.
TABLE = {
    BOS_ID: {A: 0.5, B: 0.4, EOS_ID: 0.1},
    A: {EOS_ID: 0.4, A: 0.3, B: 0.3},
    B: {EOS_ID: 0.9, A: 0.05, B: 0.05},
}
SRC, SRC_LEN = torch.tensor([[7, 8, 9]]), torch.tensor([3])


def test_greedy_and_beam_on_known_probabilities() -> None:
    model = MarkovModel(TABLE)
    greedy = greedy_search(model, SRC, SRC_LEN, max_len_a=0, max_len_b=6)
    assert greedy.token_lists() == [[[A]]]
    assert greedy.log_probs.item() == pytest.approx(math.log(0.5 * 0.4))
    beam = beam_search(model, SRC, SRC_LEN, beam_size=2, n_best=2, alpha=0.0, max_len_a=0, max_len_b=6)
    # Beam keeps B alive and finds B EOS (0.36), better than greedy's A EOS (0.2).
    assert beam.token_lists() == [[[B], [A]]]
    assert beam.log_probs[0].tolist() == pytest.approx([math.log(0.36), math.log(0.2)])
    assert beam.scores[0].tolist() == pytest.approx([math.log(0.36), math.log(0.2)])  # alpha = 0
    assert beam.lengths[0].tolist() == [2, 2]


def test_beam_wider_than_half_the_vocabulary_finds_the_best_outputs() -> None:
    # 2 * beam = 8 candidates per hypothesis from a 6-word vocabulary: every word of every hypothesis is ranked.
    beam = beam_search(MarkovModel(TABLE), SRC, SRC_LEN, beam_size=4, n_best=4, alpha=0.0, max_len_a=0, max_len_b=6)
    # The four most probable outputs overall: B EOS, A EOS, A B EOS, EOS.
    assert beam.token_lists() == [[[B], [A], [A, B], []]]
    assert beam.log_probs[0].tolist() == pytest.approx([math.log(p) for p in (0.36, 0.2, 0.5 * 0.3 * 0.9, 0.1)])


def test_length_penalty_changes_the_choice_where_it_should() -> None:
    # Stopping at once: 0.4. One word then EOS: 0.6 * 0.55 = 0.33.
    table = {BOS_ID: {EOS_ID: 0.4, A: 0.6}, A: {EOS_ID: 0.55, A: 0.45}}
    model = MarkovModel(table)
    plain = beam_search(model, SRC, SRC_LEN, beam_size=2, alpha=0.0, max_len_a=0, max_len_b=3)
    assert plain.token_lists() == [[[]]]
    assert plain.scores.item() == pytest.approx(math.log(0.4))
    long = beam_search(model, SRC, SRC_LEN, beam_size=2, alpha=2.0, max_len_a=0, max_len_b=3)
    assert long.token_lists() == [[[A]]]
    assert long.scores.item() == pytest.approx(math.log(0.33) / length_penalty(2, 2.0))
    assert long.log_probs.item() == pytest.approx(math.log(0.33))


def test_max_length_forces_eos() -> None:
    model = MarkovModel({BOS_ID: {A: 0.9, EOS_ID: 0.1}, A: {A: 0.9, EOS_ID: 0.1}})
    for result in (
        greedy_search(model, SRC, SRC_LEN, max_len_a=1.0, max_len_b=1),
        beam_search(model, SRC, SRC_LEN, beam_size=1, alpha=0.0, max_len_a=1.0, max_len_b=1),
    ):
        assert result.lengths.item() == 4  # a * src_len + b tokens, EOS included
        assert result.tokens[0, 0, :4].tolist() == [A, A, A, EOS_ID]


def test_n_best_above_beam_size_is_an_error() -> None:
    with pytest.raises(ValueError, match="n_best=3 must be between 1 and beam_size=2"):
        beam_search(MarkovModel(TABLE), SRC, SRC_LEN, beam_size=2, n_best=3)


def random_batch(seed: int = 0) -> tuple[Seq2Seq, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = make_seq2seq(30, 25, word_vec_size=16, hidden_size=24, n_layers=2, dropout=0.0).eval()
    lengths = torch.tensor([7, 5, 5, 3, 2])
    src = torch.full((5, 7), PAD_ID)
    for i, n in enumerate(lengths.tolist()):
        src[i, :n] = torch.randint(4, 30, (n,))
    return model, src, lengths


class RandomChain(MarkovModel):
    """Random next-token distributions that depend on the sentence's first source token and the previous token."""

    def __init__(self, seed: int, vocab: int = 12, n_src: int = 30) -> None:
        gen = torch.Generator().manual_seed(seed)
        logits = 3 * torch.randn(n_src, vocab, vocab, generator=gen)
        logits[..., [PAD_ID, BOS_ID]] = float("-inf")
        self.log_probs = torch.log_softmax(logits, dim=-1)

    def next_log_probs(self, first, prev):
        return self.log_probs[first, prev]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_one_equals_greedy(seed: int) -> None:
    model, src, lengths = random_batch(seed)
    for m in (model, RandomChain(seed)):
        greedy = greedy_search(m, src, lengths, max_len_a=2.0, max_len_b=5)
        beam = beam_search(m, src, lengths, beam_size=1, alpha=0.0, max_len_a=2.0, max_len_b=5)
        assert greedy.token_lists() == beam.token_lists()
        torch.testing.assert_close(greedy.log_probs, beam.log_probs)
    # The chain's sentences end at different steps, some before the limit, so stopping is exercised.
    assert len({len(h[0]) for h in greedy.token_lists()}) > 1


def test_beam_on_a_batch_equals_beam_per_sentence() -> None:
    model, src, lengths = random_batch(3)
    batched = beam_search(model, src, lengths, beam_size=4, n_best=3, alpha=0.6)
    for i in range(src.size(0)):
        n = lengths[i].item()
        single = beam_search(model, src[i : i + 1, :n], lengths[i : i + 1], beam_size=4, n_best=3, alpha=0.6)
        assert single.token_lists()[0] == batched.token_lists()[i]
        torch.testing.assert_close(single.scores[0], batched.scores[i], rtol=1e-5, atol=1e-5)
    scores = batched.scores
    assert torch.all(scores[:, :-1] >= scores[:, 1:])  # n-best ordered by score


def test_beam_returns_attention_for_each_output_token() -> None:
    model, src, lengths = random_batch(4)
    result = beam_search(model, src, lengths, beam_size=3, n_best=2, return_attention=True)
    attn = result.attention
    assert attn.shape[:3] == result.tokens.shape and attn.shape[3] == src.size(1)
    for i in range(src.size(0)):
        n = result.lengths[i, 0].item()
        torch.testing.assert_close(attn[i, 0, :n].sum(-1), torch.ones(n))
        assert torch.all(attn[i, 0, :n, lengths[i] :] == 0)  # never on PAD
    greedy = greedy_search(model, src, lengths, return_attention=True)
    assert greedy.attention.shape[:3] == greedy.tokens.shape


@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_on_a_batch_equals_greedy_per_sentence(seed: int) -> None:
    chain = RandomChain(seed)
    _, src, lengths = random_batch(seed)
    batched = greedy_search(chain, src, lengths, max_len_a=2.0, max_len_b=5, return_attention=True)
    assert len(set(batched.lengths.view(-1).tolist())) > 1  # rows leave the batch at different steps
    for i in range(src.size(0)):
        n = lengths[i].item()
        single = greedy_search(chain, src[i : i + 1, :n], lengths[i : i + 1], max_len_a=2.0, max_len_b=5)
        assert single.token_lists()[0] == batched.token_lists()[i]
        torch.testing.assert_close(single.log_probs[0], batched.log_probs[i])
        steps = batched.lengths[i, 0].item()
        torch.testing.assert_close(batched.attention[i, 0, :steps].sum(-1), torch.ones(steps))
        assert torch.all(batched.attention[i, 0, steps:] == 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_finished_sentences_leave_the_beam_batch(seed: int) -> None:
    chain = RandomChain(seed)
    _, src, lengths = random_batch(seed)
    rows = []
    decode = chain.decode
    chain.decode = lambda y, state, need=False: (rows.append(y.size(0)), decode(y, state, need))[1]
    batched = beam_search(chain, src, lengths, beam_size=3, n_best=2, alpha=0.6, return_attention=True)
    # Sentences stop at different steps, and the decoder then runs on k rows per sentence still going.
    assert rows[0] == 3 * src.size(0) and rows[-1] < rows[0] and rows == sorted(rows, reverse=True)
    chain.decode = decode
    for i in range(src.size(0)):
        n = lengths[i].item()
        single = beam_search(chain, src[i : i + 1, :n], lengths[i : i + 1], beam_size=3, n_best=2, alpha=0.6,
                             return_attention=True)  # fmt: skip
        assert single.token_lists()[0] == batched.token_lists()[i]
        torch.testing.assert_close(single.scores[0], batched.scores[i])
        for j, steps in enumerate(batched.lengths[i].tolist()):  # the chain attends uniformly, PAD included
            torch.testing.assert_close(batched.attention[i, j, :steps].sum(-1), torch.ones(steps))
            assert torch.all(batched.attention[i, j, steps:] == 0)
