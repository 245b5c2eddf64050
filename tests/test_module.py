import math

import pytest
import torch
from conftest import make_module

from seq2seq_lit.data.vocab import PAD_ID
from seq2seq_lit.metrics import CorpusPerplexity
from seq2seq_lit.module import masked_nll


def test_masked_nll_equals_hand_computed_value() -> None:
    # Two sentences, vocabulary of 4; the second has a PAD at its last position.
    probs = torch.tensor(
        [
            [[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]],
            [[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]],
        ]
    )
    target = torch.tensor([[3, 1], [2, PAD_ID]])
    loss_sum, nll_sum, n_tokens = masked_nll(probs.log(), target)
    expected = -(math.log(0.4) + math.log(0.25) + math.log(0.1))
    assert n_tokens.item() == 3
    assert nll_sum.item() == pytest.approx(expected, rel=1e-6)
    assert loss_sum.item() == pytest.approx(expected, rel=1e-6)
    # PAD's own probability (0.7 at index 0 of the padded row) never counts.
    probs2 = probs.clone()
    probs2[1, 1] = torch.tensor([0.01, 0.01, 0.01, 0.97])
    assert masked_nll(probs2.log(), target)[1].item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_mixes_in_uniform_cross_entropy() -> None:
    probs = torch.tensor([[[0.1, 0.2, 0.3, 0.4]]])
    target = torch.tensor([[3]])
    loss_sum, nll_sum, _ = masked_nll(probs.log(), target, label_smoothing=0.1)
    uniform = -sum(math.log(p) for p in (0.1, 0.2, 0.3, 0.4)) / 4
    assert loss_sum.item() == pytest.approx(0.9 * -math.log(0.4) + 0.1 * uniform, rel=1e-6)
    assert nll_sum.item() == pytest.approx(-math.log(0.4), rel=1e-6)


def test_perplexity_is_corpus_level_not_mean_of_batches() -> None:
    metric = CorpusPerplexity()
    metric.update(torch.tensor(10.0), torch.tensor(5))  # batch ppl e^2
    metric.update(torch.tensor(3.0), torch.tensor(1))  # batch ppl e^3, one token
    corpus = math.exp(13.0 / 6)
    assert metric.compute().item() == pytest.approx(corpus, rel=1e-6)
    assert metric.compute().item() != pytest.approx((math.exp(2) + math.exp(3)) / 2, rel=1e-3)


def test_module_step_logs_loss_and_ppl_from_one_shared_step() -> None:
    module = make_module(15, 13, word_vec_size=8, hidden_size=10, n_layers=1)
    module.eval()  # as Lightning runs validation: no dropout
    batch = {
        "src": torch.tensor([[5, 6, 3], [7, 3, PAD_ID]]),
        "src_lengths": torch.tensor([3, 2]),
        "tgt": torch.tensor([[2, 4, 5, 3], [2, 6, 3, PAD_ID]]),
    }
    log_probs = module(batch["src"], batch["src_lengths"], batch["tgt"][:, :-1])
    _, nll_sum, n = masked_nll(log_probs, batch["tgt"][:, 1:])
    module.shared_step(batch, "val")
    assert module.ppl["val_"].compute().item() == pytest.approx(math.exp(nll_sum.item() / n.item()), rel=1e-5)
    assert isinstance(module.hparams.optimizer, dict) and isinstance(module.hparams.src_vocab_size, int)


def test_loss_is_what_is_optimised_and_nll_what_perplexity_is_computed_from() -> None:
    module = make_module(15, 13, word_vec_size=8, hidden_size=10, n_layers=1, label_smoothing=0.1).eval()
    batch = {
        "src": torch.tensor([[5, 6, 3], [7, 3, PAD_ID]]),
        "src_lengths": torch.tensor([3, 2]),
        "tgt": torch.tensor([[2, 4, 5, 3], [2, 6, 3, PAD_ID]]),
    }
    log_probs = module(batch["src"], batch["src_lengths"], batch["tgt"][:, :-1])
    gold = batch["tgt"][:, 1:]
    mask = gold != PAD_ID
    nll = -(log_probs.gather(-1, gold.unsqueeze(-1)).squeeze(-1) * mask).sum() / mask.sum()
    uniform = -(log_probs.mean(-1) * mask).sum() / mask.sum()  # cross-entropy with the uniform distribution
    smoothed = 0.9 * nll + 0.1 * uniform
    loss = module.shared_step(batch, "val")
    torch.testing.assert_close(loss, smoothed)
    assert module.mean_loss["val_"].compute().item() == pytest.approx(smoothed.item(), rel=1e-5)
    assert module.mean_nll["val_"].compute().item() == pytest.approx(nll.item(), rel=1e-5)
    assert module.ppl["val_"].compute().item() == pytest.approx(math.exp(nll.item()), rel=1e-5)
    assert abs(smoothed.item() - nll.item()) > 1e-4  # far enough apart for the checks above to tell them apart
