"""Device choice, mixed precision and process-level speed settings."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

import torch

# glibc returns freed memory to the OS eagerly; conv nets re-allocate the same large buffers every
# step, so keeping them (no mmap, no trimming) roughly halves CPU step time (see docs/benchmarks.md).
TUNED_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}
NO_TUNING_FLAG = "UNETPP_NO_MALLOC_TUNING"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICE_HELP = "auto, cpu, cuda, cuda:1, mps"
PRECISION_HELP = "auto: bf16 autocast on CPUs with bf16 support, AMP on CUDA, else fp32"


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--precision``, as every inference CLI declares them (training: ``TrainConfig``)."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)


def select_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; anything else is passed to ``torch.device``."""
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("--device cuda asked for, but no CUDA GPU is available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """True if oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for ``precision`` in {auto, fp32, bf16, fp16}; None means plain fp32."""
    if precision == "fp32" or device.type == "mps":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype``, or a no-op for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last where oneDNN / cuDNN are fastest with it."""
    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format


def reexec_with_tuned_malloc(module: str) -> None:
    """Restart ``python -m module`` with ``TUNED_MALLOC_ENV`` unless set or disabled.

    The settings only take effect before the process starts. Set ``UNETPP_NO_MALLOC_TUNING=1``
    to opt out. Only on Linux (glibc).
    """
    if not sys.platform.startswith("linux") or os.environ.get(NO_TUNING_FLAG):
        return
    if all(os.environ.get(k) for k in TUNED_MALLOC_ENV):
        return
    env = {**TUNED_MALLOC_ENV, **os.environ}
    os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], env)
