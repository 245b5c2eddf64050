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
    from seq2seq_lit import multi30k

    src_lang = cfg.data.src_lang or hp_data.get("src_lang")
    tgt_lang = cfg.data.tgt_lang or hp_data.get("tgt_lang")
    if not (src_lang and tgt_lang):
        raise ConfigError("the checkpoint was not trained on Multi30k: set data.src and data.ref")
    root = Path(cfg.data.root)
    names = [multi30k.file_name(cfg.split, lang) for lang in (src_lang, tgt_lang)]
    multi30k.ensure_files(root, names, allow_download=cfg.split in multi30k.SPLITS[:3])
    return root / names[0], root / names[1]


def evaluate(cfg: DictConfig) -> dict:
    from seq2seq_lit.checkpoint import load_checkpoint
    from seq2seq_lit.corpus import read_parallel
    from seq2seq_lit.scoring import score_corpus, write_report
    from seq2seq_lit.translator import Translator

    require(cfg, "ckpt_path", "the checkpoint to evaluate, e.g. ckpt_path=RUN/checkpoints/last.ckpt")
    decoding = cast(EvaluateConfig, OmegaConf.to_object(cfg))  # an EvaluateConfig, which is a DecodingConfig
    decoding.n_best = 1
    decoding.check()
    ckpt = load_checkpoint(cfg.ckpt_path, cfg.device)
    data_hp = ckpt.data
    src_path, ref_path = source_and_reference(cfg, data_hp)
    sources, refs = read_parallel(src_path, ref_path)
    translator = Translator(ckpt.model, ckpt.src_tokenizer, ckpt.tgt_tokenizer, data_hp.get("max_length"))
    hyps = [h[0].text for h in translator.translate(sources, decoding)]
    report = {
        "ckpt_path": str(cfg.ckpt_path),
        "source": str(src_path),
        "reference": str(ref_path),
        "beam_size": cfg.beam_size,
        "alpha": cfg.alpha,
        "cased": score_corpus(hyps, refs),
        "lowercased": score_corpus(hyps, refs, lowercase=True),
    }
    name = cfg.split if not cfg.data.src else Path(cfg.data.src).name
    hyp_path, json_path = write_report(Path(cfg.output_dir), name, hyps, report)
    for case in ("cased", "lowercased"):
        r = report[case]
        print(f"BLEU ({case}) = {r['bleu']:.2f}  {r['bleu_signature']}")
        print(f"chrF ({case}) = {r['chrf']:.2f}  {r['chrf_signature']}")
    log.info("hypotheses: %s, report: %s", hyp_path, json_path)
    return report


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    exit_on_user_error(lambda: evaluate(cfg))


if __name__ == "__main__":
    main()
