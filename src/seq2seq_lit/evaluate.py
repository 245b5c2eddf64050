"""Score a checkpoint with sacreBLEU: ``python -m seq2seq_lit.evaluate ckpt_path=PATH [split=...]``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import hydra
from omegaconf import DictConfig, OmegaConf

from seq2seq_lit.config import EvaluateConfig, register_configs, require
from seq2seq_lit.errors import ConfigError, exit_on_user_error

log = logging.getLogger(__name__)
register_configs()


def source_and_reference(cfg: DictConfig, hp_data: dict) -> tuple[Path, Path]:
    """Explicit ``data.src``/``data.ref`` files, or the Multi30k split in the checkpoint's languages."""
    if cfg.data.src or cfg.data.ref:
        if not (cfg.data.src and cfg.data.ref):
            raise ConfigError("set both data.src and data.ref, or neither (to use split= under data.root)")
        return Path(cfg.data.src), Path(cfg.data.ref)
    from seq2seq_lit.data import multi30k

    src_lang = cfg.data.src_lang or hp_data.get("src_lang")
    tgt_lang = cfg.data.tgt_lang or hp_data.get("tgt_lang")
    if not (src_lang and tgt_lang):
        raise ConfigError("the checkpoint was not trained on Multi30k: set data.src and data.ref")
    root = Path(cfg.data.root)
    names = [multi30k.file_name(cfg.split, lang) for lang in (src_lang, tgt_lang)]
    multi30k.ensure_files(root, names, allow_download=cfg.split in multi30k.SPLITS[:3])
    return root / names[0], root / names[1]


def evaluate(cfg: DictConfig) -> dict:
    """Translate a test set with one checkpoint, or compare several (``ckpt_path=[A,B,...]``) on it."""
    require(cfg, "ckpt_path", "the checkpoint to evaluate, e.g. ckpt_path=RUN/checkpoints/last.ckpt")
    paths = [str(p) for p in cfg.ckpt_path] if OmegaConf.is_list(cfg.ckpt_path) else [str(cfg.ckpt_path)]
    if not paths:
        raise ConfigError("ckpt_path=[] names no checkpoint")
    directions = checkpoint_directions(cfg.direction, len(paths))
    if len(paths) == 1:
        return evaluate_one(cfg, paths[0], directions[0])
    return compare(cfg, paths, directions)


def checkpoint_directions(direction: object, n_paths: int) -> list[str]:
    """``direction``: one for all ``n_paths`` checkpoints, or a list with one per checkpoint."""
    if not OmegaConf.is_list(direction):
        return [str(direction)] * n_paths
    directions = [str(d) for d in direction]
    if len(directions) != n_paths:
        raise ConfigError(
            f"direction={directions} names {len(directions)} directions for {n_paths} checkpoints in ckpt_path; "
            "give one for all, or one per checkpoint"
        )
    return directions


def translate_test_set(cfg: DictConfig, path: str, direction: str) -> tuple[list[str], list[str], Path, Path]:
    """One checkpoint's translations of the test set, with the references and where both came from."""
    from seq2seq_lit.checkpoint import load_checkpoint
    from seq2seq_lit.data.corpus import read_parallel
    from seq2seq_lit.translator import Translator

    decoding = cast(EvaluateConfig, OmegaConf.to_object(cfg))  # an EvaluateConfig, which is a DecodingConfig
    decoding.n_best = 1
    decoding.check()
    ckpt = load_checkpoint(path, cfg.device, direction)
    src_path, ref_path = source_and_reference(cfg, ckpt.data)
    sources, refs = read_parallel(src_path, ref_path)
    translator = Translator(ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer, ckpt.data.get("max_length"))
    hyps = [h[0].text for h in translator.translate(sources, decoding)]
    return hyps, refs, src_path, ref_path


def evaluate_one(cfg: DictConfig, path: str, direction: str) -> dict:
    from seq2seq_lit.scoring import score_corpus, write_report

    hyps, refs, src_path, ref_path = translate_test_set(cfg, path, direction)
    report = {
        "ckpt_path": path,
        "direction": direction,
        "source": str(src_path),
        "reference": str(ref_path),
        "beam_size": cfg.beam_size,
        "alpha": cfg.alpha,
        "cased": score_corpus(hyps, refs),
        "lowercased": score_corpus(hyps, refs, lowercase=True),
    }
    hyp_path, json_path = write_report(Path(cfg.output_dir), test_set_name(cfg), hyps, report)
    for case in ("cased", "lowercased"):
        r = report[case]
        print(f"BLEU ({case}) = {r['bleu']:.2f}  {r['bleu_signature']}")
        print(f"chrF ({case}) = {r['chrf']:.2f}  {r['chrf_signature']}")
    log.info("hypotheses: %s, report: %s", hyp_path, json_path)
    return report


def compare(cfg: DictConfig, paths: list[str], directions: list[str]) -> dict:
    """Each checkpoint's BLEU and chrF (cased) with 95% confidence intervals, and the p-value of each one's
    difference from the first, by paired bootstrap resampling over the same test set."""
    from seq2seq_lit.scoring import compare_systems, write_hypotheses, write_json

    def label(i: int) -> str:
        return f"{i}: {paths[i]}" + (f" ({directions[i]})" if directions[i] != "src2tgt" else "")

    hyps, refs, src_path, ref_path = translate_test_set(cfg, paths[0], directions[0])
    systems = {label(0): hyps}
    for i, path in enumerate(paths[1:], start=1):
        hyps, _, *files = translate_test_set(cfg, path, directions[i])
        if files != [src_path, ref_path]:
            raise ConfigError(
                f"ckpt_path: {path} translates {files[0]} -> {files[1]}, {paths[0]} {src_path} -> {ref_path}; "
                "compare checkpoints of one language pair (or give data.src and data.ref)"
            )
        systems[label(i)] = hyps
    report = {"source": str(src_path), "reference": str(ref_path), "beam_size": cfg.beam_size, "alpha": cfg.alpha}
    report |= compare_systems(systems, refs, cfg.bootstrap_samples)
    out_dir, name = Path(cfg.output_dir), test_set_name(cfg)
    for i, hyps in enumerate(systems.values()):
        write_hypotheses(out_dir / f"{name}.{i}.hyp", hyps)
    write_json(out_dir / f"{name}.json", report)
    print(f"paired bootstrap resampling, {report['n_samples']} resamples; p-values against system 0 (baseline)")
    for label, row in report["systems"].items():
        cells = []
        for key, r in (("BLEU", row["bleu"]), ("chrF", row["chrf"])):
            p_value = f" p={r['p_value']:.4f}" if "p_value" in r else ""
            cells.append(f"{key} {r['score']:.2f} ({r['mean']:.2f} +- {r['ci']:.2f}){p_value}")
        print(f"{label}  " + "  ".join(cells))
    print(report["signatures"]["bleu"])
    return report


def test_set_name(cfg: DictConfig) -> str:
    return cfg.split if not cfg.data.src else Path(cfg.data.src).name


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(lambda: evaluate(cfg))


if __name__ == "__main__":
    main()
