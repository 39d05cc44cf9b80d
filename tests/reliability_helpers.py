"""Shared pieces of the reliability tests: small products, tiny weights, and running the CLI.

``run_main`` runs the real console entry point (:func:`s2mask.cli.main`, which maps
``S2MaskError`` to one line and exit code 1) in this process, so exit codes and the
printed message are what a user sees, without a subprocess start per case.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from s2mask.bands import BAND_NAMES
from s2mask.testing.products import DEFAULT_TRANSFORM, write_geotiff, write_safe

CRS = "EPSG:32631"
SIZE = 96


def scene(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """13-band reflectance: textured land (0.05-0.25) with a bright cloud and a dark shadow."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.08 + 0.1 * (0.5 + 0.5 * np.sin(7 * xx + 3 * yy))
    refl = np.repeat(base[None], 13, axis=0) * rng.uniform(0.85, 1.15, (13, 1, 1))
    cloud = (yy - 0.35) ** 2 + (xx - 0.4) ** 2 < 0.04
    shadow = ((yy - 0.55) ** 2 + (xx - 0.55) ** 2 < 0.02) & ~cloud
    refl[:, cloud] = 0.7
    refl[:, shadow] = 0.02
    return refl.astype(np.float32)


def save_tiny_weights(path: Path, bands: tuple[str, ...] | None = None) -> Path:
    """A seeded width-4 U-Net with a 64 px window, saved with its card (never the shipped weights)."""
    from s2mask.model import save_model
    from s2mask.testing.models import tiny_unet

    model = tiny_unet() if bands is None else tiny_unet(bands)
    return save_model(model.net, model.card, path)


def save_threshold_weights(path: Path, *, cloud: float = 0.25, shadow: float = 0.04) -> Path:
    """A U-Net whose weights make it a per-pixel threshold on the mean reflectance of its bands.

    Mean above ``cloud`` -> cloud, below ``shadow`` -> shadow, else clear: a real weights
    file that a ``run`` can load, with outputs that move when the radiometry is wrong.
    Only the first level's channel 0 is used (mean of the bands, copied through the skip
    connection); every other weight is zero and BatchNorm is the identity.
    """
    import torch

    from s2mask.bands import DEFAULT_BANDS
    from s2mask.model import ModelCard, build_model, save_model

    card = ModelCard(
        name="threshold",
        bands=DEFAULT_BANDS,
        width=4,
        window_size=64,
        training_data="none (hand-set weights for tests)",
    )
    net = build_model(card)
    with torch.no_grad():
        for m in net.modules():
            for param in m.parameters(recurse=False):
                param.zero_()
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
                m.weight.fill_(1.0)
                m.eps = 0.0
        net.inc[0].weight[0, :, 1, 1] = 1.0 / len(card.bands)
        net.inc[3].weight[0, 0, 1, 1] = 1.0
        last = net.ups[-1].conv
        last[0].weight[0, 0, 1, 1] = 1.0  # channel 0 of the skip connection
        last[3].weight[0, 0, 1, 1] = 1.0
        net.head.weight[1, 0, 0, 0], net.head.bias[1] = 200.0, -200.0 * cloud
        net.head.weight[2, 0, 0, 0], net.head.bias[2] = -200.0, 200.0 * shadow
    return save_model(net, card, path)


@dataclass(frozen=True)
class Inputs:
    """Products and weights written once per test session (tests copy before damaging them)."""

    root: Path
    weights: Path
    """Tiny random U-Net (s2-9 bands, width 4, window 64)."""
    threshold: Path
    """Threshold U-Net (see :func:`save_threshold_weights`)."""
    l2a: Path
    """L2A, baseline 05.09, SAFE folder."""
    l1c_zip: Path
    """L1C, baseline 04.00, zipped SAFE."""
    l1c: Path
    """L1C, baseline 02.14 (no offset), SAFE folder."""
    geotiff: Path
    """13-band uint16 GeoTIFF with band descriptions."""


def make_inputs(root: Path) -> Inputs:
    root.mkdir(parents=True, exist_ok=True)
    refl = scene()
    return Inputs(
        root=root,
        weights=save_tiny_weights(root / "tiny.safetensors"),
        threshold=save_threshold_weights(root / "threshold.safetensors"),
        l2a=write_safe(root, refl, level="L2A", baseline="05.09", product_id="L2A_N0509"),
        l1c_zip=write_safe(root, refl, level="L1C", baseline="04.00", product_id="L1C_N0400", zipped=True),
        l1c=write_safe(root, refl, level="L1C", baseline="02.14", product_id="L1C_N0214"),
        geotiff=write_geotiff(root / "scene.tif", refl, BAND_NAMES, CRS, DEFAULT_TRANSFORM),
    )


@dataclass
class CliResult:
    code: int
    out: str
    err: str


def run_main(
    args: Sequence[str | os.PathLike[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> CliResult:
    """Run ``s2mask ARGS`` through :func:`s2mask.cli.main` in this process; return code and output."""
    from s2mask import cli

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["s2mask", *map(str, args)])
    monkeypatch.setitem(cli.DEBUG, "on", False)
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def files_in(folder: Path) -> list[str]:
    """Every file and folder under ``folder`` (hidden ones too), relative, sorted; [] if absent."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def temp_files(folder: Path) -> list[str]:
    """Leftover temporary files (s2mask's are hidden and contain ``.tmp``)."""
    return [f for f in files_in(folder) if Path(f).name.startswith(".") or ".tmp" in f]


def cog_is_valid(path: Path) -> bool:
    from rio_cogeo.cogeo import cog_validate

    return bool(cog_validate(str(path), quiet=True)[0])
