import pytest
import torch

from seq2seq_lit.config import TransformerConfig, schema_defaults
from seq2seq_lit.data.vocab import BOS_ID, EOS_ID, PAD_ID
from seq2seq_lit.errors import ConfigError
from seq2seq_lit.models import build_model
from seq2seq_lit.models.transformer import Transformer, sinusoids
from seq2seq_lit.search import beam_search, greedy_search

SRC_V, TGT_V = 23, 19


def make_transformer(src_vocab: int = SRC_V, tgt_vocab: int = TGT_V, **overrides) -> Transformer:
    torch.manual_seed(0)
    hparams = {**schema_defaults(TransformerConfig), "hidden_size": 16, "n_heads": 4, "ffn_size": 32, "n_layers": 2}
    hparams.update({"src_vocab_size": src_vocab, "tgt_vocab_size": tgt_vocab, "dropout": 0.0, **overrides})
    model = build_model(hparams)
    assert isinstance(model, Transformer)
    return model.eval()


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src = torch.tensor([[5, 6, 7, 8, 9, 3], [10, 11, 3, PAD_ID, PAD_ID, PAD_ID], [12, 13, 14, 3, PAD_ID, PAD_ID]])
    tgt_in = torch.tensor([[BOS_ID, 4, 5, 6, 7], [BOS_ID, 8, PAD_ID, PAD_ID, PAD_ID], [BOS_ID, 9, 10, 11, PAD_ID]])
    return src, (src != PAD_ID).sum(1), tgt_in


VARIANTS = [
    {},
    {"norm": "post"},
    {"positions": "learned"},
    {"activation": "gelu", "decoder_layers": 1},
    {"tie_embeddings": True},
    {"tie_embeddings": True, "share_embeddings": True, "src_vocab": TGT_V},
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_incremental_decoding_equals_the_teacher_forced_pass(variant: dict) -> None:
    """Each cached step gives the log-probabilities of the full pass at that position, to 1e-5."""
    model = make_transformer(**variant)
    src, lengths, tgt_in = batch()
    full = model(src, lengths, tgt_in)
    state = model.encode(src, lengths)
    for t in range(tgt_in.size(1)):
        step, _, state = model.decode(tgt_in[:, t : t + 1], state)
        torch.testing.assert_close(step[:, 0], full[:, t], rtol=1e-5, atol=1e-5)
    # A prefix after cached steps (several tokens at once) is causal too.
    state = model.encode(src, lengths)
    _, _, state = model.decode(tgt_in[:, :2], state)
    rest, _, _ = model.decode(tgt_in[:, 2:], state)
    torch.testing.assert_close(rest, full[:, 2:], rtol=1e-5, atol=1e-5)


def test_pad_sources_and_later_targets_do_not_change_earlier_outputs() -> None:
    model = make_transformer()
    src, lengths, tgt_in = batch()
    full = model(src, lengths, tgt_in)
    other_pad = src.clone()
    other_pad[1, 3:] = 17  # PAD positions get another token: masked, so nothing changes
    torch.testing.assert_close(model(other_pad, lengths, tgt_in)[1], full[1])
    for t in range(tgt_in.size(1) - 1):
        changed = tgt_in.clone()
        changed[:, t + 1 :] = 13
        out = model(src, lengths, changed)
        torch.testing.assert_close(out[:, : t + 1], full[:, : t + 1])
        assert not torch.allclose(out[0, t + 1 :], full[0, t + 1 :])  # later positions do see the change


def test_a_batch_equals_its_sentences_one_by_one() -> None:
    model = make_transformer()
    src, lengths, tgt_in = batch()
    full = model(src, lengths, tgt_in)
    for i, n in enumerate(lengths.tolist()):
        m = int((tgt_in[i] != PAD_ID).sum())
        single = model(src[i : i + 1, :n], lengths[i : i + 1], tgt_in[i : i + 1, :m])
        torch.testing.assert_close(single[0], full[i, :m], rtol=1e-5, atol=1e-5)


def test_reorder_state_moves_every_cached_tensor() -> None:
    model = make_transformer()
    src, lengths, tgt_in = batch()
    state = model.reorder_state(model.encode(src, lengths), torch.tensor([0, 0, 1, 1, 2, 2]))
    assert state.rows_per_sentence == 2 and state.cross_kv[0][0].size(0) == 3  # the source once per sentence
    rows = tgt_in[[0, 0, 1, 1, 2, 2]]
    _, _, state = model.decode(rows[:, :2], state)
    # Sentence 1 is done; sentence 0 swaps its rows, sentence 2 keeps its second row twice.
    index = torch.tensor([1, 0, 5, 5])
    moved = model.reorder_state(state, index)
    for (k, v), (k0, v0) in zip(moved.self_kv, state.self_kv):
        torch.testing.assert_close(k, k0[index])
        torch.testing.assert_close(v, v0[index])
    for (k, v), (k0, v0) in zip(moved.cross_kv, state.cross_kv):
        torch.testing.assert_close(k, k0[[0, 2]])
        torch.testing.assert_close(v, v0[[0, 2]])
    torch.testing.assert_close(moved.src_mask, state.src_mask[[0, 2]])
    assert moved.steps == 2 and moved.rows_per_sentence == 2
    # Decoding on from the moved state equals decoding those rows' sentences from scratch.
    nxt, _, _ = model.decode(rows[index, 2:3], moved)
    fresh = model(src[[0, 0, 2, 2]], lengths[[0, 0, 2, 2]], rows[index, :3])
    torch.testing.assert_close(nxt[:, 0], fresh[:, 2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_beam_one_equals_greedy(seed: int) -> None:
    model = make_transformer()
    torch.manual_seed(seed)
    for p in model.generator.parameters():
        p.data.normal_(0, 2)  # spread out the distributions so sentences end at different steps
    src, lengths, _ = batch()
    greedy = greedy_search(model, src, lengths, max_len_a=2.0, max_len_b=5, return_attention=True)
    beam = beam_search(model, src, lengths, beam_size=1, alpha=0.0, max_len_a=2.0, max_len_b=5, return_attention=True)
    assert greedy.token_lists() == beam.token_lists()
    torch.testing.assert_close(greedy.log_probs, beam.log_probs)
    torch.testing.assert_close(greedy.attention, beam.attention)
    # Cross-attention weights: a distribution over the real source tokens.
    for i, n in enumerate(greedy.lengths[:, 0].tolist()):
        torch.testing.assert_close(greedy.attention[i, 0, :n].sum(-1), torch.ones(n))
        assert torch.all(greedy.attention[i, 0, :n, lengths[i] :] == 0)


def test_beam_on_a_batch_equals_beam_per_sentence() -> None:
    model = make_transformer()
    src, lengths, _ = batch()
    batched = beam_search(model, src, lengths, beam_size=3, n_best=2, max_len_a=2.0, max_len_b=4)
    for i, n in enumerate(lengths.tolist()):
        single = beam_search(model, src[i : i + 1, :n], lengths[i : i + 1], beam_size=3, n_best=2, max_len_a=2.0,
                             max_len_b=4)  # fmt: skip
        assert single.token_lists()[0] == batched.token_lists()[i]
        torch.testing.assert_close(single.scores[0], batched.scores[i], rtol=1e-5, atol=1e-5)


def test_sinusoids_follow_the_paper() -> None:
    pe = sinusoids(torch.arange(5), 8)
    for pos in range(5):
        for i in range(4):
            angle = torch.tensor(pos / 10000 ** (2 * i / 8))
            torch.testing.assert_close(pe[pos, 2 * i], torch.sin(angle))
            torch.testing.assert_close(pe[pos, 2 * i + 1], torch.cos(angle))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"hidden_size": 18}, "model.hidden_size=18 must be a multiple of model.n_heads=4"),
        ({"n_layers": 0}, "model.n_layers=0 must be >= 1"),
        ({"decoder_layers": 0}, "model.decoder_layers=0 must be >= 1"),
        ({"dropout": 1.0}, r"model.dropout=1.0 must be in \[0, 1\)"),
        ({"attention_dropout": -0.1}, r"model.attention_dropout=-0.1 must be in \[0, 1\)"),
        ({"norm": "foo"}, "model.norm='foo' is not supported; allowed values: \\['pre', 'post'\\]"),
        ({"positions": "rotary"}, "model.positions='rotary'"),
        ({"attention_layer": 2}, "model.attention_layer=2 is not a decoder layer"),
        ({"share_embeddings": True}, "model.share_embeddings=true needs one vocabulary"),
    ],
)
def test_invalid_settings_name_the_key(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_transformer(**override)


def test_learned_positions_refuse_a_longer_sequence() -> None:
    model = make_transformer(positions="learned", max_positions=4)
    src, lengths, tgt_in = batch()
    with pytest.raises(ConfigError, match="longer than model.max_positions=4"):
        model(src, lengths, tgt_in)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_every_variant_trains(variant: dict) -> None:
    """A few Adam steps on one batch lower its loss, with dropout on everywhere."""
    model = make_transformer(**{**variant, "dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.1})
    model.train()
    src, lengths, tgt_in = batch()
    target = torch.cat([tgt_in[:, 1:], torch.full((3, 1), PAD_ID)], 1)
    target[torch.arange(3), (tgt_in != PAD_ID).sum(1) - 1] = EOS_ID
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        lp = model(src, lengths, tgt_in)
        return torch.nn.functional.nll_loss(lp.reshape(-1, lp.size(-1)), target.reshape(-1), ignore_index=PAD_ID)

    first = loss()
    for _ in range(30):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < 0.5 * first.item()
