"""Average the weights of checkpoints of one run: ``python -m seq2seq_lit.average -o OUT.ckpt IN.ckpt ...``.

The classic NMT trick (fairseq's ``average_checkpoints``, OpenNMT's ``average_models``): the mean of the
last epochs' weights usually translates a little better than any one of them. The result is for decoding
(``translate``, ``evaluate``): it keeps the tokenizers and hyper-parameters but no optimizer state, so it
does not resume training.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

import torch

from seq2seq_lit.checkpoint import architecture_differences, read_checkpoint
from seq2seq_lit.data.tokenizer import write_atomic
from seq2seq_lit.errors import CheckpointError, ConfigError, exit_on_user_error


def average_checkpoints(paths: list[str | Path]) -> dict[str, Any]:
    """The element-wise mean of the checkpoints' weights, with the first one's hyper-parameters and tokenizers.

    Every checkpoint must have the same architecture, tokenizers and weight names; the error names the one
    that differs.
    """
    if not paths:
        raise ConfigError("no checkpoints to average")
    first = read_checkpoint(paths[0])
    hparams, tokenizers = first["hyper_parameters"], first["tokenizers"]
    # Sum in float64 so the mean of many checkpoints rounds once, then store in each weight's own dtype.
    total = {k: v.double() for k, v in first["state_dict"].items()}
    for path in paths[1:]:
        ckpt = read_checkpoint(path)
        saved = ckpt["hyper_parameters"]
        diffs = [
            f"model.{k} ({saved.get(k)} there, {hparams.get(k)} here)" for k in architecture_differences(saved, hparams)
        ]
        diffs += [f"the {s} tokenizer" for s in ("src", "tgt") if not torch.equal(ckpt["tokenizers"][s], tokenizers[s])]
        if set(ckpt["state_dict"]) != set(total):
            diffs.append("the weight names")
        diffs += [
            f"the shape of {k}" for k, v in ckpt["state_dict"].items() if k in total and v.shape != total[k].shape
        ]
        if diffs:
            raise CheckpointError(
                f"{path}: differs from {paths[0]} in {', '.join(diffs)}; average checkpoints of one run"
            )
        for name, value in ckpt["state_dict"].items():
            total[name] += value.double()
    weights = {k: (v / len(paths)).to(first["state_dict"][k].dtype) for k, v in total.items()}
    return {
        "state_dict": weights,
        "hyper_parameters": hparams,
        "tokenizers": tokenizers,
        "averaged_from": [str(p) for p in paths],
    }


def write_average(checkpoints: list[Path], output: Path, force: bool) -> None:
    """Average ``checkpoints`` into ``output``, atomically; never over an input or (without ``force``) a file."""
    if output.exists() and not force:
        raise ConfigError(f"{output} exists; pass --force to replace it")
    if not output.parent.is_dir():
        raise ConfigError(f"{output}: no such directory {output.parent}")
    if output.resolve() in {p.resolve() for p in checkpoints}:
        raise ConfigError(f"{output} is one of the inputs; write the average elsewhere")
    buf = io.BytesIO()
    torch.save(average_checkpoints(list(checkpoints)), buf)
    write_atomic(output, buf.getvalue(), "checkpoint")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m seq2seq_lit.average", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoints of one run (e.g. the last epochs)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where to write the average")
    parser.add_argument("--force", action="store_true", help="replace --output if it exists")
    args = parser.parse_args(argv)
    exit_on_user_error(lambda: write_average(args.checkpoints, args.output, args.force))
    print(f"averaged {len(args.checkpoints)} checkpoints into {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
