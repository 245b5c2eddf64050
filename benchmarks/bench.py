"""Benchmark harness: ``python benchmarks/bench.py [--quick] [--json PATH] [--ckpt PATH] [--device cuda]``.

Measures, in one process, on real Multi30k en->de batches with the reference configuration
(word_vec_size=256, hidden_size=512, n_layers=2, BPE 8000 per side, 64-sentence batches): training
throughput through the Lightning Trainer (fp32, bf16-mixed) and in a bare PyTorch loop, decoding speed,
padding efficiency, peak RSS, the machine's matmul ceilings and model-FLOPs utilisation, the decoding
speeds those ceilings allow, the speeds the matmuls alone would allow (on the CPU), the start-up time of
``python -m seq2seq_lit.train --help``, and the speed of the textbook implementation of the same model and
search (``textbook.py``) in the same run.
Prints a Markdown table; writes JSON with --json.
``--device cuda`` runs the model, the ceilings and the decoding on the GPU (timings synchronise the device).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
REF = {"word_vec_size": 256, "hidden_size": 512, "n_layers": 2, "dropout": 0.3, "vocab_size": 8000, "batch_size": 64}
# The Transformer recipe's network (experiment=multi30k_en_de_transformer) on the same vocabularies.
TRANSFORMER = {
    "hidden_size": 256, "n_layers": 3, "n_heads": 4, "ffn_size": 1024, "dropout": 0.3, "attention_dropout": 0.1,
    "tie_embeddings": True,
}  # fmt: skip
TARGETS = {
    "train_tok_s_fp32": (">=", 2000),
    "bf16_speedup": (">=", 1.6),
    "greedy_sent_s": (">=", 800),
    "beam5_sent_s": (">=", 300),
    "lightning_overhead": ("<=", 0.03),
    "padding_efficiency": (">=", 0.95),
    "help_s": ("<=", 2.0),
    "peak_rss_mb": ("<=", 2048),
    "transformer_beam5_speedup_vs_rnn": (">=", 2.0),
}


@contextmanager
def stage(stages: dict[str, float], name: str):
    """Record how long the harness spent in one of its parts (the ``stage_s`` figures)."""
    start = time.perf_counter()
    yield
    stages[name] = round(time.perf_counter() - start, 1)


def sync(device: str) -> None:
    """Wait for the device's queued work, so wall-clock timings cover it (a no-op on the CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_gflops(dtype: torch.dtype, device: str = "cpu", reps: int = 20) -> float:
    n = 8192 if device.startswith("cuda") else 2048  # a GPU needs a larger product to reach its peak
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    # The best of the repetitions: a ceiling, and the VM's neighbours only ever slow a repetition down.
    return 2 * n**3 / min(times) / 1e9


def train_flops(batch: dict, vocab: int, wvs: int, hs: int, layers: int) -> float:
    """Forward + backward FLOPs of one batch (3x the forward matmul FLOPs), counted from the real lengths."""
    src_tokens = float(batch["src_lengths"].sum())
    tgt_tokens = float((batch["tgt"][:, 1:] != 0).sum())
    src_len = batch["src"].size(1)
    half = hs // 2
    enc = sum(2 * 2 * 4 * half * ((wvs if layer == 0 else hs) + half) for layer in range(layers)) * src_tokens
    keys = 2 * hs * hs * src_tokens
    dec_rnn = sum(2 * 4 * hs * ((wvs + hs if layer == 0 else hs) + hs) for layer in range(layers))
    dec = (dec_rnn + 2 * 2 * src_len * hs + 2 * 2 * hs * hs + 2 * hs * vocab) * tgt_tokens
    return 3 * (enc + keys + dec)


def target_tokens(batch: dict) -> int:
    return int((batch["tgt"][:, 1:] != 0).sum())


def family_hparams(family: str) -> dict:
    """The hyper-parameters of the benchmarked network of a family: the RNN reference, the Transformer recipe."""
    from seq2seq_lit.config import RNNConfig, TransformerConfig, schema_defaults

    if family == "rnn":
        return {**schema_defaults(RNNConfig), **{k: REF[k] for k in ("word_vec_size", "hidden_size", "n_layers")},
                "dropout": REF["dropout"]}  # fmt: skip
    return {**schema_defaults(TransformerConfig), **TRANSFORMER}


def lightning_throughput(
    dm, batches: list, precision: str, steps: int, device: str = "cpu", family: str = "rnn"
) -> tuple[float, float]:
    """Median target tokens/s per step, and the median step time, through the real Trainer."""
    import lightning as L

    from seq2seq_lit.module import TranslationModule

    class Timer(L.Callback):
        def __init__(self) -> None:
            self.rates: list[float] = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            sync(device)
            self.t = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            sync(device)
            self.rates.append(target_tokens(batch) / (time.perf_counter() - self.t))

    torch.manual_seed(0)
    hparams = family_hparams(family)
    hparams["decoding"]["val_bleu"] = False
    module = TranslationModule(len(dm.src_tokenizer), len(dm.tgt_tokenizer), **hparams)
    timer = Timer()
    trainer = L.Trainer(
        max_steps=steps, precision=precision, gradient_clip_val=5.0, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
        accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1,
    )  # fmt: skip
    # batch_size=None: the loader hands out the prepared batches unchanged, in order.
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return statistics.median(timer.rates[3:]), statistics.median(1 / r for r in timer.rates[3:])


def reference_model(dm, dropout: float = REF["dropout"], family: str = "rnn"):
    """The reference Seq2Seq (or the Transformer recipe's network), sized to the DataModule's vocabularies."""
    from seq2seq_lit.models import build_model

    sizes = {"src_vocab_size": len(dm.src_tokenizer), "tgt_vocab_size": len(dm.tgt_tokenizer)}
    return build_model({**family_hparams(family), **sizes, "dropout": dropout})


def bare_step(model, opt: torch.optim.Optimizer, batch: dict, bf16: bool = False, forward=None) -> None:
    """One training step as the Trainer runs it (masked NLL, clipping at 5, Adam), in plain PyTorch.

    ``forward(model, src, src_lengths, tgt_in)`` replaces the model's own (``textbook.forward``)."""
    from seq2seq_lit.module import masked_nll

    with torch.autocast(batch["src"].device.type, dtype=torch.bfloat16, enabled=bf16):
        args = (batch["src"], batch["src_lengths"], batch["tgt"][:, :-1])
        log_probs = forward(model, *args) if forward is not None else model(*args)
        loss_sum, _, n = masked_nll(log_probs, batch["tgt"][:, 1:])
    (loss_sum / n).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()
    opt.zero_grad()


def bare_throughput(dm, batches: list, steps: int, device: str = "cpu", forward=None, family: str = "rnn") -> float:
    """Median target tokens/s of the same model, batches, optimizer and clipping in a plain PyTorch loop
    (through ``forward``, as in ``bare_step``, where given)."""
    torch.manual_seed(0)
    model = reference_model(dm, family=family).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rates = []
    for batch in batches[:steps]:
        # Lightning moves each batch to the device inside the step it times, so the bare loop does too.
        sync(device)
        t = time.perf_counter()
        bare_step(model, opt, {k: v.to(device) for k, v in batch.items()}, forward=forward)
        sync(device)
        rates.append(target_tokens(batch) / (time.perf_counter() - t))
    return statistics.median(rates[3:])


def training_rss_mb(args: argparse.Namespace, steps: int, family: str = "rnn") -> float:
    """Peak RSS of a training run on its own: a child process that sets up the data and trains ``steps`` steps."""
    # VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across fork + exec.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import bench; "
        "dm, batches = bench.reference_batches(*sys.argv[2:4], int(sys.argv[4])); "
        "bench.lightning_throughput(dm, batches, '32-true', int(sys.argv[4]), sys.argv[5], sys.argv[6]); "
        "print(next(line for line in open('/proc/self/status') if line.startswith('VmHWM:')).split()[1])"
    )
    cmd = [sys.executable, "-c", code, str(Path(__file__).parent), str(args.data), str(args.cache), str(steps)]
    cmd += [args.device, family]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024


def profile_tables(
    dm, batches: list, translator, sentences: list[str], device: str = "cpu", rows: int = 12, bf16: bool = True
) -> str:
    """torch.profiler tables of training steps in fp32 and bf16 and of greedy decoding: self CPU time per op,
    or self CUDA time on a GPU."""
    from torch.profiler import ProfilerActivity, profile

    from seq2seq_lit.config import DecodingConfig

    model = reference_model(dm).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    on_device = [{k: v.to(device) for k, v in batch.items()} for batch in batches[:5]]
    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])

    def train_steps(bf16: bool) -> None:
        for batch in on_device:
            bare_step(model, opt, batch, bf16)

    sections = []
    works = [
        ("training, fp32, 5 steps of 64 sentences", lambda: train_steps(False)),
        ("training, bf16 autocast, 5 steps of 64 sentences", lambda: train_steps(True)),
        (
            "greedy decoding, fp32, 200 sentences",
            lambda: translator.translate(sentences[:200], DecodingConfig(beam_size=1)),
        ),
    ]
    for title, work in works if bf16 else works[::2]:
        work()  # warm-up
        with profile(activities=activities) as prof:
            work()
            sync(device)
        sort_by = "self_device_time_total" if cuda else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort_by, row_limit=rows, max_name_column_width=40)
        sections.append(f"### {title}\n\n```\n{table}```\n")
    return "\n".join(sections)


def reference_batches(data: str, cache: str, steps: int) -> tuple:
    """The Multi30k en->de DataModule of the reference configuration and its first ``steps`` training batches."""
    from seq2seq_lit.config import Multi30kConfig, schema_defaults
    from seq2seq_lit.data.datamodule import Multi30kDataModule

    settings = {
        "seed": 0,
        "root": str(data),
        "cache_dir": str(cache),
        "vocab_size": REF["vocab_size"],
        "spm_model_type": "bpe",
        "max_tokens": None,
        "batch_size": REF["batch_size"],
        "download": False,
    }
    dm = Multi30kDataModule(**schema_defaults(Multi30kConfig) | settings)
    dm.setup("fit")
    return dm, [b for _, b in zip(range(steps), dm.train_dataloader())]


# The matrix products of a step: per-step and batched matmuls, and the encoder's fused oneDNN LSTM layers.
MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::mkldnn_rnn_layer", "aten::mkldnn_rnn_layer_backward"}
# Element-wise work that training this model with Adam and clipping needs however it is written: dropout's
# random masks, the log-softmax, the gates' and the attentional vector's sigmoid/tanh (forward and backward),
# Adam's update of each parameter and the gradient norm.
REQUIRED_TRAINING_OPS = {
    "aten::bernoulli_", "aten::_log_softmax", "aten::_log_softmax_backward_data", "aten::sigmoid", "aten::tanh",
    "aten::sigmoid_backward", "aten::tanh_backward", "aten::sqrt", "aten::addcdiv_", "aten::lerp_",
    "aten::addcmul_", "aten::mul_", "aten::div_", "aten::linalg_vector_norm",
}  # fmt: skip
# The same for decoding: the log-softmax over the vocabulary (the scores need it), picking the best words
# (argmax or top-k), the attention's softmax and the gates' sigmoid/tanh (in place in the encoder's LSTM).
REQUIRED_DECODING_OPS = {
    "aten::_log_softmax", "aten::max", "aten::topk", "aten::_softmax", "aten::sigmoid", "aten::sigmoid_",
    "aten::tanh", "aten::tanh_",
}  # fmt: skip
# Sentences decoded under the profiler for the matmul shares, by ``--quick``.
PROFILED_SENTENCES = {False: 1000, True: 40}


def time_shares(work, groups: dict[str, set[str]]) -> dict[str, float]:
    """Per group of ops, the share of ``work()``'s wall-clock time spent in them (after one warm-up run).

    A workload's speed divided by its matmul share is the speed it would reach if everything else
    (element-wise ops, indexing, the optimizer, Python) took no time: a bound that code around the matmuls
    cannot beat. Both times come from the same profiled run, so the VM's changing speed cancels out; the
    profiler's own cost lands outside the ops, so the shares are if anything low and the bounds high.
    """
    from torch.profiler import profile

    work()
    with profile() as prof:
        start = time.perf_counter()
        work()
        wall = time.perf_counter() - start
    self_s = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    return {name: sum(self_s.get(op, 0.0) for op in ops) / wall for name, ops in groups.items()}


def decoding_config(beam: int, bf16: bool = False):
    """The decoding settings of every decoding figure: beam 1 (greedy) or 5, batches of 4,096 source tokens."""
    from seq2seq_lit.config import DecodingConfig

    return DecodingConfig(beam_size=beam, max_tokens=4096, bf16=bf16)


def matmul_bounds(res: dict, dm, batches: list, translator, sentences: list[str], bf16: bool = True) -> None:
    """Add the matmul shares of fp32 training (bare loop, ``batches`` after the first 3) and of greedy and
    beam-5 decoding of ``sentences`` to ``res``, with the speeds they bound; and the shares of the work each
    needs besides the matmuls (``REQUIRED_*_OPS``), with the speeds matmuls and that work together bound."""
    model = reference_model(dm).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    training_groups = {"matmul": MATMUL_OPS, "required": REQUIRED_TRAINING_OPS}
    train = time_shares(lambda: [bare_step(model, opt, batch) for batch in batches[3:]], training_groups)
    res["matmul_share_train_fp32"] = train["matmul"]
    res["train_tok_s_fp32_matmul_bound"] = res["train_tok_s_fp32"] / train["matmul"]
    res["required_share_train_fp32"] = train["required"]
    res["train_tok_s_fp32_required_bound"] = res["train_tok_s_fp32"] / (train["matmul"] + train["required"])
    decoding_bounds(res, translator, sentences, {"matmul": MATMUL_OPS, "required": REQUIRED_DECODING_OPS}, bf16)


def decoding_bounds(
    res: dict, translator, sentences: list[str], groups: dict[str, set[str]], bf16: bool, prefix: str = ""
) -> None:
    """Add the shares of greedy and beam-5 decoding of ``sentences`` spent in each of ``groups`` (``matmul``,
    optionally ``required``) to ``res`` (keys after ``prefix``), with the speeds the matmuls, and the matmuls
    and the required work together, bound; fp32, and bf16 autocast too with ``bf16``."""
    for name, beam in (("greedy", 1), ("beam5", 5)):
        for suffix, autocast in (("", False), ("_bf16", True))[: 2 if bf16 else 1]:
            cfg = decoding_config(beam, autocast)
            share = time_shares(lambda cfg=cfg: translator.translate(sentences, cfg), groups)
            speed = res[f"{prefix}{name}_sent_s{suffix}"]
            for group, value in share.items():
                res[f"{prefix}{group}_share_{name}{suffix}"] = value
            res[f"{prefix}{name}_sent_s{suffix}_matmul_bound"] = speed / share["matmul"]
            if "required" in share:
                res[f"{prefix}{name}_sent_s{suffix}_required_bound"] = speed / (share["matmul"] + share["required"])


def decoding_ceilings(res: dict, translator, sentences: list[str], prefix: str = "") -> None:
    """Add the matrix-product FLOPs per sentence of greedy and beam-5 decoding (encoder included, counted by
    ``FlopCounterMode`` on the real search) to ``res`` (keys after ``prefix``), and the speeds they allow at the
    measured ceilings: the speed if every product ran at the peak of a 2048^2 one and nothing else took any time.
    On a GPU the encoder's cuDNN LSTM escapes the count, so the figure there is lower than the CPU's."""
    from torch.utils.flop_counter import FlopCounterMode

    for name, beam in (("greedy", 1), ("beam5", 5)):
        with FlopCounterMode(display=False) as counter:
            translator.translate(sentences, decoding_config(beam))
        flops = counter.get_total_flops() / len(sentences)
        res[f"{prefix}{name}_flops_per_sentence"] = flops
        for precision in ("fp32", "bf16")[: 2 if "matmul_gflops_bf16" in res else 1]:
            res[f"{prefix}{name}_sent_s_ceiling_{precision}"] = res[f"matmul_gflops_{precision}"] * 1e9 / flops


def timed_pass(search, sentences: list[str], device: str = "cpu") -> tuple[float, list]:
    """Sentences per second of one ``search(sentences)`` pass (the device synchronised), and its output."""
    sync(device)
    t = time.perf_counter()
    out = search(sentences)
    sync(device)
    return len(sentences) / (time.perf_counter() - t), out


def decoding_speed(translator, sentences: list[str], beam: int, bf16: bool = False, device: str = "cpu") -> float:
    cfg = decoding_config(beam, bf16)
    translator.translate(sentences[:64], cfg)  # warm-up
    return statistics.median(timed_pass(lambda lines: translator.translate(lines, cfg), sentences, device)[0]
                             for _ in range(2))  # fmt: skip


def decoding_against_textbook(translator, sentences: list[str], beam: int, device: str = "cpu") -> dict[str, float]:
    """Sentences/s of our search and of the textbook one (``textbook.py``) on the same model, in alternating
    passes (2 each, median), and the share of sentences both translate identically."""
    import textbook

    cfg = decoding_config(beam)
    searches = {
        "ours": lambda lines: [hyps[0].text for hyps in translator.translate(lines, cfg)],
        "textbook": lambda lines: textbook.translate(translator, lines, cfg),
    }
    speeds: dict[str, list[float]] = {name: [] for name in searches}
    outputs = {}
    for search in searches.values():
        search(sentences[:64])  # warm-up
    for i in range(2):
        for name in searches if i % 2 == 0 else reversed(searches):
            speed, outputs[name] = timed_pass(searches[name], sentences, device)
            speeds[name].append(speed)
    same = sum(a == b for a, b in zip(outputs["ours"], outputs["textbook"])) / len(sentences)
    return {"ours": statistics.median(speeds["ours"]), "textbook": statistics.median(speeds["textbook"]), "same": same}


def help_seconds() -> float:
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "seq2seq_lit.train", "--help"], check=True, capture_output=True)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def newest_recipe_checkpoint(task: str = "multi30k_en_de") -> Path | None:
    found = sorted(ROOT.glob(f"logs/{task}/runs/*/checkpoints/epoch_*.ckpt"), key=os.path.getmtime)
    return found[-1] if found else None


def counted_train_flops(model, batch: dict) -> float:
    """FLOPs of one training step's forward and backward, counted by ``FlopCounterMode`` (matmuls and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    from seq2seq_lit.module import masked_nll

    with FlopCounterMode(display=False) as counter:
        log_probs = model(batch["src"], batch["src_lengths"], batch["tgt"][:, :-1])
        loss_sum, _, n = masked_nll(log_probs, batch["tgt"][:, 1:])
        (loss_sum / n).backward()
    model.zero_grad()
    return counter.get_total_flops()


class WithoutCache(torch.nn.Module):
    """A Transformer decoded without its key/value cache: every step runs the decoder over the whole prefix
    again (the source's keys/values still once), to show what the cache buys."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model, self.has_attention = model, True

    def encode(self, src, src_lengths):
        return self.model.encode(src, src_lengths), src.new_empty(src.size(0), 0)

    def decode(self, y, state, need_attention=False):
        start, prefix = state
        prefix = torch.cat([prefix, y], 1)
        log_probs, attention, _ = self.model.decode(prefix, start, need_attention)
        attention = attention[:, -y.size(1) :] if attention is not None else None
        return log_probs[:, -y.size(1) :], attention, (start, prefix)

    def reorder_state(self, state, index):
        start, prefix = state
        return self.model.reorder_state(start, index), prefix.index_select(0, index)


def transformer_figures(res: dict, dm, batches: list, steps: int, sentences: list[str], args) -> None:
    """The Transformer recipe's network beside the RNN reference, in the same run: training tok/s (fp32 and
    bf16-mixed) and MFU, greedy and beam-5 sentences/s with the cache and without it, their ratio to the RNN
    figures above, and (on a CPU) the ratio its matmul bound allows. The Transformer recipe checkpoint
    (``--transformer-ckpt``, or the newest under logs/) decodes when the RNN figures come from a trained checkpoint
    too; otherwise both families' untrained networks decode (and the checkpoint's speed is added as
    ``*_recipe_ckpt``)."""
    from seq2seq_lit.translator import Translator

    fp32 = lightning_throughput(dm, batches, "32-true", steps, args.device, family="transformer")[0]
    res["transformer_train_tok_s_fp32"] = fp32
    if args.bf16:
        bf16 = lightning_throughput(dm, batches, "bf16-mixed", steps, args.device, family="transformer")[0]
        res["transformer_train_tok_s_bf16"] = bf16
    model = reference_model(dm, family="transformer").to(args.device).train()
    flops = statistics.median(
        counted_train_flops(model, {k: v.to(args.device) for k, v in b.items()}) / target_tokens(b) for b in batches[:5]
    )
    res["transformer_train_flops_per_tgt_token"] = flops
    res["transformer_mfu_fp32"] = fp32 * flops / (res["matmul_gflops_fp32"] * 1e9)
    if args.bf16:
        res["transformer_mfu_bf16"] = bf16 * flops / (res["matmul_gflops_bf16"] * 1e9)
    ckpt = args.transformer_ckpt or newest_recipe_checkpoint("multi30k_en_de_transformer")
    untrained = Translator(model.eval(), dm.src_tokenizer, dm.tgt_tokenizer, 100)
    # Like against like: trained recipe models on both sides, or both untrained networks (every output to the
    # length limit: the same number of steps for both families).
    rnn_trained = not str(res["decoding_model"]).startswith("untrained")
    translator = Translator.from_checkpoint(ckpt, args.device) if ckpt is not None and rnn_trained else untrained
    res["transformer_decoding_model"] = str(ckpt) if translator is not untrained else "untrained recipe network"
    uncached = Translator(WithoutCache(translator.model), translator.src_tokenizer, translator.tgt_tokenizer, 100)
    for name, beam in (("greedy", 1), ("beam5", 5)):
        res[f"transformer_{name}_sent_s"] = decoding_speed(translator, sentences, beam, device=args.device)
        if args.bf16:
            res[f"transformer_{name}_sent_s_bf16"] = decoding_speed(translator, sentences, beam, True, args.device)
        res[f"transformer_{name}_sent_s_no_cache"] = decoding_speed(uncached, sentences, beam, device=args.device)
        if ckpt is not None and not rnn_trained:
            trained = Translator.from_checkpoint(ckpt, args.device)
            res[f"transformer_{name}_sent_s_recipe_ckpt"] = decoding_speed(trained, sentences, beam, device=args.device)
        res[f"transformer_{name}_speedup_vs_rnn"] = res[f"transformer_{name}_sent_s"] / res[f"{name}_sent_s"]
    if args.device == "cpu":  # the profiler's times are CPU times
        # The Transformer's speed if only its matrix products took time, against the RNN's measured speed: the
        # most its decoding could gain over the RNN's without doing fewer multiply-adds.
        profiled = sentences[: PROFILED_SENTENCES[args.quick]]
        decoding_bounds(res, translator, profiled, {"matmul": MATMUL_OPS}, bf16=False, prefix="transformer_")
        for name in ("greedy", "beam5"):
            res[f"transformer_{name}_speedup_vs_rnn_matmul_bound"] = (
                res[f"transformer_{name}_sent_s_matmul_bound"] / res[f"{name}_sent_s"]
            )
    decoding_ceilings(res, translator, sentences, "transformer_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and sentences (under two minutes)")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("SEQ2SEQ_LIT_TEST_DATA", ROOT.parent / "shared/data/multi30k"))
    )
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "seq2seq_lit")
    parser.add_argument(
        "--ckpt", type=Path, help="trained checkpoint for the decoding figures (default: newest recipe run)"
    )
    parser.add_argument("--transformer-ckpt", type=Path, help="Transformer checkpoint for its decoding figures")
    parser.add_argument("--profile", type=Path, help="also write torch.profiler tables (Markdown) here")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the model, the ceilings and decoding)")
    args = parser.parse_args()

    from seq2seq_lit.data.sampler import BucketBatchSampler
    from seq2seq_lit.precision import has_bf16
    from seq2seq_lit.translator import Translator

    # A CPU without bfloat16 in oneDNN (AVX2 only) has no bf16 LSTM and a crawling bf16 matmul: fp32 figures only.
    args.bf16 = has_bf16(args.device)

    steps = 10 if args.quick else 40
    stages: dict[str, float] = {}
    with stage(stages, "data"):
        dm, batches = reference_batches(args.data, args.cache, steps)
    res: dict[str, float | str] = {}

    src, tgt = dm.datasets["train"].lengths()
    sampler = BucketBatchSampler(src, tgt, max_tokens=None, batch_size=REF["batch_size"], seed=0)
    real = sum(int(src[b].sum() + tgt[b].sum()) for b in sampler)
    positions = sum(len(b) * int(src[b].max() + tgt[b].max()) for b in sampler)
    res["padding_efficiency"] = real / positions

    # The VM's speed moves by tens of percent from minute to minute. So the ceilings are read before and
    # after every round (their best reading counts), and each round runs Lightning fp32, the bare loop and
    # Lightning bf16 back to back, in reverse order every other round so a steady drift favours none: the
    # overhead and the bf16 speedup are medians of per-round ratios of runs a minute apart.
    import textbook

    runs = {
        "fp32": lambda: lightning_throughput(dm, batches, "32-true", steps, args.device)[0],
        "bare": lambda: bare_throughput(dm, batches, steps, args.device),
        "bf16": lambda: lightning_throughput(dm, batches, "bf16-mixed", steps, args.device)[0],
        "textbook": lambda: bare_throughput(dm, batches, steps, args.device, forward=textbook.forward),
    }
    if not args.bf16:
        del runs["bf16"]
    with stage(stages, "training"):
        reps = 10 if args.quick else 20

        def read_ceilings() -> tuple[float, float]:
            bf16 = matmul_gflops(torch.bfloat16, args.device, reps) if args.bf16 else float("nan")
            return matmul_gflops(torch.float32, args.device, reps), bf16

        ceilings = [read_ceilings()]
        rounds = []
        for i in range(1 if args.quick else 4):
            order = list(runs) if i % 2 == 0 else list(runs)[::-1]
            measured = {name: runs[name]() for name in order}
            rounds.append({name: measured[name] for name in runs})
            ceilings.append(read_ceilings())
    res["matmul_gflops_fp32"] = max(c[0] for c in ceilings)
    if args.bf16:
        res["matmul_gflops_bf16"] = max(c[1] for c in ceilings)
    res["train_tok_s_fp32"] = statistics.median(r["fp32"] for r in rounds)
    res["train_tok_s_bare_fp32"] = statistics.median(r["bare"] for r in rounds)
    res["lightning_overhead"] = statistics.median(1 - r["fp32"] / r["bare"] for r in rounds)
    if args.bf16:
        res["train_tok_s_bf16"] = statistics.median(r["bf16"] for r in rounds)
        res["bf16_speedup"] = statistics.median(r["bf16"] / r["fp32"] for r in rounds)
    else:
        res["bf16"] = f"not measured: no bfloat16 in oneDNN on this CPU ({torch.backends.cpu.get_cpu_capability()})"
    res["train_tok_s_textbook_fp32"] = statistics.median(r["textbook"] for r in rounds)
    # Both plain loops: the same model, batches and optimizer, only the decoder's time loop differs.
    res["speedup_vs_textbook_train_fp32"] = statistics.median(r["bare"] / r["textbook"] for r in rounds)
    res["rounds_tok_s"] = [{name: round(x) for name, x in r.items()} for r in rounds]
    dims = (len(dm.tgt_tokenizer), REF["word_vec_size"], REF["hidden_size"], REF["n_layers"])
    flops_per_tok = statistics.median(train_flops(b, *dims) / target_tokens(b) for b in batches)
    res["train_flops_per_tgt_token"] = flops_per_tok
    res["mfu_fp32"] = res["train_tok_s_fp32"] * flops_per_tok / (res["matmul_gflops_fp32"] * 1e9)
    if args.bf16:
        res["mfu_bf16"] = res["train_tok_s_bf16"] * flops_per_tok / (res["matmul_gflops_bf16"] * 1e9)

    ckpt = args.ckpt or newest_recipe_checkpoint()
    test_src = dm.sources("test_2016_flickr", list(range(150 if args.quick else 1000)))
    if ckpt is not None:
        translator = Translator.from_checkpoint(ckpt, args.device)
        res["decoding_model"] = str(ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT) else ckpt)
    else:  # an untrained model runs every output to the length limit: a pessimistic figure
        model = reference_model(dm, dropout=0.0).to(args.device).eval()
        translator = Translator(model, dm.src_tokenizer, dm.tgt_tokenizer, 100)
        res["decoding_model"] = "untrained reference model (outputs run to the length limit)"
    with stage(stages, "decoding"):
        for name, beam in (("greedy", 1), ("beam5", 5)):
            pair = decoding_against_textbook(translator, test_src, beam, args.device)
            res[f"{name}_sent_s"], res[f"{name}_sent_s_textbook"] = pair["ours"], pair["textbook"]
            res[f"speedup_vs_textbook_{name}"] = pair["ours"] / pair["textbook"]
            res[f"same_output_as_textbook_{name}"] = pair["same"]
        if args.bf16:
            res["greedy_sent_s_bf16"] = decoding_speed(translator, test_src, 1, bf16=True, device=args.device)
            res["beam5_sent_s_bf16"] = decoding_speed(translator, test_src, 5, bf16=True, device=args.device)
    with stage(stages, "transformer"):
        transformer_figures(res, dm, batches, steps, test_src, args)
    with stage(stages, "decoding_ceilings"):
        decoding_ceilings(res, translator, test_src)
    if args.device == "cpu":
        steps_profiled, sentences_profiled = 2 if args.quick else 10, PROFILED_SENTENCES[args.quick]
        with stage(stages, "matmul_bounds"):
            matmul_bounds(res, dm, batches[: 3 + steps_profiled], translator, test_src[:sentences_profiled], args.bf16)
    with stage(stages, "help"):
        res["help_s"] = help_seconds()
    with stage(stages, "peak_rss"):
        res["peak_rss_mb"] = training_rss_mb(args, 6 if args.quick else steps)
        res["transformer_peak_rss_mb"] = training_rss_mb(args, 6 if args.quick else steps, "transformer")
    res["peak_rss_mb_harness"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu = platform.processor() or platform.machine()
    res["machine"] = f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if args.device.startswith("cuda"):
        res["machine"] += f", {torch.cuda.get_device_name()}"
        res["peak_gpu_mem_mb_harness"] = torch.cuda.max_memory_allocated() / 2**20
    res["quick"] = args.quick
    res["stage_s"] = stages  # where the harness's own time went

    print("| figure | value | target |\n| --- | --- | --- |")
    for key, value in res.items():
        target = TARGETS.get(key)
        shown = (
            f"{value:,.3f}"
            if isinstance(value, float) and abs(value) < 10
            else (f"{value:,.0f}" if isinstance(value, float) else str(value))
        )
        met = ""
        if target:
            op, bound = target
            met = f"{op} {bound} " + ("(met)" if (value >= bound if op == ">=" else value <= bound) else "(not met)")
        print(f"| {key} | {shown} | {met} |")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if args.profile:
        args.profile.write_text(profile_tables(dm, batches, translator, test_src, args.device, bf16=args.bf16))


if __name__ == "__main__":
    main()
