"""Hugging Face datasets as a source: ``data=hf data.path=wmt14 data.name=de-en``.

Each split's two fields are exported once, streamed in batches, to plain text files in the cache; from there
the split goes through the same preparation and cache as any parallel text (``datamodule``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from seq2seq_lit.data.datamodule import TranslationDataModule
from seq2seq_lit.data.tokenizer import cache_key
from seq2seq_lit.errors import ConfigError, DataError

log = logging.getLogger(__name__)

EXPORT_BATCH = 10_000  # rows read from the dataset at a time


def load_split(path: str, name: str | None, split: str, revision: str | None) -> Any:
    """One split of a Hub dataset, or of a local one (a ``save_to_disk`` directory, or data files through a
    builder such as ``json`` or ``parquet`` with ``data.data_files``)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("data=hf needs the datasets package: pip install 'seq2seq_lit[hf]'") from None
    local = Path(path).expanduser()
    if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
        saved = datasets.load_from_disk(str(local))
        if isinstance(saved, datasets.DatasetDict):
            if split not in saved:
                raise ConfigError(f"data.path={path} has no split {split!r}; its splits: {list(saved)}")
            return saved[split]
        return saved
    try:
        return datasets.load_dataset(path, name, split=split, revision=revision)
    except ValueError as err:  # an unknown split or config
        raise ConfigError(f"data.path={path} data.name={name}: {err}") from None


def field(row: dict, dotted: str, where: str) -> str:
    """``row['translation']['de']`` for ``translation.de``; a missing field names the key and the row."""
    value: Any = row
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise DataError(f"{where}: no field {dotted!r} (data.src_field / data.tgt_field) in {sorted(row)}")
        value = value[part]
    return str(value).replace("\n", " ")


class HFDataModule(TranslationDataModule):
    """A Hugging Face dataset: ``data.path`` (Hub name or local directory), ``data.name`` (its config), the split
    names (``data.train_split``, ``data.val_split``, ``data.test_splits``), ``data.src_field``/``data.tgt_field``."""

    def __init__(
        self,
        path: str,
        *,
        name: str | None,
        revision: str | None,
        train_split: str,
        val_split: str,
        test_splits: list[str],
        src_lang: str,
        tgt_lang: str,
        src_field: str,
        tgt_field: str,
        **kwargs: Any,
    ) -> None:
        # src_lang/tgt_lang only name the fields (translation.<lang>) and record the direction.
        splits = {"train": train_split, "val": val_split, **{name: name for name in test_splits}}
        self.path, self.name, self.revision, self.fields = path, name, revision, (src_field, tgt_field)
        export = Path(kwargs["cache_dir"]) / f"hf-{cache_key(path, name, revision, src_field, tgt_field)}"
        self.exports = {
            role: (split, export / f"{role}.src.txt", export / f"{role}.tgt.txt") for role, split in splits.items()
        }
        files = {role: [str(src), str(tgt)] for role, (_, src, tgt) in self.exports.items()}
        tests = {role: pair for role, pair in files.items() if role not in ("train", "val")}
        super().__init__(train=files["train"], val=files["val"], test=tests or None, **kwargs)

    def _fetch(self) -> None:
        for split, src, tgt in self.exports.values():
            if not (src.is_file() and tgt.is_file()):
                self._export(split, src, tgt)

    def _export(self, split: str, src: Path, tgt: Path) -> None:
        """Write a split's two fields as line-aligned text files, atomically (a killed export is redone)."""
        data = load_split(self.path, self.name, split, self.revision)
        src_field, tgt_field = self.fields
        src.parent.mkdir(parents=True, exist_ok=True)
        tmp = [p.with_name(f".{p.name}.{os.getpid()}.tmp") for p in (src, tgt)]
        where = f"data.path={self.path} split {split!r}"
        with open(tmp[0], "w", encoding="utf-8") as fs, open(tmp[1], "w", encoding="utf-8") as ft:
            for start in range(0, len(data), EXPORT_BATCH):
                rows = data[start : start + EXPORT_BATCH]  # column-wise: {column: [values]}
                for i in range(len(next(iter(rows.values())))):
                    row = {column: values[i] for column, values in rows.items()}
                    fs.write(field(row, src_field, f"{where}, row {start + i}") + "\n")
                    ft.write(field(row, tgt_field, f"{where}, row {start + i}") + "\n")
        os.replace(tmp[0], src)
        os.replace(tmp[1], tgt)
        log.info("exported %s (%d rows) to %s", where, len(data), src.parent)
