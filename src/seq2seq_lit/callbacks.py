"""Lightning callbacks of this project."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from seq2seq_lit.config import DecodingConfig

if TYPE_CHECKING:
    from seq2seq_lit.module import TranslationModule


class AttentionPlots(L.Callback):
    """After each validation, heatmaps of the greedy translations' attention for the first ``n_sentences``
    validation sentences: PNG files in ``<run>/attention/`` and, when W&B logs, images ``val/attention_<i>``."""

    def __init__(self, n_sentences: int = 2) -> None:
        self.n_sentences = n_sentences

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: TranslationModule) -> None:  # type: ignore[override]
        src_tok, tgt_tok = pl_module.src_tokenizer, pl_module.tgt_tokenizer
        if trainer.sanity_checking or not trainer.is_global_zero or src_tok is None or tgt_tok is None:
            return
        if not pl_module.model.has_attention:
            return  # model.attention=false: nothing to plot
        import matplotlib.pyplot as plt

        from seq2seq_lit.plots import attention_figure
        from seq2seq_lit.translator import Translator

        datamodule = trainer.datamodule
        n = min(self.n_sentences, len(datamodule.datasets["val"]))
        sentences = datamodule.sources("val", list(range(n)))
        found = Translator(pl_module.model, src_tok, tgt_tok).translate(
            sentences, DecodingConfig(beam_size=1), attention=True
        )
        out_dir = Path(trainer.default_root_dir) / "attention"
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, (sentence, (hyp,)) in enumerate(zip(sentences, found)):
            assert hyp.attention is not None
            src = src_tok.pieces(sentence)[: hyp.attention.size(1) - 1] + ["</s>"]
            tgt = tgt_tok.id_to_piece(hyp.tokens) + ["</s>"]
            fig = attention_figure(hyp.attention, src, tgt, title=f"step {trainer.global_step}")
            paths.append(out_dir / f"val{i}_step{trainer.global_step:07d}.png")
            fig.savefig(paths[-1], dpi=80)
            plt.close(fig)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                # One key per sentence: W&B warns when the images of one key differ in size.
                for i, path in enumerate(paths):
                    logger.log_image(key=f"val/attention_{i}", images=[str(path)], step=trainer.global_step)
