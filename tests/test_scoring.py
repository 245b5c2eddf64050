"""sacreBLEU scoring: corpus scores and the paired bootstrap comparison of systems."""

from __future__ import annotations

from pathlib import Path

from sacrebleu.metrics import BLEU

from seq2seq_lit.data.corpus import read_lines
from seq2seq_lit.scoring import compare_systems


def test_paired_bootstrap_tells_a_real_difference_from_none(multi30k_root: Path) -> None:
    refs = read_lines(multi30k_root / "val.de.gz")[:200]
    good = [" ".join(r.split()[:-2]) for r in refs]  # the references with their last two words cut
    shuffled = refs[1:] + refs[:1]  # every hypothesis answers another sentence
    near = refs[:2] + good[2:]  # two sentences of 200 better
    result = compare_systems({"good": good, "near": near, "shuffled": shuffled}, refs, n_samples=300)
    rows = result["systems"]
    assert result["baseline"] == "good" and "p_value" not in rows["good"]["bleu"]
    assert rows["good"]["bleu"]["score"] == round(BLEU().corpus_score(good, [refs]).score, 2)
    assert rows["near"]["bleu"]["score"] > rows["good"]["bleu"]["score"]
    assert rows["near"]["bleu"]["p_value"] > 0.05  # a difference that chance explains
    assert rows["shuffled"]["bleu"]["p_value"] < 0.01 and rows["shuffled"]["chrf"]["p_value"] < 0.01
    for row in rows.values():
        for metric in ("bleu", "chrf"):
            assert row[metric]["ci"] > 0 and abs(row[metric]["mean"] - row[metric]["score"]) < row[metric]["ci"]
