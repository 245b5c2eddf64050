"""Speed of two revisions, in one run: ``python benchmarks/revisions.py REV_A REV_B [--rounds 3]``.

Each revision is checked out into a temporary git worktree; every round runs each one's measurement in a fresh
process (alternating the order, so a drift of the machine's speed favours neither) on the same data, weights
(seed 0) and sentences: training tokens/s of the reference RNN in a plain PyTorch loop (fp32), and greedy and
beam-5 sentences/s on 500 test sentences of the reference RNN and of the Transformer recipe's network (untrained,
or the checkpoints ``--ckpt`` and ``--transformer-ckpt``). Prints the medians and the ratios B/A.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs inside each revision's tree; written against the API both sides of the family seam share.
MEASURE = r"""
import json, statistics, sys, time
import torch
sys.path.insert(0, sys.argv[1] + "/benchmarks")
import bench
torch.manual_seed(0)
dm, batches = bench.reference_batches(sys.argv[2], sys.argv[3], 23)
rates = []
model = bench.reference_model(dm).train()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for batch in batches:
    t = time.perf_counter()
    bench.bare_step(model, opt, batch)
    rates.append(bench.target_tokens(batch) / (time.perf_counter() - t))
from seq2seq_lit.translator import Translator
torch.manual_seed(0)
model = bench.reference_model(dm, dropout=0.0).eval()
translator = Translator(model, dm.src_tokenizer, dm.tgt_tokenizer, 100)
sentences = dm.sources("test_2016_flickr", list(range(500)))
out = {"train_tok_s": statistics.median(rates[3:])}
ckpts = json.loads(sys.argv[4])
families = [("rnn", "")]
if hasattr(bench, "TRANSFORMER"):  # the revision's harness knows the Transformer recipe's network
    families.append(("transformer", "transformer_"))
for family, prefix in families:
    if ckpts[family]:
        translator = Translator.from_checkpoint(ckpts[family])
    elif family == "transformer":
        torch.manual_seed(0)
        model = bench.reference_model(dm, dropout=0.0, family=family).eval()
        translator = Translator(model, dm.src_tokenizer, dm.tgt_tokenizer, 100)
    for name, beam in (("greedy", 1), ("beam5", 5)):
        out[prefix + name + "_sent_s"] = bench.decoding_speed(translator, sentences, beam)
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revisions", nargs=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--data", default=os.environ.get("SEQ2SEQ_LIT_TEST_DATA", str(ROOT.parent / "shared/data/multi30k"))
    )
    parser.add_argument("--ckpt", help="an RNN checkpoint to decode with (default: the untrained reference RNN)")
    parser.add_argument("--transformer-ckpt", help="a Transformer checkpoint to decode with")
    args = parser.parse_args()
    ckpts = json.dumps({"rnn": args.ckpt, "transformer": args.transformer_ckpt})
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for i, rev in enumerate(args.revisions):
            tree = Path(tmp) / f"rev{i}"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                           capture_output=True)  # fmt: skip
            trees[rev] = tree
        try:
            results: dict[str, list[dict]] = {rev: [] for rev in args.revisions}
            for r in range(args.rounds):
                for rev in args.revisions if r % 2 == 0 else args.revisions[::-1]:
                    env = {**os.environ, "PYTHONPATH": str(trees[rev] / "src")}
                    cmd = [sys.executable, "-c", MEASURE, str(trees[rev]), args.data, str(Path(tmp) / "cache"), ckpts]
                    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
                    results[rev].append(json.loads(out.splitlines()[-1]))
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    a, b = args.revisions
    print(f"| figure | {a} | {b} | {b} / {a} |\n| --- | --- | --- | --- |")
    for key in (key for key in results[a][0] if key in results[b][0]):  # figures both revisions measure
        ma = statistics.median(x[key] for x in results[a])
        mb = statistics.median(x[key] for x in results[b])
        print(f"| {key} | {ma:,.0f} | {mb:,.0f} | {mb / ma:.3f} |")


if __name__ == "__main__":
    main()
