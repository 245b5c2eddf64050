"""Corpora prepared once and memory-mapped (as fairseq's data layer): each split's token ids as flat arrays.

A prepared split is a directory in the cache, named by a key of its files' contents, the tokenizers and the
filtering settings:

- ``src.tokens.npy``, ``tgt.tokens.npy``: every kept pair's ids, one flat array per side (uint16, or int32
  for vocabularies beyond 65,535 pieces);
- ``src.offsets.npy``, ``tgt.offsets.npy``: where each pair starts (int64, one more than the pairs);
- ``lines.npy``: each kept pair's 0-based line in the files (int64);
- ``meta.json``: line, kept and dropped counts.

It is written into a temporary directory and renamed into place, so a preparation killed part-way leaves
nothing a later run trusts. Every rank and DataLoader worker opens the files read-only: an item's ids are read
from the file when asked for (the page cache holds one copy for all processes), the offsets are held as arrays,
and nothing holds a Python object per sentence.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from itertools import chain
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from seq2seq_lit.data.corpus import iter_parallel
from seq2seq_lit.data.tokenizer import Tokenizer
from seq2seq_lit.errors import DataError

log = logging.getLogger(__name__)

CHUNK_LINES = 50_000  # pairs read, encoded and written together


def compact(stored: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """A copy of a memory-mapped array of non-negative int64 in int32 when its last (largest) value allows,
    copied chunk by chunk so the int64 data is never held whole."""
    dtype = np.int32 if len(stored) == 0 or stored[-1] <= np.iinfo(np.int32).max else np.int64
    out = np.empty(len(stored), dtype=dtype)
    for start in range(0, len(stored), chunk):
        out[start : start + chunk] = stored[start : start + chunk]
    return out


class PreparedCorpus(Dataset):
    """A prepared split, memory-mapped; item ``i`` is ``(i, src_ids, tgt_ids)`` as int64 arrays."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        meta = json.loads((self.directory / "meta.json").read_text())
        self.n_lines: int = meta["lines"]  # lines of the original files
        self._open()

    def _open(self) -> None:
        def load(name: str) -> np.ndarray:
            return np.load(self.directory / f"{name}.npy", mmap_mode="r")

        # Token ids are read with pread, not through a map: scattered reads through a map fault whole
        # neighbourhoods of pages into the process (they count in its RSS); a read copies only the bytes asked for.
        self._tokens = {}
        for side in ("src", "tgt"):
            header = load(f"{side}.tokens")
            fd = os.open(self.directory / f"{side}.tokens.npy", os.O_RDONLY)
            self._tokens[side] = (fd, header.offset, header.dtype)
        # Held in memory (one is read per item), as int32 while the token count allows: half the int64 file.
        self.src_offsets, self.tgt_offsets = (compact(load(f"{side}.offsets")) for side in ("src", "tgt"))
        self.index = load("lines")  # position of each example in the original files

    def _read(self, side: str, start: int, end: int) -> np.ndarray:
        fd, offset, dtype = self._tokens[side]
        data = os.pread(fd, (end - start) * dtype.itemsize, offset + start * dtype.itemsize)
        return np.frombuffer(data, dtype=dtype).astype(np.int64)

    def __getstate__(self) -> dict:
        # A spawned DataLoader worker opens the files itself instead of receiving a pickled copy of the arrays.
        return {"directory": self.directory, "n_lines": self.n_lines}

    def __setstate__(self, state: dict) -> None:
        self.directory, self.n_lines = state["directory"], state["n_lines"]
        self._open()

    def __del__(self) -> None:
        for fd, _, _ in getattr(self, "_tokens", {}).values():
            os.close(fd)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, np.ndarray]:
        src = self._read("src", int(self.src_offsets[i]), int(self.src_offsets[i + 1]))
        tgt = self._read("tgt", int(self.tgt_offsets[i]), int(self.tgt_offsets[i + 1]))
        return i, src, tgt

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Lengths as they appear in a batch: source + EOS, BOS + target + EOS."""
        return np.diff(self.src_offsets) + 1, np.diff(self.tgt_offsets) + 2


class _SideWriter:
    """Appends one side's ids to a raw file as they are encoded; ``finish`` turns it into ``.npy`` files."""

    def __init__(self, directory: Path, side: str, dtype: np.dtype) -> None:
        self.directory, self.side, self.dtype = directory, side, dtype
        self.raw = open(directory / f"{side}.tokens.raw", "wb")  # noqa: SIM115  (closed in finish)
        self.lengths: list[np.ndarray] = []

    def add(self, ids: list[list[int]], keep: np.ndarray) -> None:
        kept = [ids[i] for i in keep.tolist()]
        lengths = np.fromiter(map(len, kept), np.int64, len(kept))
        flat = np.array(list(chain.from_iterable(kept)), dtype=self.dtype)
        flat.tofile(self.raw)
        self.lengths.append(lengths)

    def finish(self) -> None:
        self.raw.close()
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int64)
        np.save(self.directory / f"{self.side}.offsets.npy", np.concatenate([[0], np.cumsum(lengths)]))
        raw_path = self.directory / f"{self.side}.tokens.raw"
        tokens = np.lib.format.open_memmap(
            self.directory / f"{self.side}.tokens.npy", mode="w+", dtype=self.dtype, shape=(int(lengths.sum()),)
        )
        raw = np.memmap(raw_path, dtype=self.dtype, mode="r") if len(tokens) else tokens
        for start in range(0, len(tokens), 1 << 24):  # in slices: file to file, never the whole side in memory
            tokens[start : start + (1 << 24)] = raw[start : start + (1 << 24)]
        tokens.flush()
        del raw
        del tokens
        raw_path.unlink()


def prepare_split(
    directory: Path,
    name: str,
    src_path: Path,
    tgt_path: Path,
    src_tokenizer: Tokenizer,
    tgt_tokenizer: Tokenizer,
    max_length: int | None,
    progress: bool = True,
) -> None:
    """Read, encode and filter a split in one streaming pass, and publish it atomically at ``directory``.

    Pairs with an empty (or whitespace-only) side are dropped, and with ``max_length`` those with more pieces on
    either side. A split with no pair left is an error naming its files.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    tmp = directory.with_name(f".{directory.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtypes = [np.dtype(np.uint16 if len(tok) <= 65535 else np.int32) for tok in (src_tokenizer, tgt_tokenizer)]
    writers = [_SideWriter(tmp, side, dtype) for side, dtype in zip(("src", "tgt"), dtypes)]
    lines: list[np.ndarray] = []
    n_lines = n_empty = n_long = 0
    try:
        bar = tqdm(desc=f"preparing {name}", unit=" pairs", disable=not progress, leave=False, mininterval=1.0)
        for src_chunk, tgt_chunk in iter_parallel(src_path, tgt_path, CHUNK_LINES):
            empty = np.fromiter((not s.strip() or not t.strip() for s, t in zip(src_chunk, tgt_chunk)), bool)
            src_ids, tgt_ids = src_tokenizer.encode(src_chunk), tgt_tokenizer.encode(tgt_chunk)
            too_long = np.zeros_like(empty)
            if max_length is not None:
                longest = np.maximum(
                    np.fromiter(map(len, src_ids), np.int64, len(src_ids)),
                    np.fromiter(map(len, tgt_ids), np.int64, len(tgt_ids)),
                )
                too_long = (longest > max_length) & ~empty
            keep = np.flatnonzero(~(empty | too_long))
            writers[0].add(src_ids, keep)
            writers[1].add(tgt_ids, keep)
            lines.append(keep + n_lines)
            n_lines, n_empty, n_long = (
                n_lines + len(src_chunk),
                n_empty + int(empty.sum()),
                n_long + int(too_long.sum()),
            )
            bar.update(len(src_chunk))
        bar.close()
        kept = np.concatenate(lines) if lines else np.zeros(0, np.int64)
        log.info(
            "%s: %d pairs kept, %d empty dropped, %d longer than data.max_length=%s dropped (%s, %s); prepared in "
            "%.1f s", name, len(kept), n_empty, n_long, max_length, src_path, tgt_path, time.perf_counter() - start,
        )  # fmt: skip
        if len(kept) == 0:
            raise DataError(
                f"{name} split has no pairs left after filtering ({src_path}, {tgt_path}): "
                f"{n_empty} empty, {n_long} longer than data.max_length={max_length}"
            )
        for writer in writers:
            writer.finish()
        np.save(tmp / "lines.npy", kept.astype(np.int64))
        meta = {"lines": n_lines, "kept": len(kept), "empty": n_empty, "too_long": n_long}
        (tmp / "meta.json").write_text(json.dumps(meta) + "\n")
        os.replace(tmp, directory)  # atomic: the directory appears complete or not at all
    finally:
        for writer in writers:
            writer.raw.close()
        shutil.rmtree(tmp, ignore_errors=True)
