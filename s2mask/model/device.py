"""Choosing the compute device and torch's thread count."""

from __future__ import annotations

import os

import torch

from s2mask.errors import DeviceError, InvalidParameterError

__all__ = ["resolve_device", "set_threads", "resolve_precision", "cpu_has_fast_bf16"]

_PRECISIONS = ("auto", "fp32", "bf16")

_DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device must be available."""
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
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - macOS
            threads = os.cpu_count() or 1
    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware (AMX-BF16 or AVX512-BF16).

    Without these units torch emulates bf16 and runs far slower than fp32, so ``auto``
    never picks bf16 there.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "").split()
    except OSError:  # not Linux: no cheap way to know, stay exact
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for ``device``: ``auto`` is bf16 on a CPU with bf16 units, fp32 on other CPUs.

    CUDA always runs under autocast (bf16 where supported, else fp16) whatever this says.
    """
    p = str(precision).lower()
    if p not in _PRECISIONS:
        raise InvalidParameterError(f"Unknown precision {precision!r}; expected one of {', '.join(_PRECISIONS)}.")
    if p == "auto":
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    return p
