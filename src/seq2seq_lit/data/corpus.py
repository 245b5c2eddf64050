"""Reading parallel text: plain or gzipped, UTF-8 checked line by line, BOM and CRLF tolerated."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

from seq2seq_lit.errors import DataError, MissingFileError


def read_lines(path: str | Path) -> list[str]:
    """Read one sentence per line; fail with the file and line number on text that is not UTF-8."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    lines = []
    with opener(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{number}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            lines.append(line.rstrip("\r\n"))
    return lines


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> tuple[list[str], list[str]]:
    """Read a line-aligned pair of files; their line counts must match."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise DataError(f"parallel files differ in length: {src_path} has {len(src)} lines, {tgt_path} has {len(tgt)}")
    return src, tgt


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
