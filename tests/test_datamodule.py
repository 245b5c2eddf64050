import gzip
import logging
from pathlib import Path

import pytest
import torch
from conftest import multi30k_args, parallel_text_args

from seq2seq_lit.data import multi30k, tokenizer
from seq2seq_lit.data.collate import collate
from seq2seq_lit.data.corpus import read_lines
from seq2seq_lit.data.datamodule import Multi30kDataModule, TranslationDataModule
from seq2seq_lit.data.vocab import BOS_ID, EOS_ID, PAD_ID

_SUBJ = [
    ("a dog", "ein hund"),
    ("two men", "zwei männer"),
    ("the girl", "das mädchen"),
    ("kids", "kinder"),
    ("a woman", "eine frau"),
]
_VERB = [("sees", "sieht"), ("likes", "mag"), ("paints", "malt"), ("finds", "findet"), ("buys", "kauft")]
_OBJ = [
    ("a red car", "ein rotes auto"),
    ("the blue sky", "den blauen himmel"),
    ("a big tree", "einen großen baum"),
    ("the old bike", "das alte fahrrad"),
]
EN = [f"{s} {v} {o} ." for s, _ in _SUBJ for v, _ in _VERB for o, _ in _OBJ]
DE = [f"{s} {v} {o} ." for _, s in _SUBJ for _, v in _VERB for _, o in _OBJ]


def write(path: Path, lines: list[str], gz: bool = False) -> str:
    data = "".join(line + "\n" for line in lines).encode()
    if gz:
        path.write_bytes(gzip.compress(data, mtime=0))  # same bytes on every write: the cache keys on them
    else:
        path.write_bytes(data)
    return str(path)


def small_dm(tmp_path: Path, src=EN, tgt=DE, **kwargs) -> TranslationDataModule:
    train = [write(tmp_path / "train.en.gz", src, gz=True), write(tmp_path / "train.de", tgt)]
    val = [write(tmp_path / "val.en", EN[:5]), write(tmp_path / "val.de", DE[:5])]
    args = {"cache_dir": str(tmp_path / "cache"), "vocab_size": 32, "max_tokens": 200} | kwargs
    return TranslationDataModule(train=train, val=val, test=val, **parallel_text_args(**args))


def test_parallel_text_plain_and_gzip_batches(tmp_path: Path) -> None:
    dm = small_dm(tmp_path)
    dm.setup("fit")
    assert len(dm.src_tokenizer) == 32 and len(dm.tgt_tokenizer) == 32
    batch = next(iter(dm.train_dataloader()))
    src, tgt, lengths = batch["src"], batch["tgt"], batch["src_lengths"]
    assert torch.all(lengths[:-1] >= lengths[1:])  # sorted for packing
    for row in range(src.size(0)):
        n = lengths[row].item()
        assert src[row, n - 1] == EOS_ID and torch.all(src[row, n:] == PAD_ID)
        assert tgt[row, 0] == BOS_ID
    assert dm.test_names == ["test"]
    # Every training pair exactly once per epoch through the real DataLoader.
    seen = sorted(i for b in dm.train_dataloader() for i in b["ids"].tolist())
    assert seen == list(range(100))


def test_joint_vocabulary_is_one_tokenizer(tmp_path: Path) -> None:
    dm = small_dm(tmp_path, joint_vocab=True, vocab_size=50)
    dm.setup()
    assert dm.src_tokenizer is dm.tgt_tokenizer and len(dm.src_tokenizer) == 50


def test_tokenizers_and_encoded_corpus_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small_dm(tmp_path).setup()
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    # Two tokenizers; train and val prepared (the test split is the val files, so it shares their entry).
    assert sum(n.startswith("spm-") for n in cached) == 2 and sum(n.startswith("prepared-") for n in cached) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("tokenizer retrained despite the cache")

    monkeypatch.setattr(tokenizer, "train_tokenizer", no_training)
    dm = small_dm(tmp_path)
    dm.setup()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == cached
    # Different settings are a different cache entry.
    with pytest.raises(AssertionError, match="retrained"):
        small_dm(tmp_path, vocab_size=33).setup()


def test_empty_and_overlong_pairs_are_dropped_and_counted(tmp_path: Path, caplog) -> None:
    src = [*EN, "", "   ", "a b c d e f g h i j k l m n o p q r s t u v w x y z " * 5]
    tgt = [*DE, "leer", "x", "kurz"]
    dm = small_dm(tmp_path, src=src, tgt=tgt, max_length=60, max_tokens=400)
    with caplog.at_level(logging.INFO):
        dm.setup()
    assert len(dm.datasets["train"]) == 100
    assert "train: 100 pairs kept, 2 empty dropped, 1 longer than data.max_length=60 dropped" in caplog.text
    # Examples keep the text and the file line of the pair they came from.
    assert dm.sources("train", [0, 99]) == [EN[0], EN[99]] and dm.references("train", [99]) == [DE[99]]
    assert dm.file_lines("train", [0, 99]) == ([0, 99], 103)
    ids = dm.datasets["train"][99][2].tolist()
    assert dm.tgt_tokenizer.decode([ids]) == [DE[99]]
    assert "".join(dm.tgt_tokenizer.id_to_piece(ids)).replace("\u2581", " ").strip() == DE[99]


def test_line_count_mismatch_names_both_files(tmp_path: Path) -> None:
    dm = small_dm(tmp_path, tgt=DE[:-1])
    with pytest.raises(ValueError, match=r"train.en.gz has 100 lines, .*train.de has 99"):
        dm.setup()


def test_vocab_too_small_names_the_minimum(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data.vocab_size=10 is too small .* Set data.vocab_size=\d+ or larger"):
        small_dm(tmp_path, vocab_size=10).setup()


def test_non_utf8_line_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\nalso fine\nbad \xff byte\n")
    with pytest.raises(ValueError, match=r"bad.txt:3: not valid UTF-8"):
        read_lines(path)


def test_bom_and_crlf_are_stripped(tmp_path: Path) -> None:
    path = tmp_path / "crlf.txt"
    path.write_bytes("\ufeffeins\r\nzwei\r\n".encode())
    assert read_lines(path) == ["eins", "zwei"]


def test_vocab_too_large_suggests_a_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"data.vocab_size=5000 is too large .* Set data.vocab_size=\d+ or smaller"):
        small_dm(tmp_path, vocab_size=5000).setup()


def test_collate_pads_sorts_and_keeps_ids() -> None:
    import numpy as np

    batch = collate([(0, np.array([5]), np.array([6, 7])), (1, np.array([5, 6, 7]), np.array([8]))])
    assert batch["ids"].tolist() == [1, 0]
    assert batch["src"].tolist() == [[5, 6, 7, EOS_ID], [5, EOS_ID, PAD_ID, PAD_ID]]
    assert batch["src_lengths"].tolist() == [4, 2]
    assert batch["tgt"].tolist() == [[BOS_ID, 8, EOS_ID, PAD_ID], [BOS_ID, 6, 7, EOS_ID]]


def test_multi30k_missing_files_without_network_say_where(tmp_path: Path, monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(multi30k.urllib.request, "urlopen", offline)
    dm = Multi30kDataModule(**multi30k_args(root=str(tmp_path / "m30k"), cache_dir=str(tmp_path / "cache")))
    with pytest.raises(FileNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert f"data.root={tmp_path / 'm30k'}" in message and "train.en.gz" in message and "val.de.gz" in message
    assert "network is unreachable" in message and "point data.root at" in message


def test_download_verifies_sha256_and_never_refetches(tmp_path: Path, multi30k_root: Path, monkeypatch) -> None:
    base = multi30k_root.as_uri() + "/"
    monkeypatch.setattr(multi30k, "BASE_URL", base)
    monkeypatch.setattr(multi30k.download, "__defaults__", (base,))
    multi30k.ensure_files(tmp_path, ["val.en.gz"])
    assert (tmp_path / "val.en.gz").read_bytes() == (multi30k_root / "val.en.gz").read_bytes()
    # Present files are not downloaded again.
    monkeypatch.setattr(multi30k.urllib.request, "urlopen", lambda *a, **k: pytest.fail("re-downloaded"))
    multi30k.ensure_files(tmp_path, ["val.en.gz"])


def test_download_with_wrong_checksum_deletes_the_partial_file(tmp_path: Path, multi30k_root: Path, monkeypatch):
    monkeypatch.setitem(multi30k.SHA256, "val.en.gz", "0" * 64)
    with pytest.raises(OSError, match="SHA-256 mismatch .* the partial download was deleted"):
        multi30k.download("val.en.gz", tmp_path / "val.en.gz", base_url=multi30k_root.as_uri() + "/")
    assert list(tmp_path.iterdir()) == []


def test_multi30k_language_is_checked() -> None:
    with pytest.raises(ValueError, match=r"data.tgt_lang='xx' is not a Multi30k language; allowed values"):
        Multi30kDataModule(**multi30k_args(root="/nonexistent", tgt_lang="xx", cache_dir="/tmp"))


def test_zero_pairs_after_filtering_names_the_files(tmp_path: Path) -> None:
    dm = small_dm(tmp_path, max_length=3)  # every sentence is longer than 3 pieces
    with pytest.raises(
        ValueError, match=r"train split has no pairs left after filtering \(.*train.en.gz, .*train.de\)"
    ):
        dm.setup()


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    nope = [str(tmp_path / "nope.en"), str(tmp_path / "nope.de")]
    dm = TranslationDataModule(train=nope, val=None, **parallel_text_args(cache_dir=str(tmp_path / "c")))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope.en'}: no such file"):
        dm.setup()


def test_unwritable_cache_directory_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match=f"cannot write cache file {blocker}/"):
        small_dm(tmp_path, cache_dir=str(blocker / "cache")).setup()
