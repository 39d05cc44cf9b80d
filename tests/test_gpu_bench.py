"""benchmarks/gpu_bench.py, dry-run on the CPU at a small size (no GPU here: the script's logic, not its figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_bench_runs_every_stage_and_batch_size_gives_the_same_mask(
    shared_data: Path, tmp_path: Path
) -> None:
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "gpu_bench.py"),
        "--size",
        "1032",
        "--device",
        "cpu",
        "--batch-sizes",
        "2,4",
        "--budget",
        "300",
        "--out",
        str(tmp_path),
        "--region",
        "512",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert doc["info"]["device"] == "cpu"
    runs = [r for r in doc["results"] if "full" in r]
    assert {(r["format"], r["batch_size"]) for r in runs} == {
        ("cog", 2),
        ("cog", 4),
        ("safe", 2),
        ("safe", 4),
    }
    for r in runs:
        assert r["full"]["seconds"] > 0 and r["infer"]["seconds"] > 0 and r["decode_share"] > 0
        assert (
            r["full"]["gpu_busy"] is None and r["full"]["gpu_busy_source"] == "none"
        )  # no GPU: said, not guessed
    masks = {}
    for fmt in ("cog", "safe"):
        for bs in (2, 4):
            with rasterio.open(tmp_path / f"mask_{fmt}_{bs}.tif") as src:
                masks[fmt, bs] = src.read(1)
        np.testing.assert_array_equal(masks[fmt, 2], masks[fmt, 4])  # batching never changes a mask
    assert (masks["cog", 2] == 1).mean() > 0.05  # the real scene's clouds are found
