"""sacreBLEU scoring and report files shared by training's test stage and the evaluate command."""

from __future__ import annotations

import json
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest, Result


def score_corpus(hyps: list[str], refs: list[str], lowercase: bool = False) -> dict:
    """Corpus BLEU (13a, detokenized) and chrF, with their sacreBLEU signatures."""
    bleu, chrf = BLEU(lowercase=lowercase), CHRF(lowercase=lowercase)
    b, c = bleu.corpus_score(hyps, [refs]), chrf.corpus_score(hyps, [refs])
    return {
        "bleu": round(b.score, 2),
        "chrf": round(c.score, 2),
        "bleu_detail": str(b),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "sentences": len(hyps),
    }


def write_report(directory: Path, name: str, hyps: list[str], report: dict) -> tuple[Path, Path]:
    """Write ``<name>.hyp`` (one line per sentence) and ``<name>.json`` into ``directory``."""
    return write_hypotheses(directory / f"{name}.hyp", hyps), write_json(directory / f"{name}.json", report)


def write_hypotheses(path: Path, hyps: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    return path


def write_json(path: Path, report: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def compare_systems(systems: dict[str, list[str]], refs: list[str], n_samples: int = 1000) -> dict:
    """BLEU and chrF of each system with sacreBLEU's paired bootstrap resampling (Koehn, 2004): the mean and
    95% confidence interval of each score over ``n_samples`` resamples of the test set, and for every system
    but the first (the baseline) the p-value of its difference from the baseline. Seeded by sacreBLEU
    (``SACREBLEU_SEED``, default 12345), so a comparison repeats exactly."""
    names = list(systems)
    metrics = {"bleu": BLEU(), "chrf": CHRF()}
    test = PairedTest([(name, systems[name]) for name in names], metrics, [refs], test_type="bs", n_samples=n_samples)
    signatures, results = test()
    # sacreBLEU keys its results by each score's own name ("BLEU", "chrF2"), in the order of ``metrics``.
    names_by_key = dict(zip(metrics, [name for name in results if name != "System"]))
    out: dict = {"baseline": names[0], "n_samples": n_samples, "systems": {}}
    out["signatures"] = {key: str(signatures[name]) for key, name in names_by_key.items()}
    for i, name in enumerate(names):
        row = {}
        for key, score_name in names_by_key.items():
            r = results[score_name][i]
            assert isinstance(r, Result) and r.mean is not None and r.ci is not None  # the bootstrap sets both
            row[key] = {"score": round(float(r.score), 2), "mean": round(float(r.mean), 2), "ci": round(float(r.ci), 2)}
            if i > 0:
                assert r.p_value is not None
                row[key]["p_value"] = round(float(r.p_value), 4)
        out["systems"][name] = row
    return out
