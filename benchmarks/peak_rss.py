"""Peak resident memory of this process and its children, for the benchmark scripts.

:class:`PeakRSS` polls ``psutil`` in a daemon thread (every 50 ms by default) and keeps
the largest sum of RSS over this process and all its descendants (dask LocalCluster
workers, onnxruntime helpers).  ``getrusage`` maxima are reported beside it: they are
exact for this process but cover its whole life, which is why every benchmark stage
runs in a fresh subprocess.
"""

from __future__ import annotations

import contextlib
import resource
import threading
import time

import psutil

GIB = 1024**3


def tree_rss(proc: psutil.Process) -> int:
    """RSS in bytes of ``proc`` plus every live descendant."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_info().rss
    return total


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children so far."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def rusage_max_bytes() -> dict[str, int]:
    """``ru_maxrss`` of this process and of its waited-for children, in bytes (Linux reports KiB)."""
    return {
        "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }


class PeakRSS:
    """Context manager sampling the peak RSS of this process tree: ``with PeakRSS() as m: ...; m.peak``."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self._proc))
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = tree_rss(self._proc)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self._proc))
