"""benchmarks/startup_bench.py and benchmarks/window_accuracy.py run and report what they claim (not their figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_startup_bench_times_the_first_window_of_a_real_run(tmp_path: Path) -> None:
    out = tmp_path / "startup.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "startup_bench.py"), "--repeat", "1", "--json", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(out.read_text())
    first, whole = doc["first_window_s"]["median"], doc["command_s"]["median"]
    assert 0 < first < whole  # the stamp is written inside the run, before it ends
    assert "numpy" in doc["imports_s"] and all(v >= 0 for v in doc["imports_s"].values())


@pytest.mark.slow
def test_window_accuracy_scores_each_geometry_on_the_real_scenes(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "win.json"
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "window_accuracy.py"), "--shared-data", str(shared_data),
        "--geometry", "256/32", "--geometry", "256/16", "--precision", "fp32", "--json", str(out),
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())["results"]
    assert [(r["window"], r["overlap"]) for r in rows] == [(256, 32), (256, 16)]
    assert rows[0]["ukis"]["changed_vs_first"] == 0.0  # the reference against itself
    assert rows[1]["window_px_per_scene_px"] < rows[0]["window_px_per_scene_px"]
    for row in rows:
        assert 0.3 < row["ukis"]["macro_iou"] <= 1  # a trained model on a real scene, not noise
        assert 0.5 < row["s2cloudless"]["cloud_iou"] <= 1
