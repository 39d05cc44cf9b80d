"""Synthetic shadows follow the sun; pasted real clouds keep their spectra."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from s2mask.bands import BAND_NAMES
from training.synthetic import (
    Background,
    CloudDonor,
    SyntheticConfig,
    shadow_offset,
    synthesize_parts,
)

B = {b: i for i, b in enumerate(BAND_NAMES)}


def test_shadow_offset_points_away_from_the_sun() -> None:
    # sun in the south-east: the shadow lies north-west (up and left), at h * tan(zenith)
    dy, dx = shadow_offset(135.0, 45.0, 1000.0, 10.0)
    assert dy < 0 and dx < 0
    assert np.hypot(dy, dx) == pytest.approx(100.0, rel=1e-6)
    # sun due south: shadow due north; sun in the west: shadow east
    dy, dx = shadow_offset(180.0, 30.0, 500.0, 10.0)
    assert dy == pytest.approx(-500 * np.tan(np.radians(30)) / 10) and abs(dx) < 1e-9
    dy, dx = shadow_offset(270.0, 60.0, 300.0, 20.0)
    assert dx == pytest.approx(300 * np.tan(np.radians(60)) / 20) and abs(dy) < 1e-9


def _flat_background(size: int = 160) -> Background:
    img = np.empty((13, size, size), np.float32)
    rng = np.random.default_rng(0)
    for b, i in B.items():
        img[i] = 0.12 + 0.2 * (b in ("B08", "B8A", "B07")) + 0.01 * rng.random((size, size))
    return Background("flat land", img, np.zeros((size, size), bool), "L2A")


def _source_cloudy(cloud: np.ndarray, shadow: np.ndarray, dy: float, dx: float) -> float:
    """Share of dark-shadow pixels whose caster, ``(dy, dx)`` back towards the sun, is cloud."""
    ys, xs = np.nonzero(shadow > 0.8)
    sy, sx = np.rint(ys - dy).astype(int), np.rint(xs - dx).astype(int)
    inside = (sy >= 0) & (sy < cloud.shape[0]) & (sx >= 0) & (sx < cloud.shape[1])
    if inside.sum() < 30:
        return float("nan")
    return float((cloud[sy[inside], sx[inside]] > 0.2).mean())


def test_synthetic_shadow_lies_beyond_its_cloud_at_the_implied_distance() -> None:
    cfg = SyntheticConfig(
        size=160, p_clear=0.0, p_thin_only=0.0, p_thin_layer=0.0, p_shadow=1.0,
        max_shadow_shift=30.0, scale_range=(1.0, 1.0), noise=0.0,
    )  # fmt: skip
    checked = 0
    for seed in range(12):
        p = synthesize_parts([_flat_background()], np.random.default_rng(seed), cfg)
        if p["cloud_alpha"].mean() > 0.5 or p["shadow"].sum() < 50:
            continue
        sun = p["sun"]
        dy, dx = shadow_offset(sun["sun_azimuth"], sun["sun_zenith"], sun["cloud_height"], cfg.pixel_m)
        assert (dy, dx) == pytest.approx((sun["dy"], sun["dx"]))
        toward = _source_cloudy(p["cloud_alpha"], p["shadow"], dy, dx)
        if np.isnan(toward):
            continue
        away = _source_cloudy(p["cloud_alpha"], p["shadow"], -dy, -dx)  # the wrong side of the cloud
        assert toward > 0.95 and toward > away + 0.1, (seed, toward, away, (dy, dx))
        checked += 1
    assert checked >= 4


def test_shadow_keeps_diffuse_light_blue_more_than_nir() -> None:
    cfg = SyntheticConfig(size=160, p_clear=0.0, p_thin_only=0.0, p_thin_layer=0.0, p_shadow=1.0, noise=0.0)
    for seed in range(10):
        p = synthesize_parts([_flat_background()], np.random.default_rng(seed), cfg)
        sh = (p["label"] == 2) & (p["shadow"] > 0.9)
        if sh.sum() < 20:
            continue
        ratio = p["image"][:, sh].mean(1) / p["background"][:, sh].mean(1)
        assert 0.05 < ratio[B["B08"]] < ratio[B["B02"]] < 0.9  # direct light gone, bluish sky light kept
        return
    pytest.fail("no sample with a shadow")


def test_pasted_real_clouds_keep_the_donor_spectra() -> None:
    size = 200
    cloud = np.zeros((size, size), np.float32)
    cloud[40:160, 50:150] = 1.0
    spectrum = np.linspace(0.5, 0.7, 13).astype(np.float32)
    donor = CloudDonor("test donor", np.broadcast_to(spectrum[:, None, None], (13, size, size)).copy(), cloud)
    cfg = replace(
        SyntheticConfig(size=96, p_clear=0.0, p_thin_only=0.0, p_thin_layer=0.0, noise=0.0),
        p_real_cloud=1.0,
    )
    seen = 0
    for seed in range(8):
        p = synthesize_parts([_flat_background()], np.random.default_rng(seed), cfg, [donor])
        core = p["cloud_alpha"] > 0.999
        if core.sum() < 20:
            continue
        assert (p["label"][core] == 1).all()
        np.testing.assert_allclose(p["image"][:, core].mean(1), spectrum, atol=1e-3)
        seen += 1
    assert seen >= 3
