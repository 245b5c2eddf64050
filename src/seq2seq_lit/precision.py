"""bfloat16 on CPUs that lack it: the recipes train under ``trainer.precision=bf16-mixed``, which oneDNN runs
only on CPUs with AVX-512 or AMX. Elsewhere (AVX2 laptops and VMs) a bfloat16 matmul falls back to a reference
kernel far slower than float32 and the LSTM has no bfloat16 kernel at all, so such runs use float32 instead.
"""

from __future__ import annotations

import functools
import logging

import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether oneDNN computes bfloat16 on this CPU (AVX-512 or AMX), as bf16 autocast on the CPU needs."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else True


def has_bf16(device: torch.device | str) -> bool:
    """Whether bfloat16 runs on ``device``: any accelerator, a CPU only with bfloat16 in oneDNN."""
    return torch.device(device).type != "cpu" or cpu_has_bf16()


def autocast_bf16(requested: bool, device: torch.device | str, key: str) -> bool:
    """Whether to run under bfloat16 autocast: ``requested`` unless ``device`` is a CPU without bf16 (warned
    once, naming the config ``key``)."""
    if not requested or has_bf16(device):
        return requested
    _warn_float32(key, "true")
    return False


def _trains_on_cpu(accelerator: str | None) -> bool:
    if accelerator in (None, "auto"):
        return not torch.cuda.is_available() and not torch.backends.mps.is_available()
    return accelerator == "cpu"


def resolve_precision(trainer: DictConfig) -> None:
    """Set ``trainer.precision`` to 32-true for a bf16 precision on a CPU without bf16, with a warning."""
    precision = str(trainer.get("precision"))
    if "bf16" not in precision or not _trains_on_cpu(trainer.get("accelerator")) or cpu_has_bf16():
        return
    _warn_float32("trainer.precision", precision)
    trainer.precision = "32-true"


@functools.cache
def _warn_float32(key: str, value: str) -> None:
    log.warning(
        "%s=%s: this CPU (%s) has no bfloat16 in oneDNN, which needs AVX-512 or AMX; bfloat16 would be far slower "
        "than float32 and the LSTM has no bfloat16 kernel, so float32 is used instead",
        key,
        value,
        torch.backends.cpu.get_cpu_capability(),
    )
