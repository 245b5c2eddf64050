"""How much minimum risk training's risk term weighs against its MLE term, before any run is spent on it.

``python benchmarks/mrt_balance.py --ckpt CKPT --set "candidates=sample alpha=0.005" --set "candidates=beam ..."``

For each ``--set`` (``model.objective`` keys over ``model/objective=mrt``'s defaults), on the same first
``--sentences`` training pairs of Multi30k and the checkpoint's weights: the norms of the gradients of
``mle_weight * MLE`` and ``(1 - mle_weight) * risk`` over the network's parameters, their ratio and cosine, the
risk and the candidates' mean metric. A ratio far below 1 means the run is MLE fine-tuning whatever its risk does.
"""

from __future__ import annotations

import argparse
import gzip
import os
from pathlib import Path

import torch
from omegaconf import OmegaConf

from seq2seq_lit.checkpoint import InitFrom, read_checkpoint
from seq2seq_lit.config import ObjectiveConfig
from seq2seq_lit.module import TranslationModule, masked_nll
from seq2seq_lit.objectives import check_objective
from seq2seq_lit.translator import parallel_batch


def first_pairs(root: Path, src_lang: str, tgt_lang: str, n: int) -> tuple[list[str], list[str]]:
    """The first ``n`` training pairs of Multi30k (the official gzipped files under ``root``)."""
    with gzip.open(root / f"train.{src_lang}.gz", "rt") as s, gzip.open(root / f"train.{tgt_lang}.gz", "rt") as t:
        return [next(s).rstrip("\n") for _ in range(n)], [next(t).rstrip("\n") for _ in range(n)]


def balance(start: InitFrom, objective: dict, sources: list[str], targets: list[str]) -> dict[str, float]:
    """The two terms' gradient norms, ratio and cosine, the risk and the candidates' mean metric, for one setting,
    on the network an ``init_from`` run of that setting would start with."""
    saved = start.ckpt["hyper_parameters"]
    hparams = {k: v for k, v in saved.items() if k not in ("src_vocab_size", "tgt_vocab_size")}
    hparams["objective"] = objective
    module = TranslationModule(saved["src_vocab_size"], saved["tgt_vocab_size"], **hparams)
    start.load_into(module)
    src_tokenizer, tgt_tokenizer = start.tokenizers()
    module.set_tokenizers(src_tokenizer, tgt_tokenizer)
    module.train()
    torch.manual_seed(0)  # the same dropout masks and samples for every setting
    batch = parallel_batch(sources, targets, src_tokenizer, tgt_tokenizer, torch.device("cpu"))
    params = [p for p in module.model.parameters() if p.requires_grad]
    weight = objective["mle_weight"]
    log_probs = module(batch["src"], batch["src_lengths"], batch["tgt"][:, :-1])
    loss_sum, _, n_tokens = masked_nll(log_probs, batch["tgt"][:, 1:], hparams["label_smoothing"])
    risk, metric = module.minimum_risk(batch)

    def flat_grad(loss: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
        return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])

    g_mle, g_risk = flat_grad(weight * loss_sum / n_tokens), flat_grad((1 - weight) * risk)
    return {
        "mle_grad": g_mle.norm().item(),
        "risk_grad": g_risk.norm().item(),
        "ratio": (g_risk.norm() / g_mle.norm()).item(),
        "cosine": torch.nn.functional.cosine_similarity(g_mle, g_risk, dim=0).item(),
        "risk": risk.item(),
        "metric": metric.item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a translation checkpoint (either family)")
    parser.add_argument("--set", action="append", required=True, help='model.objective keys, e.g. "alpha=0.05"')
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--data", default=os.environ.get("SEQ2SEQ_LIT_DATA", "../shared/data") + "/multi30k")
    args = parser.parse_args()
    start = InitFrom(Path(args.ckpt), read_checkpoint(args.ckpt, key="--ckpt"))
    data = start.ckpt["hyper_parameters"].get("data") or {}
    sources, targets = first_pairs(Path(args.data), data.get("src_lang", "en"), data.get("tgt_lang", "de"),
                                   args.sentences)  # fmt: skip
    defaults = OmegaConf.structured(ObjectiveConfig(name="mrt"))
    settings = {
        s: OmegaConf.to_container(OmegaConf.merge(defaults, OmegaConf.from_dotlist(s.split()))) for s in args.set
    }
    for objective in settings.values():
        check_objective(objective)  # type: ignore[arg-type]
    for setting, objective in settings.items():
        r = balance(start, objective, sources, targets)  # type: ignore[arg-type]
        print(
            f"{setting}: |grad mle| {r['mle_grad']:.4g}  |grad risk| {r['risk_grad']:.4g}  ratio {r['ratio']:.3g}  "
            f"cosine {r['cosine']:.3f}  risk {r['risk']:.3f}  candidates' {objective['metric']} {r['metric']:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
