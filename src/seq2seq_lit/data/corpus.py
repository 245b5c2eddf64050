"""Reading parallel text: plain or gzipped, streamed, UTF-8 checked line by line, BOM and CRLF tolerated."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from seq2seq_lit.errors import DataError, MissingFileError


def iter_lines(path: str | Path) -> Iterator[str]:
    """One sentence per line, streamed; fail with the file and line number on text that is not UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{number}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            yield line.rstrip("\r\n")


def read_lines(path: str | Path) -> list[str]:
    """All lines of a (small) file: validation and test sets, references."""
    return list(iter_lines(path))


def iter_parallel(
    src_path: str | Path, tgt_path: str | Path, chunk_lines: int
) -> Iterator[tuple[list[str], list[str]]]:
    """A line-aligned pair of files in chunks of ``chunk_lines`` lines, never read whole; their line counts must
    match (checked as the shorter one ends)."""
    src, tgt = iter_lines(src_path), iter_lines(tgt_path)
    done = 0
    while True:
        src_chunk, tgt_chunk = list(islice(src, chunk_lines)), list(islice(tgt, chunk_lines))
        if len(src_chunk) != len(tgt_chunk):
            n_src = done + len(src_chunk) + sum(1 for _ in src)
            n_tgt = done + len(tgt_chunk) + sum(1 for _ in tgt)
            raise DataError(f"parallel files differ in length: {src_path} has {n_src} lines, {tgt_path} has {n_tgt}")
        if not src_chunk:
            return
        done += len(src_chunk)
        yield src_chunk, tgt_chunk


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> tuple[list[str], list[str]]:
    """Read a line-aligned pair of (small) files whole; their line counts must match."""
    src: list[str] = []
    tgt: list[str] = []
    for src_chunk, tgt_chunk in iter_parallel(src_path, tgt_path, 1 << 16):
        src += src_chunk
        tgt += tgt_chunk
    return src, tgt


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
