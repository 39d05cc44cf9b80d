"""A run killed (SIGKILL) at any moment leaves either no mask or a complete, valid one.

``s2mask run`` is started as a real process on a product big enough to take a few
seconds and killed at several points: at fixed delays (start-up, model loading) and as
soon as its k-th new file shows up in the output folder (the mask's staging GeoTIFF,
the COG being converted, the probabilities, the quick-look, the summary...).  Whatever
the moment, the final mask path is absent or a valid COG whose every block decodes;
every other file under a final name is complete; and ``--resume`` then finishes the
job.  Only hidden temporary files (``.<name>.<random>.tmp...``) may be left behind.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from s2mask._atomic import TEMP_MARKER
from s2mask.bands import DEFAULT_BANDS
from s2mask.run import mask_is_valid
from s2mask.testing.products import DEFAULT_TRANSFORM, write_geotiff
from tests.reliability_helpers import CRS, save_tiny_weights

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

SIZE = 1024
FINAL = {"m.tif", "m.tif.aux.xml", "m.json", "m.png", "m_proba.tif", "m.stac.json"}


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kill")
    rng = np.random.default_rng(3)
    coarse = 0.05 + 0.4 * rng.random((len(DEFAULT_BANDS), SIZE // 16, SIZE // 16))
    refl = coarse.repeat(16, axis=1).repeat(16, axis=2).astype(np.float32)
    product = write_geotiff(root / "big.tif", refl, DEFAULT_BANDS, CRS, DEFAULT_TRANSFORM)
    return {"product": product, "weights": save_tiny_weights(root / "tiny.safetensors")}


def _start(big: dict[str, Path], out: Path, *extra: str) -> subprocess.Popen[bytes]:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "s2mask.cli", "run", str(big["product"]), "-o", str(out / "m.tif"),
           "--weights", str(big["weights"]), "--chunks", "256", "--probabilities", "-q", *extra]  # fmt: skip
    with open(out.parent / f"{out.name}.log", "ab") as log:  # a file, so a full pipe never blocks the run
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)


def _check_folder(out: Path) -> tuple[bool, list[str]]:
    """Assert the folder holds no partial output under a final name; return (mask present, temp files)."""
    names = sorted(p.name for p in out.iterdir())
    temps = [n for n in names if n.startswith(".") and ".tmp" in n]
    finals = [n for n in names if n not in temps]
    assert set(finals) <= FINAL, f"unexpected files {finals}"
    mask = out / "m.tif"
    if mask.exists():
        assert mask_is_valid(mask), "the final mask path holds an invalid COG"
        assert set(finals) == FINAL, f"the mask is published last, yet {FINAL - set(finals)} are missing"
    if (out / "m_proba.tif").exists():
        assert mask_is_valid(out / "m_proba.tif")
    if (out / "m.json").exists():
        assert json.loads((out / "m.json").read_text())["counts"]["total"] == SIZE * SIZE
    if (out / "m.png").exists():
        assert (out / "m.png").read_bytes()[:4] == b"\x89PNG" and (out / "m.png").read_bytes()[
            -8:-4
        ] == b"IEND"
    return mask.exists(), temps


def test_sigkill_at_any_moment_leaves_no_mask_or_a_valid_one(big: dict[str, Path], tmp_path: Path) -> None:
    # (name, delay in s or None, k: kill when the k-th distinct new file has been seen)
    points = [("t0.5s", 0.5, None), ("t3s", 3.0, None)] + [(f"file{k}", None, k) for k in (1, 2, 3, 5, 8, 11)]
    points.append(("complete", None, None))  # never killed: the reference of a finished run
    runs = {}
    for name, delay, k in points:
        out = tmp_path / name
        runs[name] = {
            "proc": _start(big, out),
            "out": out,
            "delay": delay,
            "k": k,
            "seen": set(),
            "t0": time.monotonic(),
        }
    deadline = time.monotonic() + 600
    pending = set(runs)
    killed_at: dict[str, str] = {}
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            run = runs[name]
            proc: subprocess.Popen[bytes] = run["proc"]
            if proc.poll() is not None:
                err = (run["out"].parent / f"{name}.log").read_text()
                assert proc.returncode == 0, f"{name} failed on its own: {err}"
                killed_at[name] = "finished before the kill point"
                pending.discard(name)
                continue
            run["seen"].update(p.name for p in run["out"].iterdir())
            due = (run["delay"] is not None and time.monotonic() - run["t0"] >= run["delay"]) or (
                run["k"] is not None and len(run["seen"]) >= run["k"]
            )
            if due:
                run["at_kill"] = sorted(p.name for p in run["out"].iterdir())
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed_at[name] = (
                    f"killed after {time.monotonic() - run['t0']:.1f} s, seen {sorted(run['seen'])}"
                )
                pending.discard(name)
        time.sleep(0.01)
    assert not pending, f"runs did not reach their kill point in time: {pending}"

    outcomes = {}
    for name, run in runs.items():
        present, temps = _check_folder(run["out"])
        outcomes[name] = (present, killed_at[name], temps)
    # the kill points really spread over the run: some before the mask, some while writing files
    assert any(not present for present, *_ in outcomes.values()), outcomes
    assert any(run["seen"] for name, run in runs.items() if name != "complete"), outcomes
    # and at least one kill landed while the mask COG was being written: its temporary file there, no mask yet
    mid_write = [
        name for name, run in runs.items()
        if "m.tif" not in run.get("at_kill", ["m.tif"])
        and any(n.startswith(".m.tif.") and TEMP_MARKER in n for n in run["at_kill"])
    ]  # fmt: skip
    assert mid_write, {name: run.get("at_kill") for name, run in runs.items()}
    assert outcomes["complete"][0] and outcomes["complete"][2] == [], outcomes

    # --resume finishes every interrupted folder; leftover temp files do not get in the way
    for name in ("t3s", "file1", "file3"):
        proc = _start(big, runs[name]["out"], "--resume")
        proc.wait(timeout=600)
        assert proc.returncode == 0, (tmp_path / f"{name}.log").read_text()
        present, temps = _check_folder(runs[name]["out"])
        assert present and temps == [], (name, temps)
