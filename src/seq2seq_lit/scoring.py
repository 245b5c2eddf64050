"""sacreBLEU scoring and report files shared by training's test stage and the evaluate command."""

from __future__ import annotations

import json
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF


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
    directory.mkdir(parents=True, exist_ok=True)
    hyp_path, json_path = directory / f"{name}.hyp", directory / f"{name}.json"
    hyp_path.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return hyp_path, json_path
