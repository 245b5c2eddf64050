"""Score text with a language model: ``python -m seq2seq_lit.score_lm ckpt_path=LM.ckpt < text``.

Prints ``log P(line)`` (natural log, end of sentence included) for each line of stdin, one per line: the
marginals that dual supervised learning uses (``model/objective=dsl``).
"""

from __future__ import annotations

import logging
import sys

import hydra
import torch
from omegaconf import DictConfig

from seq2seq_lit.config import register_configs, require
from seq2seq_lit.errors import ConfigError, exit_on_user_error

register_configs()


def run(cfg: DictConfig, stdin, stdout) -> None:
    from seq2seq_lit.checkpoint import load_checkpoint
    from seq2seq_lit.translate import read_chunks
    from seq2seq_lit.translator import lm_log_probs

    require(cfg, "ckpt_path", "the language model to score with (experiment=lm_de|lm_en), e.g. ckpt_path=LM.ckpt")
    lm = load_checkpoint(cfg.ckpt_path, cfg.device)
    if getattr(lm.model, "translates", True):
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path} is a translation model, not a language model; score pairs with "
            "python -m seq2seq_lit.translate score=true"
        )
    with torch.no_grad():
        for _, lines in read_chunks(stdin, cfg.chunk_lines):
            scores = lm_log_probs(lm.model, lm.tgt_tokenizer, lines, cfg.device, cfg.max_tokens)
            stdout.write("".join(f"{s:.4f}\n" for s in scores.tolist()))
            stdout.flush()


@hydra.main(version_base="1.3", config_path="conf", config_name="score_lm")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="[%(levelname)s] %(message)s")
    exit_on_user_error(lambda: run(cfg, sys.stdin.buffer, sys.stdout))


if __name__ == "__main__":
    main()
