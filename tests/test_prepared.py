"""Corpora prepared once and memory-mapped: the same ids as encoding in memory, atomic and locked preparation,
streaming reads that still name a bad file and line, SentencePiece's sampling and normalisation settings, and
Hugging Face datasets as a source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import parallel_text_args
from test_datamodule import DE, EN, small_dm, write

from seq2seq_lit.data import prepared
from seq2seq_lit.data.corpus import read_lines
from seq2seq_lit.data.datamodule import TranslationDataModule
from seq2seq_lit.data.prepared import PreparedCorpus
from seq2seq_lit.data.tokenizer import train_tokenizer


def test_prepared_ids_equal_encoding_in_memory(tiny_datamodule, multi30k_root: Path) -> None:
    """Multi30k train: the memory-mapped corpus holds exactly what encoding the text in memory gives, with the
    same filtering and order."""
    dm = tiny_datamodule
    corpus = dm.datasets["train"]
    assert isinstance(corpus, PreparedCorpus) and isinstance(corpus.index, np.memmap)
    src = read_lines(multi30k_root / "train.en.gz")
    tgt = read_lines(multi30k_root / "train.de.gz")
    src_ids, tgt_ids = dm.src_tokenizer.encode(src), dm.tgt_tokenizer.encode(tgt)
    max_length = dm.hparams.max_length
    keep = [
        i for i, (s, t) in enumerate(zip(src, tgt))
        if s.strip() and t.strip() and max(len(src_ids[i]), len(tgt_ids[i])) <= max_length
    ]  # fmt: skip
    assert corpus.index.tolist() == keep and corpus.n_lines == len(src) == 29000
    for i, line in enumerate(keep):
        _, s, t = corpus[i]
        assert s.tolist() == src_ids[line] and t.tolist() == tgt_ids[line]
    src_len, tgt_len = corpus.lengths()
    assert src_len.tolist() == [len(src_ids[j]) + 1 for j in keep]
    assert tgt_len.tolist() == [len(tgt_ids[j]) + 2 for j in keep]


def test_offsets_are_held_as_int32_while_the_values_allow(tmp_path: Path) -> None:
    small = np.arange(0, 3 * 10**6, 3, dtype=np.int64)
    np.save(tmp_path / "small.npy", small)
    held = prepared.compact(np.load(tmp_path / "small.npy", mmap_mode="r"), chunk=4096)  # many chunks
    assert held.dtype == np.int32 and np.array_equal(held, small)
    large = np.array([0, 5, 2**31], dtype=np.int64)  # a corpus of more than 2**31 tokens keeps int64
    assert prepared.compact(large).dtype == np.int64 and np.array_equal(prepared.compact(large), large)
    assert prepared.compact(np.zeros(0, np.int64)).dtype == np.int32


def test_a_killed_preparation_is_redone_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_finish = prepared._SideWriter.finish
    calls = []

    def killed(self) -> None:
        real_finish(self)
        calls.append(self.side)
        if self.side == "tgt":
            raise KeyboardInterrupt  # killed after both sides' arrays were written, before publishing

    monkeypatch.setattr(prepared._SideWriter, "finish", killed)
    with pytest.raises(KeyboardInterrupt):
        small_dm(tmp_path).setup()
    cache = tmp_path / "cache"
    assert not list(cache.glob("prepared-*")) and not list(cache.glob(".prepared-*"))  # nothing left to trust
    monkeypatch.setattr(prepared._SideWriter, "finish", real_finish)
    dm = small_dm(tmp_path)
    dm.setup()
    assert len(dm.datasets["train"]) == 100 and len(list(cache.glob("prepared-*"))) == 2


def test_two_processes_starting_at_once_prepare_once(tmp_path: Path) -> None:
    train = [write(tmp_path / "train.en", EN), write(tmp_path / "train.de", DE)]
    val = [write(tmp_path / "val.en", EN[:5]), write(tmp_path / "val.de", DE[:5])]
    args = parallel_text_args(cache_dir=str(tmp_path / "cache"), vocab_size=32, max_tokens=200)
    code = (
        "import json, logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        "from seq2seq_lit.data.datamodule import TranslationDataModule\n"
        "dm = TranslationDataModule(**json.loads(sys.argv[1])); dm.setup()\n"
        "print('examples', len(dm.datasets['train']))\n"
    )
    blob = json.dumps({"train": train, "val": val, **args})
    procs = [subprocess.Popen([sys.executable, "-c", code, blob], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all("examples 100" in out for out in outputs)
    # One process prepared each split; the other found it prepared.
    assert sum(out.count("prepared in") for out in outputs) == 2
    assert sum(out.count("using prepared corpus") for out in outputs) == 2


def test_bad_utf8_deep_in_a_file_names_the_file_and_line(tmp_path: Path) -> None:
    n = 2 * prepared.CHUNK_LINES + 7  # past the first chunks: the error comes from a later one
    lines = [EN[i % 100] for i in range(n)]
    src = tmp_path / "train.en"
    src.write_bytes("".join(line + "\n" for line in lines[:-1]).encode() + b"bad \xff byte\n")
    tgt = write(tmp_path / "train.de", [DE[i % 100] for i in range(n)])
    val = [write(tmp_path / "val.en", EN[:5]), write(tmp_path / "val.de", DE[:5])]
    args = parallel_text_args(cache_dir=str(tmp_path / "cache"), vocab_size=32, spm_sample_size=1000)
    with pytest.raises(ValueError, match=rf"train.en:{n}: not valid UTF-8"):
        TranslationDataModule(train=[str(src), tgt], val=val, **args).setup()
    # Line counts that differ only at the very end are caught too, naming both counts.
    write(src, lines[:-1])
    with pytest.raises(ValueError, match=rf"train.en has {n - 1} lines, .*train.de has {n}"):
        TranslationDataModule(train=[str(src), tgt], val=val, **args).setup()


def test_spm_settings_reach_sentencepiece() -> None:
    text = ["Zimmer １２３ und ４５６ Betten", "Preis ７８９ Euro ０", "Haus Nummer 12 und 34"] * 20
    nfkc = train_tokenizer(text, vocab_size=40, model_type="char")
    identity = train_tokenizer(text, vocab_size=40, model_type="char", normalization="identity")
    # NFKC turns full-width digits into ASCII; identity keeps the text as written.
    assert nfkc.decode(nfkc.encode(["１２３"])) == ["123"]
    assert identity.decode(identity.encode(["１２３"])) == ["１２３"]
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(train_tokenizer(text, vocab_size=40, model_type="char", sample_size=200).proto)
    assert proto.trainer_spec.input_sentence_size == 200 and proto.normalizer_spec.name == "nmt_nfkc"


def test_hf_dataset_from_disk_trains_through_the_same_pipeline(tmp_path: Path, cache_dir: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = [{"translation": {"en": e, "de": d}} for e, d in zip(EN, DE)]
    data = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows), "validation": datasets.Dataset.from_list(rows[:10])}
    )
    data.save_to_disk(str(tmp_path / "hf"))
    args = [
        "data=hf", f"data.path={tmp_path / 'hf'}", "data.test_splits=[]",
        "data.vocab_size=40", "data.max_tokens=200", "experiment=tiny", "logger=csv", "callbacks=none",
        "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "test=false", f"paths.root_dir={tmp_path}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "seq2seq_lit.train", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (export,) = (tmp_path / "cache").glob("hf-*")
    assert (export / "train.src.txt").read_text().splitlines() == EN
    assert (export / "train.tgt.txt").read_text().splitlines() == DE
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    rows_logged = (run / "csv" / "metrics.csv").read_text()
    assert "val/ppl" in rows_logged
    bad = subprocess.run(
        [sys.executable, "-m", "seq2seq_lit.train", *args, "data.src_field=text.en"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert bad.returncode == 1 and "no field 'text.en'" in bad.stderr + bad.stdout
