"""SIGTERM (``kill``, batch schedulers) unwinds a run: no output and no temporary file is left.

Python's default SIGTERM action ends the process without running ``finally`` clauses, so
the hidden temporary files of a half-written mask stayed behind; the CLI turns SIGTERM
into ``SystemExit(143)`` so every writer removes its temporaries, then says so in one line.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from s2mask.bands import DEFAULT_BANDS
from s2mask.testing.products import DEFAULT_TRANSFORM, write_geotiff
from tests.reliability_helpers import CRS, save_tiny_weights

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SIZE = 768


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sigterm")
    rng = np.random.default_rng(5)
    coarse = 0.05 + 0.4 * rng.random((len(DEFAULT_BANDS), SIZE // 16, SIZE // 16))
    refl = coarse.repeat(16, axis=1).repeat(16, axis=2).astype(np.float32)
    return {
        "product": write_geotiff(root / "scene.tif", refl, DEFAULT_BANDS, CRS, DEFAULT_TRANSFORM),
        "weights": save_tiny_weights(root / "tiny.safetensors"),
    }


def _terminate_once_writing(args: list[str], out: Path) -> tuple[subprocess.CompletedProcess, list[str]]:
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "s2mask.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    seen: list[str] = []
    deadline = time.monotonic() + 120
    while not seen and proc.poll() is None and time.monotonic() < deadline:
        seen = [p.name for p in out.iterdir()]
        time.sleep(0.005)
    assert seen and proc.poll() is None, "the run ended (or never wrote) before it could be terminated"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), seen


def test_sigterm_during_a_run_leaves_nothing(product: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["run", str(product["product"]), "-o", str(out / "m.tif"), "--weights", str(product["weights"]),
            "--chunks", "256", "--probabilities", "-q"]  # fmt: skip
    done, seen = _terminate_once_writing(args, out)
    assert any(name.startswith(".") and ".tmp" in name for name in seen), seen  # it was writing
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "Terminated; no partial output was left."
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == []


def test_sigterm_during_a_composite_leaves_nothing(product: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["composite", str(product["product"]), str(product["product"]), "-o", str(out / "c.tif"),
            "--weights", str(product["weights"]), "--chunks", "256", "--output-bands", "B04,B03,B02", "-q"]  # fmt: skip
    done, _ = _terminate_once_writing(args, out)
    assert done.returncode == 143, done.stderr
    assert sorted(p.name for p in out.iterdir()) == []
