import pytest
import torch
from conftest import make_seq2seq

from seq2seq_lit.data.vocab import BOS_ID, PAD_ID
from seq2seq_lit.models.rnn.decoder import reorder_state


def toy_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    src = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, PAD_ID, PAD_ID]])
    tgt_in = torch.tensor([[BOS_ID, 4, 5, 6], [BOS_ID, 7, PAD_ID, PAD_ID]])
    return src, torch.tensor([5, 3]), tgt_in


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
@pytest.mark.parametrize("attention", [True, False])
def test_forward_shapes(rnn: str, attention: bool) -> None:
    model = make_seq2seq(15, 13, word_vec_size=8, hidden_size=10, n_layers=2, dropout=0.1, rnn=rnn, attention=attention)
    src, lengths, tgt_in = toy_batch()
    log_probs = model(src, lengths, tgt_in)
    assert log_probs.shape == (2, 4, 13)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 4))


@pytest.mark.parametrize("attention", [True, False])
def test_step_by_step_equals_teacher_forcing(attention: bool) -> None:
    model = make_seq2seq(15, 13, word_vec_size=8, hidden_size=10, n_layers=2, dropout=0.0, attention=attention).eval()
    src, lengths, tgt_in = toy_batch()
    full = model(src, lengths, tgt_in)
    state = model.encode(src, lengths)
    steps = []
    for t in range(tgt_in.size(1)):
        lp, _, state = model.decode(tgt_in[:, t : t + 1], state)
        steps.append(lp)
    torch.testing.assert_close(torch.cat(steps, 1), full)


def test_decoder_starts_from_merged_encoder_state() -> None:
    model = make_seq2seq(15, 13, word_vec_size=8, hidden_size=10, n_layers=2, dropout=0.0, rnn="gru").eval()
    src, lengths, _ = toy_batch()
    _, enc_h = model.encoder(src, lengths)
    h0, feed = model.encode(src, lengths).decoder
    torch.testing.assert_close(h0[1], torch.cat([enc_h[2], enc_h[3]], dim=-1))
    assert torch.all(feed == 0)


def test_reorder_state_selects_batch_rows() -> None:
    model = make_seq2seq(15, 13, word_vec_size=8, hidden_size=10, n_layers=2, dropout=0.0).eval()
    src, lengths, _ = toy_batch()
    state = model.encode(src, lengths).decoder
    (h, c), feed = reorder_state(state, torch.tensor([1, 1, 0]))
    torch.testing.assert_close(h[:, 2], state[0][0][:, 0])
    torch.testing.assert_close(c[:, 0], state[0][1][:, 1])
    assert feed.shape == (3, 1, 10)


def test_reorder_state_keeps_the_source_once_per_sentence() -> None:
    model = make_seq2seq(15, 13, word_vec_size=8, hidden_size=10, n_layers=2, dropout=0.0).eval()
    src, lengths, tgt_in = toy_batch()
    state = model.encode(src, lengths)
    beams = model.reorder_state(state, torch.tensor([0, 0, 0, 1, 1, 1]))  # three rows per sentence
    assert beams.memory is state.memory and beams.rows_per_sentence == 3
    lp, _, beams = model.decode(tgt_in[[0, 0, 0, 1, 1, 1], :1], beams)
    single, _, _ = model.decode(tgt_in[:, :1], state)
    torch.testing.assert_close(lp, single[[0, 0, 0, 1, 1, 1]])
    second = model.reorder_state(beams, torch.tensor([5, 3, 4]))  # sentence 0 is done; 1 keeps three rows
    torch.testing.assert_close(second.memory.h_src, state.memory.h_src[1:])
    torch.testing.assert_close(second.decoder[0][0], beams.decoder[0][0][:, [5, 3, 4]])
    assert second.rows_per_sentence == 3


def test_tied_embeddings_share_one_tensor() -> None:
    model = make_seq2seq(15, 13, word_vec_size=10, hidden_size=10, n_layers=1, dropout=0.0, tie_embeddings=True)
    assert model.generator.output.weight is model.decoder.embedding.weight
    assert model.generator.proj is None


def test_tied_embeddings_narrower_than_the_hidden_state_go_through_a_projection() -> None:
    torch.manual_seed(0)
    model = make_seq2seq(15, 13, word_vec_size=6, hidden_size=10, n_layers=1, dropout=0.0, tie_embeddings=True)
    generator = model.generator
    assert generator.output.weight is model.decoder.embedding.weight
    assert generator.proj.weight.shape == (6, 10)
    h = torch.randn(2, 3, 10)
    expected = torch.log_softmax(
        h @ generator.proj.weight.T @ model.decoder.embedding.weight.T + generator.output.bias, -1
    )
    torch.testing.assert_close(generator(h), expected)
    untied = make_seq2seq(15, 13, word_vec_size=6, hidden_size=10, n_layers=1, dropout=0.0)
    tied_params, untied_params = (sum(p.numel() for p in m.parameters()) for m in (model, untied))
    assert untied_params - tied_params == 13 * 10 - 6 * 10  # the untied output matrix against the projection


def test_shared_embeddings_are_one_matrix_for_both_languages() -> None:
    model = make_seq2seq(
        15, 15, word_vec_size=6, hidden_size=10, n_layers=1, tie_embeddings=True, share_embeddings=True
    )
    assert model.encoder.embedding.weight is model.decoder.embedding.weight is model.generator.output.weight
    src, lengths, tgt_in = toy_batch()
    model(src, lengths, tgt_in).sum().backward()
    assert model.encoder.embedding.weight.grad[src[0]].abs().sum(-1).gt(0).all()  # source words train it too
    with pytest.raises(ValueError, match=r"share_embeddings=true needs one vocabulary .*15 source and 13 target"):
        make_seq2seq(15, 13, word_vec_size=6, hidden_size=10, n_layers=1, share_embeddings=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 11}, "model.hidden_size=11 must be an even"),
        ({"n_layers": 0}, "model.n_layers=0 must be >= 1"),
        ({"dropout": 1.0}, r"model.dropout=1.0 must be in \[0, 1\)"),
        ({"dropout": -0.1}, r"model.dropout=-0.1 must be in \[0, 1\)"),
        ({"rnn": "rnn_tanh"}, "model.rnn='rnn_tanh' is not supported; allowed values: \\['gru', 'lstm'\\]"),
    ],
)
def test_bad_settings_fail_with_the_key(kwargs: dict, message: str) -> None:
    args = {"word_vec_size": 8, "hidden_size": 10, "n_layers": 1, "dropout": 0.0} | kwargs
    with pytest.raises(ValueError, match=message):
        make_seq2seq(15, 13, **args)


def test_dropout_acts_on_a_one_layer_model_in_training_only() -> None:
    """Embeddings and attentional vectors get dropout, so it regularises even without layers in between."""
    torch.manual_seed(0)
    src, lengths, tgt_in = torch.tensor([[5, 6, 7, 3]]), torch.tensor([4]), torch.tensor([[2, 4, 5]])
    for dropout, changes in ((0.5, True), (0.0, False)):
        model = make_seq2seq(15, 13, word_vec_size=8, hidden_size=10, n_layers=1, dropout=dropout)
        train_out = model.train()(src, lengths, tgt_in)
        eval_out = model.eval()(src, lengths, tgt_in)
        assert (not torch.allclose(train_out, eval_out)) is changes
        torch.testing.assert_close(model(src, lengths, tgt_in), eval_out)  # eval is deterministic


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_decoder_cells_equal_the_rnn_module(rnn: str) -> None:
    """The explicit per-step cells compute exactly what nn.LSTM/nn.GRU does on a length-1 sequence."""
    from seq2seq_lit.models.rnn.decoder import Decoder, stack_state, unstack_state

    torch.manual_seed(0)
    decoder = Decoder(13, 8, 10, n_layers=3, dropout=0.0, rnn=rnn).eval()
    x = torch.randn(4, 18)  # word_vec_size + hidden_size
    state = tuple(torch.randn(3, 4, 10) for _ in range(2)) if rnn == "lstm" else torch.randn(3, 4, 10)
    want_out, want_state = decoder.rnn(x.unsqueeze(1), state)
    got_out, layers = decoder.rnn_step(x, unstack_state(state))
    torch.testing.assert_close(got_out, want_out.squeeze(1))
    for got, want in zip(
        torch.utils._pytree.tree_leaves(stack_state(layers)), torch.utils._pytree.tree_leaves(want_state)
    ):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("rnn", ["lstm", "gru"])
def test_decoder_cells_follow_weight_updates_while_decoding(rnn: str) -> None:
    """With gradients off the fused cell weights are reused across steps, but never after a weight changed."""
    from seq2seq_lit.models.rnn.decoder import Decoder, unstack_state

    torch.manual_seed(0)
    decoder = Decoder(13, 8, 10, n_layers=2, dropout=0.0, rnn=rnn).eval()
    x = torch.randn(4, 18)
    state = tuple(torch.randn(2, 4, 10) for _ in range(2)) if rnn == "lstm" else torch.randn(2, 4, 10)
    with torch.no_grad():
        for _ in range(2):
            want, _ = decoder.rnn(x.unsqueeze(1), state)
            got, _ = decoder.rnn_step(x, unstack_state(state))
            torch.testing.assert_close(got, want.squeeze(1))
            assert decoder.cells() is decoder.cells()  # reused while nothing changes
            decoder.rnn.weight_hh_l1.mul_(0.5)  # in place, as an optimizer step or load_state_dict
            decoder.rnn.bias_ih_l0.add_(1.0)
