"""Data benchmark: ``python benchmarks/data_bench.py --sizes 30000 1000000 5000000 [--json PATH]``.

For each corpus size N it generates (once, deterministically) N distinct English-German pairs recombined from
Multi30k's training sentences (pair i joins sentence i mod 29,000 with a second one chosen by i // 29,000, on
both sides, so the pairs are as long as WMT's), then measures in fresh processes:

- preparation (``prepare_data``: SentencePiece on a 1M-sentence sample, encoding, filtering, writing): wall time
  and peak RSS;
- a training process (``experiment=tiny``, 200 steps): peak RSS; with ``trainer=ddp_cpu`` (per rank) and with
  ``data.num_workers=2`` (the training process and its workers);
- a second run on the prepared cache: seconds to its first training step (``trainer.max_steps=1``).

Peak RSS is the kernel's high-water mark of the process (or of its largest child: DDP ranks, workers).
Prints a Markdown table; writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from seq2seq_lit.data.corpus import read_lines

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("SEQ2SEQ_LIT_TEST_DATA", ROOT.parent / "shared/data/multi30k"))


def synthetic_corpus(out_dir: Path, n: int) -> tuple[Path, Path]:
    """N distinct pairs from Multi30k's training sentences (written once, then reused)."""
    src_path, tgt_path = out_dir / f"train{n}.en", out_dir / f"train{n}.de"
    if src_path.is_file() and tgt_path.is_file():
        return src_path, tgt_path
    en, de = (read_lines(MULTI30K / f"train.{lang}.gz") for lang in ("en", "de"))
    m = len(en)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(src_path.with_suffix(".tmp-en"), "w") as fs, open(tgt_path.with_suffix(".tmp-de"), "w") as ft:
        for i in range(n):
            a, b = i % m, (i // m * 7919 + i) % m  # (a, i // m) is unique per i, so each pair is distinct
            fs.write(f"{en[a]} {en[b]}\n")
            ft.write(f"{de[a]} {de[b]}\n")
    os.replace(src_path.with_suffix(".tmp-en"), src_path)
    os.replace(tgt_path.with_suffix(".tmp-de"), tgt_path)
    return src_path, tgt_path


# Runs a command and prints its largest descendant's peak RSS: a fresh wrapper per command, so each figure is
# that command's own (the kernel's children maximum only ever grows within one parent).
WRAPPER = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print('peak_rss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(r.returncode)"
)


def run_measured(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of the process or its largest descendant, and its output."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    peak_kb = int(result.stderr.rsplit("peak_rss_kb", 1)[1].split()[0])
    return wall, peak_kb / 1024, result.stdout + result.stderr


def train_cmd(src: Path, tgt: Path, val: tuple[Path, Path], root: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "seq2seq_lit.train", "data=parallel_text", f"data.train=[{src},{tgt}]",
        f"data.val=[{val[0]},{val[1]}]", "experiment=tiny", "logger=csv", "callbacks=none", "test=false",
        "model.decoding.val_bleu=false", "trainer.limit_val_batches=0", f"paths.root_dir={root}",
        f"paths.cache_dir={cache}", *extra,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30_000, 1_000_000, 5_000_000])
    parser.add_argument("--work", type=Path, default=ROOT / ".cache" / "data_bench")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    val = (MULTI30K / "val.en.gz", MULTI30K / "val.de.gz")
    results = []
    for n in args.sizes:
        src, tgt = synthetic_corpus(args.work / "corpora", n)
        cache, root = args.work / f"cache{n}", args.work / f"runs{n}"
        if cache.exists():
            subprocess.run(["rm", "-rf", str(cache)], check=True)
        prepare = (
            "import sys; from seq2seq_lit.data.datamodule import TranslationDataModule; "
            "from seq2seq_lit.config import DataConfig, schema_defaults; "
            "args = schema_defaults(DataConfig) | {'seed': 0, 'cache_dir': sys.argv[3], 'vocab_size': 1000}; "
            "TranslationDataModule(train=sys.argv[1:3], val=sys.argv[4:6], **args).prepare_data()"
        )
        row: dict = {"pairs": n}
        row["prepare_s"], row["prepare_peak_rss_mb"], _ = run_measured(
            [sys.executable, "-c", prepare, str(src), str(tgt), str(cache), *map(str, val)]
        )
        base = train_cmd(src, tgt, val, root, cache, "data.vocab_size=1000")
        _, row["train_peak_rss_mb"], _ = run_measured([*base, "trainer.max_steps=200"])
        row["second_run_to_first_step_s"], _, _ = run_measured([*base, "trainer.max_steps=1"])
        _, row["train_peak_rss_mb_ddp_cpu_per_rank"], _ = run_measured(
            [*base, "trainer=ddp_cpu", "trainer.max_steps=200"]
        )
        _, row["train_peak_rss_mb_2_workers"], _ = run_measured([*base, "data.num_workers=2", "trainer.max_steps=200"])
        results.append(row)
        print(json.dumps(row), flush=True)
    keys = list(results[0])
    print("| " + " | ".join(keys) + " |\n|" + " --- |" * len(keys))
    for row in results:
        print("| " + " | ".join(f"{row[k]:,.1f}" if isinstance(row[k], float) else f"{row[k]:,}" for k in keys) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
