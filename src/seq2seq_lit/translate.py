"""Translate stdin to stdout with a checkpoint: ``python -m seq2seq_lit.translate ckpt_path=PATH < src``."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import cast

import hydra
from omegaconf import DictConfig, OmegaConf

from seq2seq_lit.config import TranslateConfig, register_configs, require
from seq2seq_lit.errors import DataError, exit_on_user_error

log = logging.getLogger("seq2seq_lit.translate")
register_configs()


def read_chunks(stream, size: int) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(first line number, lines)`` of up to ``size`` lines; non-UTF-8 input names its line."""
    chunk, first = [], 1
    for number, raw in enumerate(iter(stream.readline, b""), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"stdin:{number}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
        chunk.append((line.removeprefix("\ufeff") if number == 1 else line).rstrip("\r\n"))
        if len(chunk) >= size:
            yield first, chunk
            chunk, first = [], number + 1
    if chunk:
        yield first, chunk


def run(cfg: DictConfig, stdin, stdout) -> None:
    from seq2seq_lit.translator import Translator

    require(
        cfg, "ckpt_path", "the checkpoint to translate with, e.g. ckpt_path=logs/train/runs/RUN/checkpoints/last.ckpt"
    )
    decoding = cast(TranslateConfig, OmegaConf.to_object(cfg))  # a TranslateConfig, which is a DecodingConfig
    decoding.check()
    translator = Translator.from_checkpoint(cfg.ckpt_path, cfg.device, cfg.direction)
    interactive = cfg.interactive if cfg.interactive is not None else stdin.isatty()
    for first, lines in read_chunks(stdin, 1 if interactive else cfg.chunk_lines):
        if cfg.score:
            pairs = []
            for number, line in enumerate(lines, start=first):
                if "\t" not in line:
                    raise DataError(f"stdin:{number}: score mode needs 'source<TAB>target' lines")
                pairs.append(line.split("\t", 1))
            scores = translator.score([s for s, _ in pairs], [t for _, t in pairs], cfg.max_tokens, first)
            stdout.write("".join(f"{s:.4f}\n" for s in scores))
        else:
            results = translator.translate(lines, decoding, first_line=first)
            for number, hyps in enumerate(results, start=first - 1):
                if cfg.n_best == 1:
                    stdout.write(hyps[0].text + "\n")
                else:
                    stdout.write("".join(f"{number} ||| {h.text} ||| {h.score:.4f}\n" for h in hyps))
        stdout.flush()


@hydra.main(version_base="1.3", config_path="conf", config_name="translate")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="[%(levelname)s] %(message)s")
    exit_on_user_error(lambda: run(cfg, sys.stdin.buffer, sys.stdout))


if __name__ == "__main__":
    main()
