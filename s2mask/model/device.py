"""Choosing the compute device, torch's thread count and what the CPU computes fast.

torch is imported inside the functions that need it: a run on an ONNX runtime never loads it.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from s2mask.errors import DeviceError, InvalidParameterError

if TYPE_CHECKING:
    import torch

__all__ = [
    "resolve_device",
    "set_threads",
    "resolve_precision",
    "cpu_has_fast_bf16",
    "cpu_has_fast_int8",
    "cpu_count",
    "gpu_may_be_present",
]

_PRECISIONS = ("auto", "fp32", "bf16")

_DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device must be available."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    kind = name.split(":")[0]
    if kind not in _DEVICES:
        raise InvalidParameterError(
            f"Unknown device {device!r}; expected one of {', '.join(_DEVICES)} (optionally cuda:N)."
        )
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            "CUDA was requested but torch sees no CUDA device on this machine; "
            "use --device cpu (or auto), or install a CUDA build of torch."
        )
    if kind == "mps" and not _mps_available():
        raise DeviceError("MPS was requested but is not available here; use --device cpu or auto.")
    return torch.device(name)


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (default: the CPUs this process may use); return the count."""
    import torch

    threads = max(1, int(threads)) if threads is not None else cpu_count()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def cpu_count() -> int:
    """The CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(next((ln for ln in f if ln.startswith("flags")), "").split())
    except OSError:  # not Linux: no cheap way to know, stay exact and general
        return frozenset()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware (AMX-BF16 or AVX512-BF16).

    Without these units torch emulates bf16 and runs far slower than fp32, so ``auto``
    never picks bf16 there.
    """
    return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})


def cpu_has_fast_int8() -> bool:
    """True when the CPU has int8 dot-product units (AVX512-VNNI, AVX-VNNI or AMX-INT8).

    ``auto`` picks the int8 model only there: without them int8 convolutions gain little
    over fp32 and the masks would move for no speed.
    """
    return bool(_cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def gpu_may_be_present() -> bool:
    """Whether torch might find a CUDA or MPS device, decided without importing torch.

    True when an NVIDIA driver is loaded (``/proc/driver/nvidia``, ``/dev/nvidia0``), on
    Apple silicon (MPS), or when ``CUDA_VISIBLE_DEVICES`` names a device; the caller then
    asks torch.  False means a CPU run for sure, so ``auto`` may use a CPU-only runtime.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if sys.platform == "darwin":
        import platform

        return platform.machine() == "arm64"
    return Path("/proc/driver/nvidia").exists() or Path("/dev/nvidia0").exists()


def resolve_precision(precision: str, device: torch.device) -> str:
    """Torch's precision: ``fp32`` or ``bf16`` for ``device``; ``auto`` is bf16 on a CPU with bf16 units.

    CUDA always runs under autocast (bf16 where supported, else fp16) whatever this says.
    ``int8`` is not a torch precision: it runs on an ONNX runtime (:mod:`s2mask.model.runtime`).
    """
    p = str(precision).lower()
    if p == "int8":
        raise InvalidParameterError(
            "int8 runs on an ONNX runtime, not on torch; use --runtime auto, openvino or onnxruntime "
            "(pip install 'openvino>=2024.0' or 'onnxruntime>=1.17')."
        )
    if p not in _PRECISIONS:
        raise InvalidParameterError(f"Unknown precision {precision!r}; expected one of {', '.join(_PRECISIONS)}.")
    if p == "auto":
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    return p
