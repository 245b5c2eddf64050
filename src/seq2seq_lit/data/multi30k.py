"""Multi30k task 1 raw files: where they live, how they are fetched and verified."""

from __future__ import annotations

import logging
import os
import urllib.request
from pathlib import Path

from seq2seq_lit.data.corpus import file_digest
from seq2seq_lit.errors import FileAccessError, MissingFileError

log = logging.getLogger(__name__)

BASE_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/"
LANGS = ("en", "de", "fr", "cs")
SPLITS = ("train", "val", "test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr")
# From the official repository; only these files are ever downloaded.
SHA256 = {
    "test_2016_flickr.cs.gz": "200a4a74cc9560f051924abb9803be008d1908d77f747e9141aeb86dfd2797f1",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
    "train.cs.gz": "a65adb8b32e3bc664f21ecba7a6e7f6950fd1f405e135f7c312faabdb6255077",
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.cs.gz": "b63226e05c4bd5dd6a42897d74b86a1b9d2c31498252c572b1ea7f7996927fcc",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
}


def file_name(split: str, lang: str) -> str:
    return f"{split}.{lang}.gz"


def download(name: str, dest: Path, base_url: str = BASE_URL) -> None:
    """Fetch one file with a progress bar; keep it only if its SHA-256 matches the official sum."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    part = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(base_url + name, timeout=30) as response, open(part, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn()) as bar:
            task = bar.add_task(f"Downloading {name}", total=total)
            for chunk in iter(lambda: response.read(1 << 16), b""):
                out.write(chunk)
                bar.advance(task, len(chunk))
    digest = file_digest(part)
    if digest != SHA256[name]:
        part.unlink()
        raise FileAccessError(
            f"{base_url + name}: SHA-256 mismatch (got {digest}, expected {SHA256[name]}); "
            "the partial download was deleted"
        )
    os.replace(part, dest)


def ensure_files(root: str | Path, names: list[str], allow_download: bool = True) -> None:
    """Make sure every named file is under ``root``, downloading the missing ones once."""
    root = Path(root)
    missing = [n for n in names if not (root / n).is_file()]
    if not missing:
        return
    errors = []
    if allow_download:
        unknown = [n for n in missing if n not in SHA256]
        if unknown:
            errors.append(f"no official checksum known for {', '.join(unknown)}, so they are not downloaded")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise FileAccessError(f"data.root={root} cannot be created: {err}") from None
        for name in [n for n in missing if n in SHA256]:
            try:
                download(name, root / name)
                log.info("downloaded %s", root / name)
            except OSError as err:  # URLError is an OSError
                errors.append(f"{name}: {err}")
    still_missing = [n for n in missing if not (root / n).is_file()]
    if still_missing:
        raise MissingFileError(
            f"Multi30k files missing from data.root={root}: {', '.join(still_missing)}. "
            + ("; ".join(errors) + ". " if errors else "")
            + "Download them from https://github.com/multi30k/dataset (data/task1/raw/) or point "
            "data.root at a directory that holds them, e.g. `python -m seq2seq_lit.train "
            "data.root=/path/to/multi30k` (or set SEQ2SEQ_LIT_DATA)."
        )
