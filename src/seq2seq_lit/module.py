"""The LightningModule: masked NLL training, corpus-level perplexity, optimizers from config."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torchmetrics import MeanMetric, Metric

from seq2seq_lit.config import DecodingConfig, DecodingSettings, ObjectiveConfig
from seq2seq_lit.data.tokenizer import Tokenizer
from seq2seq_lit.data.vocab import PAD_ID
from seq2seq_lit.errors import ConfigError, DivergedError
from seq2seq_lit.metrics import CorpusPerplexity
from seq2seq_lit.models import build_model, network_class, network_keys
from seq2seq_lit.search import search
from seq2seq_lit.translator import sentence_log_probs

log = logging.getLogger(__name__)


def masked_nll(
    log_probs: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss over the non-PAD target tokens.

    Returns ``(loss_sum, nll_sum, n_tokens)``: the training loss summed over tokens (label-smoothed when
    asked), the plain NLL sum (for perplexity) and the number of non-PAD tokens.
    """
    # |log_probs| = (batch_size, tgt_len, vocab_size), |target| = (batch_size, tgt_len)
    lp = log_probs.reshape(-1, log_probs.size(-1))
    y = target.reshape(-1)
    nll_sum = F.nll_loss(lp, y, ignore_index=PAD_ID, reduction="sum")
    n_tokens = (y != PAD_ID).sum()
    if label_smoothing > 0:
        smooth = -(lp.mean(dim=-1) * (y != PAD_ID)).sum()
        return (1 - label_smoothing) * nll_sum + label_smoothing * smooth, nll_sum, n_tokens
    return nll_sum, nll_sum, n_tokens


@dataclass
class DualTerms:
    """Dual supervised learning's terms for a batch (``TranslationModule.dual_terms``)."""

    reverse_loss_sum: torch.Tensor  # the reverse network's training loss, summed over its target tokens
    reverse_nll_sum: torch.Tensor
    reverse_tokens: torch.Tensor
    gap: torch.Tensor  # mean squared gap between the two factorisations of log P(x, y)


class TranslationModule(L.LightningModule):
    """Wraps either network family (``seq2seq_lit.models``); one shared step for train/val/test.

    Every argument but the vocabulary sizes comes from ``model.*`` (defaults: ``config.RNNConfig`` or
    ``config.TransformerConfig``): ``network`` names the network's class and ``network_args`` holds its keyword
    arguments (``models.build_model`` takes them from the hyper-parameters); ``data`` is the data config, kept
    so a checkpoint records what the model was trained on.
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        label_smoothing: float,
        max_nonfinite_steps: int,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None,
        decoding: dict[str, Any],
        network: str,
        objective: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        **network_args: Any,
    ) -> None:
        unknown = sorted(set(network_args) - set(network_keys(network_class({"network": network}))))
        if unknown:
            raise ConfigError(f"model.{unknown[0]} is not a setting of model.network={network}")
        super().__init__()
        # Flat plain types (the network's keys among them), so checkpoints open with torch.load(weights_only=True).
        self.save_hyperparameters()
        self.model = build_model(self.hparams)
        # Keys get a suffix: a ModuleDict key "train" would clash with nn.Module.train.
        stages = ("train", "val", "test")
        self.ppl = torch.nn.ModuleDict({f"{stage}_": CorpusPerplexity() for stage in stages})
        self.mean_loss = torch.nn.ModuleDict({f"{stage}_": MeanMetric() for stage in stages})
        self.mean_nll = torch.nn.ModuleDict({f"{stage}_": MeanMetric() for stage in stages})
        self.decoding = DecodingSettings(**decoding)
        self.objective = ObjectiveConfig(**(objective or {}))
        self.translates = getattr(self.model, "translates", True)  # False for a language model
        self.src_tokenizer: Tokenizer | None = None
        self.tgt_tokenizer: Tokenizer | None = None
        self.reverse: torch.nn.Module | None = None  # dual learning: the network of the other direction
        self.reverse_tokenizers: tuple[Tokenizer, Tokenizer] | None = None
        self._language_models: dict[str, Any] | None = None  # dual learning: frozen, loaded when first needed
        if self.objective.name == "dsl":
            self._load_reverse(data or {})
        self._val_pairs: list[tuple[str, str]] = []  # (hypothesis, reference) of this validation
        self._test_hyps: dict[int, list[tuple[int, str]]] = {}
        self.nonfinite_steps = 0  # consecutive, reset by a good step
        self.skipped_steps = 0  # in total
        self._batch_nonfinite = False  # this batch's loss was not finite on some rank
        self._skip_update = False  # some batch of the current optimizer step (accumulation) was not finite

    def _load_reverse(self, data: dict[str, Any]) -> None:
        """Dual learning: the other direction's network, weights and tokenizers from
        ``model.objective.reverse_from``; its hyper-parameters are recorded as ``reverse`` so the checkpoint
        rebuilds it (``checkpoint.load_checkpoint(direction="tgt2src")``)."""
        from seq2seq_lit.checkpoint import load_checkpoint

        key = "model.objective.reverse_from"
        reverse = load_checkpoint(self.objective.reverse_from, direction="src2tgt", key=key)  # type: ignore[arg-type]
        theirs = reverse.data
        for mine, other in (("src_lang", "tgt_lang"), ("tgt_lang", "src_lang")):
            if data.get(mine) and theirs.get(other) and data[mine] != theirs[other]:
                raise ConfigError(
                    f"{key}={self.objective.reverse_from} translates {theirs.get('src_lang')} -> "
                    f"{theirs.get('tgt_lang')}; this run's reverse direction is {data.get('tgt_lang')} -> "
                    f"{data.get('src_lang')} (data.src_lang, data.tgt_lang)"
                )
        keep = ("network", "src_vocab_size", "tgt_vocab_size", "data", *network_keys(network_class(reverse.hparams)))
        self.hparams["reverse"] = {k: reverse.hparams[k] for k in keep if k in reverse.hparams}
        self.reverse = reverse.model.train()  # load_checkpoint gives it in eval mode, for translating
        self.reverse_tokenizers = (reverse.src_tokenizer, reverse.tgt_tokenizer)
        self.reverse_ppl = torch.nn.ModuleDict({f"{stage}_": CorpusPerplexity() for stage in ("train", "val", "test")})

    def set_tokenizers(self, src: Tokenizer, tgt: Tokenizer) -> None:
        """Attach the tokenizers; they are embedded in every checkpoint so it can translate alone."""
        self.src_tokenizer, self.tgt_tokenizer = src, tgt

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.model(src, src_lengths, tgt_in)

    def shared_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        """The loss to optimise (label-smoothed if asked); logs ``{stage}/loss``, ``{stage}/nll``, ``{stage}/ppl``.

        A training loss that is not finite on some rank is returned without updating any metric.
        """
        tgt = batch["tgt"]
        # Teacher forcing: input [BOS] y1 .. yn, predict y1 .. yn [EOS].
        log_probs = self(batch["src"], batch["src_lengths"], tgt[:, :-1])
        loss_sum, nll_sum, n_tokens = masked_nll(log_probs, tgt[:, 1:], self.hparams.label_smoothing)
        loss = loss_sum / n_tokens
        if self.reverse is not None:
            reverse_loss, gap = self.dual_learning(batch, log_probs, stage)
            loss = loss + reverse_loss
            if stage == "train" and self.global_step >= self.objective.dual_warmup_steps:
                loss = loss + self.objective.dual_weight * gap
        if stage == "train" and self.objective.name == "mrt":
            risk, metric = self.minimum_risk(batch)
            loss = self.objective.mle_weight * loss + (1 - self.objective.mle_weight) * risk
            self.log("train/risk", risk, on_step=True, on_epoch=True, batch_size=tgt.size(0))
            self.log(f"train/candidate_{self.objective.metric}", metric, on_step=True, on_epoch=True,
                     batch_size=tgt.size(0))  # fmt: skip
        if stage == "train":
            self._batch_nonfinite = not self._finite_on_every_rank(loss)
            self._skip_update |= self._batch_nonfinite
            if self._batch_nonfinite:
                return loss  # keeps NaN out of the metrics; training_step counts it
        on_step = stage == "train"
        ppl: Metric = self.ppl[f"{stage}_"]  # type: ignore[assignment]  # ModuleDict items are typed as Module
        mean_loss: Metric = self.mean_loss[f"{stage}_"]  # type: ignore[assignment]
        mean_nll: Metric = self.mean_nll[f"{stage}_"]  # type: ignore[assignment]
        ppl(nll_sum, n_tokens)
        mean_loss(loss, n_tokens)
        mean_nll(nll_sum / n_tokens, n_tokens)
        batch_size = tgt.size(0)
        self.log(f"{stage}/loss", mean_loss, on_step=on_step, on_epoch=True, batch_size=batch_size)
        self.log(f"{stage}/nll", mean_nll, on_step=on_step, on_epoch=True, batch_size=batch_size)
        self.log(f"{stage}/ppl", ppl, on_step=on_step, on_epoch=True, batch_size=batch_size)
        return loss

    def minimum_risk(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Minimum risk training's loss for a batch (``seq2seq_lit.objectives``) and the candidates' mean metric.

        The candidates of the whole batch are decoded together (sampled or beam-searched, dropout off), scored
        against the references with sacreBLEU, and their log-probabilities computed in one teacher-forced pass
        over ``batch x samples`` rows, each source encoded once.
        """
        from seq2seq_lit import search
        from seq2seq_lit.objectives import candidate_scores, candidates, expected_risk, sentence_metric

        if self.tgt_tokenizer is None:
            raise ConfigError("model.objective.name=mrt scores detokenized candidates: the module needs tokenizers")
        o, d = self.objective, self.decoding
        src, src_lengths, tgt = batch["src"], batch["src_lengths"], batch["tgt"]
        k = o.samples
        training = self.model.training
        self.model.eval()
        a, b = d.max_len_a, d.max_len_b
        found: torch.Tensor | None = None
        if o.candidates == "beam":
            best = search.beam_search(
                self.model, src, src_lengths, beam_size=k, n_best=k, alpha=d.alpha, max_len_a=a, max_len_b=b
            )
            outputs, found = best.tokens.flatten(0, 1), best.log_probs.isfinite()
        else:
            outputs, _ = search.sample(self.model, src, src_lengths, n=k, max_len_a=a, max_len_b=b)
        self.model.train(training)
        cands = candidates(outputs, k, tgt if o.include_reference else None, found)

        hyps = self.tgt_tokenizer.decode(token_lists(cands.tgt[:, 1:]))
        refs = self.tgt_tokenizer.decode(token_lists(tgt[:, 1:]))
        score = sentence_metric(o.metric)
        metric = torch.tensor([score(h, refs[i // k]) for i, h in enumerate(hyps)], device=src.device).view(-1, k)
        # |metric| = (batch_size, k)
        # A sentence's k candidates share one encoder pass (and one dropout draw), as a beam's rows do.
        log_probs, _, _ = self.model.decode(cands.tgt[:, :-1], search.encode_rows(self.model, src, src_lengths, k))
        seq_lp = candidate_scores(log_probs.float(), cands.tgt[:, 1:], o.length_normalize)
        risk = expected_risk(seq_lp.view(-1, k), 1 - metric / 100, o.alpha, cands.valid).mean()
        valid = cands.valid.float()
        return risk, (metric * valid).sum() / valid.sum()

    def dual_learning(
        self, batch: dict[str, torch.Tensor], log_probs: torch.Tensor, stage: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Dual supervised learning's part of the loss (``dual_terms``): the reverse network's loss and the mean
        squared gap; logs ``{stage}/reverse_ppl`` and ``{stage}/dual_gap``."""
        terms = self.dual_terms(batch, log_probs)
        ppl: Metric = self.reverse_ppl[f"{stage}_"]  # type: ignore[assignment]
        ppl(terms.reverse_nll_sum, terms.reverse_tokens)
        on_step, batch_size = stage == "train", batch["src"].size(0)
        self.log(f"{stage}/reverse_ppl", ppl, on_step=on_step, on_epoch=True, batch_size=batch_size)
        self.log(f"{stage}/dual_gap", terms.gap, on_step=on_step, on_epoch=True, batch_size=batch_size)
        return terms.reverse_loss_sum / terms.reverse_tokens, terms.gap

    def dual_terms(self, batch: dict[str, torch.Tensor], log_probs: torch.Tensor) -> DualTerms:
        """The reverse network's loss on the batch's pairs swapped and the mean over pairs of
        ``((log P(x) + log P(y|x)) - (log P(y) + log P(x|y))) ** 2`` (``objectives.dual_gap``), ``log_probs``
        being this network's teacher-forced output for the batch.

        The pairs go through text: the reverse network and the language models each read them with their own
        tokenizers, so any two checkpoints of opposite directions work together. The language models are frozen
        and scored without gradients.
        """
        from seq2seq_lit.objectives import dual_gap
        from seq2seq_lit.translator import lm_log_probs, parallel_batch

        assert self.reverse is not None and self.reverse_tokenizers is not None
        if self.src_tokenizer is None or self.tgt_tokenizer is None:
            raise ConfigError("model.objective.name=dsl reads the pairs as text: the module needs tokenizers")
        src, tgt = batch["src"], batch["tgt"]
        x_text = self.src_tokenizer.decode(token_lists(src))
        y_text = self.tgt_tokenizer.decode(token_lists(tgt[:, 1:]))
        rev = parallel_batch(y_text, x_text, *self.reverse_tokenizers, device=src.device)
        # rev["ids"][i] is the batch row whose pair is the reverse batch's row i.
        rev_log_probs = self.reverse(rev["src"], rev["src_lengths"], rev["tgt"][:, :-1])
        loss_sum, nll_sum, n_tokens = masked_nll(rev_log_probs, rev["tgt"][:, 1:], self.hparams.label_smoothing)
        lp_y_given_x = sentence_log_probs(log_probs.float(), tgt[:, 1:])
        lp_x_given_y = torch.empty_like(lp_y_given_x).index_copy(
            0, rev["ids"], sentence_log_probs(rev_log_probs.float(), rev["tgt"][:, 1:])
        )
        lms = self.language_models()
        with torch.no_grad():
            lp_x = lm_log_probs(lms["src"].model, lms["src"].tgt_tokenizer, x_text, device=src.device)
            lp_y = lm_log_probs(lms["tgt"].model, lms["tgt"].tgt_tokenizer, y_text, device=src.device)
        gap = dual_gap(lp_x, lp_y_given_x, lp_y, lp_x_given_y).mean()
        return DualTerms(loss_sum, nll_sum, n_tokens, gap)

    def language_models(self) -> dict[str, Any]:
        """Dual learning's two frozen language models (``checkpoint.Checkpoint``s), loaded on first use: they
        are not part of this module, so they are neither trained nor saved in its checkpoints."""
        if self._language_models is None:
            from seq2seq_lit.checkpoint import load_checkpoint

            self._language_models = {}
            data = self.hparams.get("data") or {}
            for side in ("src", "tgt"):
                key = f"model.objective.{side}_lm"
                lm = load_checkpoint(getattr(self.objective, f"{side}_lm"), str(self.device), key=key)
                if getattr(lm.model, "translates", True):
                    raise ConfigError(f"{key}={getattr(self.objective, f'{side}_lm')} is not a language model "
                                      "(train one with experiment=lm_de|lm_en)")  # fmt: skip
                lang, lm_lang = data.get(f"{side}_lang"), lm.data.get("tgt_lang")
                if lang and lm_lang and lang != lm_lang:
                    raise ConfigError(f"{key}: a language model of {lm_lang}; this run's data.{side}_lang={lang}")
                lm.model.requires_grad_(False)
                self._language_models[side] = lm
        return self._language_models

    def _finite_on_every_rank(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on all ranks: every rank must skip the same steps, or DDP's gradient
        all-reduce would wait for a rank that skipped backward."""
        finite = torch.isfinite(loss.detach()).float()
        return bool(self.trainer.strategy.reduce(finite, reduce_op="min") > 0)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.shared_step(batch, "train")
        if not self._batch_nonfinite:
            self.nonfinite_steps = 0
            return loss
        # Every rank still runs backward (returning None is not supported under DDP); the update is dropped in
        # on_before_optimizer_step, so the weights and the optimizer's moments stay as they were.
        self.nonfinite_steps += 1
        self.skipped_steps += 1
        self.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)
        log.warning("non-finite loss at step %d: step skipped (%d in a row)", self.global_step, self.nonfinite_steps)
        if self.nonfinite_steps >= self.hparams.max_nonfinite_steps:
            raise DivergedError(
                f"{self.nonfinite_steps} consecutive non-finite losses, the last at step {self.global_step} "
                f"(model.max_nonfinite_steps={self.hparams.max_nonfinite_steps}); training stopped. Checkpoints "
                "written before are intact; try a lower learning rate or gradient_clip_val."
            )
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._skip_update:
            # Without gradients the optimizer leaves every parameter and its state alone.
            optimizer.zero_grad(set_to_none=True)
        self._skip_update = False

    def on_train_batch_start(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Log ``train/tok_s``: target tokens per second of this optimisation step."""
        n_tokens = int((batch["tgt"][:, 1:] != PAD_ID).sum())
        self.log("train/tok_s", n_tokens / (time.perf_counter() - self._step_start), on_step=True, on_epoch=False)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.shared_step(batch, "val")
        if self.decoding.val_bleu and self.translates and self.tgt_tokenizer is not None:
            refs = self.trainer.datamodule.references("val", batch["ids"].tolist())
            self._val_pairs += zip(self.decode(batch, self.decoding.val_beam_size), refs)

    def on_fit_start(self) -> None:
        self._fit_start = time.monotonic()

    def on_validation_epoch_end(self) -> None:
        """``val/bleu``: sacreBLEU over the whole validation set (all ranks' sentences), scored exactly as the
        test stage and ``evaluate`` score (``scoring.score_corpus``); ``val/minutes``: wall-clock minutes since
        this process started fitting, so quality can be read against time."""
        from seq2seq_lit.scoring import score_corpus

        if hasattr(self, "_fit_start") and not self.trainer.sanity_checking:
            self.log("val/minutes", (time.monotonic() - self._fit_start) / 60)

        if self.decoding.val_bleu and self.translates and self.tgt_tokenizer is not None:
            pairs, self._val_pairs = _gather(self._val_pairs), []
            hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
            self.log("val/bleu", score_corpus(hyps, refs)["bleu"] if pairs else 0.0)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self.shared_step(batch, "test")
        if self.translates and self.tgt_tokenizer is not None:
            hyps = self.decode(batch, self.decoding.test_beam_size)
            self._test_hyps.setdefault(dataloader_idx, []).extend(zip(batch["ids"].tolist(), hyps))

    def on_test_epoch_end(self) -> None:
        """Score each test set with sacreBLEU; write hypotheses and a JSON report into the run directory.

        ``<split>.hyp`` has one line per line of the split's source file: a pair dropped as empty gets an empty
        line, so line N always answers line N. The scores cover the pairs kept.
        """
        from seq2seq_lit.scoring import score_corpus, write_report

        datamodule = self.trainer.datamodule
        for idx, pairs in sorted(self._test_hyps.items()):
            by_id = dict(_gather(pairs))
            name = datamodule.test_names[idx]
            ids = sorted(by_id)
            hyps = [by_id[i] for i in ids]
            scores = score_corpus(hyps, datamodule.references(name, ids))
            if self.trainer.is_global_zero:
                lines, n_lines = datamodule.file_lines(name, ids)
                aligned = [""] * n_lines
                for line, hyp in zip(lines, hyps):
                    aligned[line] = hyp
                write_report(Path(self.trainer.default_root_dir) / "test", name, aligned, scores)
            prefix = "test" if idx == 0 else f"test/{name}"
            self.log(f"{prefix}/bleu", scores["bleu"], rank_zero_only=True)
            self.log(f"{prefix}/chrf", scores["chrf"], rank_zero_only=True)
        self._test_hyps.clear()

    def decode(self, batch: dict[str, torch.Tensor], beam_size: int) -> list[str]:
        """Detokenized best hypotheses for a collated batch, in batch order."""
        d = self.decoding
        cfg = DecodingConfig(beam_size=beam_size, alpha=d.alpha, max_len_a=d.max_len_a, max_len_b=d.max_len_b)
        found = search(self.model, batch["src"], batch["src_lengths"], cfg)
        return self.tgt_tokenizer.decode([hyps[0] for hyps in found.token_lists()])

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        sched_cfg = self.hparams.scheduler
        if not sched_cfg:
            return optimizer
        sched_cfg = dict(sched_cfg)
        if "_target_" not in (sched_cfg.get("scheduler") or {}):
            from importlib.resources import files

            group = files("seq2seq_lit.conf") / "model" / "scheduler"
            shipped = sorted(p.name.removesuffix(".yaml") for p in group.iterdir() if p.name.endswith(".yaml"))
            raise ConfigError(
                f"model.scheduler={sched_cfg} names no scheduler (model.scheduler.scheduler._target_); "
                f"choose one with model/scheduler={'|'.join(shipped)}, or remove it with ~model/scheduler"
            )
        scheduler_cfg = dict(sched_cfg.pop("scheduler"))
        if "total_steps" in scheduler_cfg and scheduler_cfg["total_steps"] is None:
            # BudgetCosineLR: the run's length in optimizer steps is known only once the trainer has the data.
            if self._trainer is None:
                raise ConfigError("model.scheduler.scheduler.total_steps=null needs a Trainer; set it to a number")
            scheduler_cfg["total_steps"] = self.trainer.estimated_stepping_batches
        scheduler = instantiate(scheduler_cfg)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "name": "lr", **sched_cfg}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.src_tokenizer is not None and self.tgt_tokenizer is not None:
            checkpoint["tokenizers"] = {"src": self.src_tokenizer.as_tensor(), "tgt": self.tgt_tokenizer.as_tensor()}
            if self.reverse_tokenizers is not None:
                rev_src, rev_tgt = self.reverse_tokenizers
                checkpoint["tokenizers"] |= {"reverse_src": rev_src.as_tensor(), "reverse_tgt": rev_tgt.as_tensor()}
        checkpoint["nonfinite"] = {"skipped_steps": self.skipped_steps, "consecutive": self.nonfinite_steps}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "tokenizers" in checkpoint:
            from seq2seq_lit.checkpoint import checkpoint_tokenizers

            self.set_tokenizers(*checkpoint_tokenizers(checkpoint))
        nonfinite = checkpoint.get("nonfinite", {})
        self.skipped_steps = nonfinite.get("skipped_steps", 0)
        self.nonfinite_steps = nonfinite.get("consecutive", 0)


def token_lists(rows: torch.Tensor) -> list[list[int]]:
    """Rows of ``y [EOS] PAD...`` (a source, or a target without its BOS) as lists of the ids of ``y``."""
    return [[t for t in row.tolist() if t != PAD_ID][:-1] for row in rows]


def _gather(items: list) -> list:
    """All ranks' items under distributed training; the items themselves otherwise."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return items
    gathered: list[list] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, items)
    return [item for part in gathered for item in part]
