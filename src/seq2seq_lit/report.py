"""Offline reports from run directories: ``python -m seq2seq_lit.report PATH``.

For a run directory: loss, perplexity and BLEU curves as PNG. For a multirun directory: every job's
overrides, best val/ppl, val/bleu, parameter count, tokens/s, wall time and status, as CSV and Markdown
sorted by the optimised metric, and plots of that metric against each swept hyper-parameter.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

import yaml

from seq2seq_lit.errors import DataError, MissingFileError, exit_on_user_error


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def series(rows: list[dict[str, float]], key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in rows if key in r and "step" in r]
    return [p[0] for p in points], [p[1] for p in points]


def plot_run(run_dir: Path, out_dir: Path) -> list[Path]:
    """One PNG per quantity (loss, ppl, bleu) with its train/val curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run_dir)
    written = []
    for quantity, keys in {
        "loss": ["train/loss_step", "val/loss"],
        "nll": ["train/nll_step", "val/nll"],
        "ppl": ["train/ppl_step", "val/ppl"],
        "bleu": ["val/bleu"],
    }.items():
        curves = {k: series(rows, k) for k in keys if series(rows, k)[0]}
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, (x, y) in curves.items():
            ax.plot(x, y, "o-" if key.startswith("val") else "-", label=key)
        if quantity == "ppl":
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{run_dir.name}: {quantity}")
        ax.legend()
        written.append(_save(fig, out_dir / f"{quantity}.png"))
    timed = [(r["val/minutes"], r["val/bleu"]) for r in rows if "val/minutes" in r and "val/bleu" in r]
    if timed:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([t for t, _ in timed], [b for _, b in timed], "o-")
        ax.set_xlabel("minutes of training")
        ax.set_ylabel("val/bleu")
        ax.set_title(f"{run_dir.name}: val/bleu against time")
        written.append(_save(fig, out_dir / "bleu_vs_minutes.png"))
    return written


def job_row(job: Path, metric: str) -> dict:
    """What one multirun job did, from its files alone."""
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    summary = json.loads((job / "summary.json").read_text()) if (job / "summary.json").is_file() else {}
    rows = read_metrics(job)
    val_ppl = [r["val/ppl"] for r in rows if "val/ppl" in r]
    val_bleu = [r["val/bleu"] for r in rows if "val/bleu" in r]
    tok_s = [r["train/tok_s"] for r in rows if "train/tok_s" in r]
    row = {
        "job": job.name,
        "overrides": " ".join(overrides),
        "status": summary.get("status", "running or killed"),
        "best_val_ppl": min(val_ppl) if val_ppl else None,
        "best_val_bleu": max(val_bleu) if val_bleu else None,
        "params": summary.get("params"),
        "tok_s": round(statistics.median(tok_s)) if tok_s else None,
        "wall_time_s": summary.get("wall_time_s"),
    }
    row[metric] = row.get({"val/ppl": "best_val_ppl", "val/bleu": "best_val_bleu"}.get(metric, ""))
    if row[metric] is None and metric in (summary.get("metrics") or {}):
        row[metric] = summary["metrics"][metric]
    row["_overrides"] = dict(o.split("=", 1) for o in overrides if "=" in o)
    return row


def sweep_report(sweep_dir: Path, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jobs = sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()), key=_job_key)
    if not jobs:
        raise DataError(f"{sweep_dir}: no multirun jobs (subdirectories with .hydra/overrides.yaml)")
    config = yaml.safe_load((jobs[0] / ".hydra" / "config.yaml").read_text()) or {}
    metric = config.get("optimized_metric") or "val/ppl"
    higher_is_better = metric.endswith(("bleu", "chrf", "acc"))
    rows = [job_row(job, metric) for job in jobs]
    missing = float("-inf") if higher_is_better else float("inf")
    rows.sort(key=lambda r: r[metric] if r[metric] is not None else missing, reverse=higher_is_better)
    columns = ["job", "overrides", metric, "best_val_ppl", "best_val_bleu", "params", "tok_s", "wall_time_s", "status"]
    columns = list(dict.fromkeys(columns))
    written = []
    with open(out_dir / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    written.append(out_dir / "report.csv")
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in rows]
    (out_dir / "report.md").write_text(f"Sorted by {metric}.\n\n" + "\n".join(lines) + "\n")
    written.append(out_dir / "report.md")
    swept = sorted({k for r in rows for k in r["_overrides"] if len({s["_overrides"].get(k) for s in rows}) > 1})
    for key in swept:
        points = [(r["_overrides"][key], r[metric]) for r in rows if key in r["_overrides"] and r[metric] is not None]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        xs = sorted({x for x, _ in points}, key=_natural)
        ax.scatter([xs.index(x) for x, _ in points], [y for _, y in points])
        ax.set_xticks(range(len(xs)), xs)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        written.append(_save(fig, out_dir / f"{metric.replace('/', '_')}_vs_{key.replace('/', '_')}.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _job_key(path: Path) -> tuple:
    return (0, int(path.name)) if path.name.isdigit() else (1, path.name)


def _natural(value: str) -> tuple:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def report(path: Path, out_dir: Path) -> list[Path]:
    """Curves of one run, or the table and plots of a multirun; the files written."""
    if not path.is_dir():
        raise MissingFileError(f"{path}: no such directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    is_run = (path / "csv" / "metrics.csv").is_file()
    return plot_run(path, out_dir) if is_run else sweep_report(path, out_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m seq2seq_lit.report", description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="a run directory or a multirun directory")
    parser.add_argument("--out", type=Path, help="where to write (default: PATH/report)")
    args = parser.parse_args(argv)
    written = exit_on_user_error(lambda: report(args.path, args.out or args.path / "report"))
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
