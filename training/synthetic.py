"""Synthetic clouds and cloud shadows composited over real clear Sentinel-2 backgrounds.

CloudSEN12 is not reachable from every machine, so the shipped models are trained on
scenes made here, where every label is exact:

* **backgrounds** are real L1C reflectance (all 13 bands) from ``../shared/data``: the
  cloud-free eo-learn Slovenia scenes, the clear part of the s2cloudless test scene
  and the clear part of the SEN12MS-CR Nigeria patch.  Pixels near real clouds (and
  their possible shadows) are labelled 255 (ignored) rather than trusted as clear.
* **thick clouds** are bright, spectrally flat (reflectance 0.3-0.8, lower in SWIR
  B11/B12) with texture, made from multi-octave smooth noise (cumulus or stratus);
* **thin clouds** are semi-transparent alpha blends of a bright layer;
* **shadows** are the cloud's opacity displaced along a random sun direction, blurred
  (penumbra), never on water, and darken the background more in NIR/SWIR than in blue
  (diffuse sky light is bluish).  Clouds are composited over shadows, so a shadow is
  labelled only where it is visible.

Labels: 0 clear, 1 cloud (thick or thin), 2 shadow, 255 ambiguous (faint cloud or
shadow edges, real clouds in a background).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from s2mask.bands import BAND_NAMES
from s2mask.errors import TrainingDataError

__all__ = [
    "Background",
    "SyntheticConfig",
    "load_backgrounds",
    "synthesize",
    "synthesize_parts",
    "write_synthetic_dataset",
    "SHADOW_TRANSMISSION",
]

IGNORE = 255

SHADOW_TRANSMISSION: dict[str, float] = {
    "B01": 0.50, "B02": 0.45, "B03": 0.38, "B04": 0.33, "B05": 0.30, "B06": 0.27, "B07": 0.25,
    "B08": 0.24, "B8A": 0.24, "B09": 0.24, "B10": 0.60, "B11": 0.20, "B12": 0.20,
}  # fmt: skip
"""Fraction of reflectance left in a cloud shadow (only diffuse light): blue keeps most."""

_CLOUD_SPECTRUM: dict[str, float] = {
    "B01": 1.06, "B02": 1.05, "B03": 1.02, "B04": 1.0, "B05": 1.0, "B06": 0.99, "B07": 0.98,
    "B08": 0.97, "B8A": 0.96, "B09": 0.6, "B10": 0.35, "B11": 0.72, "B12": 0.58,
}  # fmt: skip
"""Relative reflectance of a thick cloud per band (bright, flat, darker in SWIR)."""

PATH_REFLECTANCE: dict[str, float] = {
    "B01": 0.07, "B02": 0.05, "B03": 0.03, "B04": 0.015, "B05": 0.012, "B06": 0.01, "B07": 0.008,
    "B08": 0.006, "B8A": 0.005, "B09": 0.003, "B10": 0.0, "B11": 0.002, "B12": 0.001,
}  # fmt: skip
"""Typical atmospheric path reflectance at top of atmosphere: a shadow does not darken it,
which is why real L1C shadows stay bright in blue and go dark in NIR/SWIR."""


def _cloud_spectrum(bands: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """A thick-cloud spectrum relative to red: flat in the visible, varied NIR and SWIR.

    Real clouds range from NIR below red (bright ice tops) to NIR above red (thinner
    water clouds over vegetation), and SWIR from 0.45 to 1.1 of red; red-edge bands are
    interpolated between red and NIR.
    """
    base = {b: _CLOUD_SPECTRUM[b] for b in bands}
    nir = rng.uniform(0.9, 1.35)
    for b, t in (("B05", 0.25), ("B06", 0.5), ("B07", 0.75), ("B08", 1.0), ("B8A", 1.0)):
        base[b] = 1.0 + t * (nir - 1.0)
    base["B11"] = rng.uniform(0.6, 1.1)
    base["B12"] = base["B11"] * rng.uniform(0.65, 0.9)
    spec = np.array([base[b] for b in bands], np.float32)
    return spec * rng.uniform(0.97, 1.03, size=spec.shape).astype(np.float32)


@dataclass(frozen=True)
class Background:
    """One real clear scene usable as a background."""

    name: str
    """Where it came from."""
    image: np.ndarray
    """(13, H, W) float32 reflectance, ESA band order."""
    ignore: np.ndarray
    """(H, W) bool: pixels whose label is unknown (real clouds and their shadows)."""


@dataclass(frozen=True)
class SyntheticConfig:
    """How synthetic samples are drawn."""

    size: int = 128
    """Side of a sample in pixels."""
    p_clear: float = 0.1
    """Probability that a sample has no cloud at all."""
    p_thin_only: float = 0.12
    """Probability that a sample has only thin (semi-transparent) clouds."""
    p_thin_layer: float = 0.25
    """Probability that a thin layer is added on top of thick clouds."""
    p_shadow: float = 0.9
    """Probability that thick clouds cast shadows in a sample."""
    max_shadow_shift: float = 45.0
    """Largest cloud-to-shadow displacement in pixels."""
    scale_range: tuple[float, float] = (0.6, 2.0)
    """Range of the background zoom (source pixels per sample pixel)."""
    noise: float = 0.004
    """Standard deviation of additive reflectance noise."""


# ---------------------------------------------------------------- backgrounds


def _water(img: np.ndarray) -> np.ndarray:
    """Water: NDWI (B03, B08) above 0.05 or very dark NIR."""
    g, n = img[2], img[7]
    ndwi = (g - n) / np.maximum(g + n, 1e-6)
    return (ndwi > 0.05) | (n < 0.04)


def _unknown_near_clouds(img: np.ndarray, cloud: np.ndarray, *, grow: int, reach: int) -> np.ndarray:
    """Real cloud grown by ``grow`` plus dark non-water pixels within ``reach`` of it (shadows)."""
    near = ndimage.binary_dilation(cloud, iterations=reach) if cloud.any() else cloud
    dark = (img[7] < np.percentile(img[7], 15)) & ~_water(img) & near
    return ndimage.binary_dilation(cloud, iterations=grow) | ndimage.binary_dilation(dark, iterations=2)


def load_backgrounds(
    shared_data: str | Path, *, s2cloudless_rows: tuple[int, int] = (0, 428)
) -> list[Background]:
    """Real clear backgrounds from ``../shared/data`` (the s2cloudless scene only in ``s2cloudless_rows``)."""
    root = Path(shared_data)
    out: list[Background] = []
    slo = root / "eolearn_slovenia" / "REFERENCE_SCENES.npy"
    if slo.exists():
        for i, scene in enumerate(np.load(slo)):
            img = np.ascontiguousarray(scene.transpose(2, 0, 1), dtype=np.float32)
            out.append(Background(f"eolearn_slovenia[{i}]", img, np.zeros(img.shape[1:], bool)))
    s2c = root / "s2cloudless_testscene" / "input_arrays.npz"
    if s2c.exists():
        with np.load(s2c) as d:
            r0, r1 = s2cloudless_rows
            img = np.ascontiguousarray(d["s2_im"][0, r0:r1].transpose(2, 0, 1), dtype=np.float32)
            cloud = d["cl_mask"][0, r0:r1] > 0
        out.append(
            Background("s2cloudless_testscene", img, _unknown_near_clouds(img, cloud, grow=4, reach=20))
        )
    nig = root / "sen12mscr_nigeria" / "ROIs1868_summer_s2_cloudy_19_p30.tif"
    if nig.exists():
        import rasterio

        with rasterio.open(nig) as src:
            img = src.read().astype(np.float32) / 10000.0
        cloud = img[1] > 0.2
        out.append(Background("sen12mscr_nigeria", img, _unknown_near_clouds(img, cloud, grow=4, reach=25)))
    if not out:
        raise TrainingDataError(
            f"No background scenes found under {root}; expected eolearn_slovenia/REFERENCE_SCENES.npy, "
            "s2cloudless_testscene/input_arrays.npz or sen12mscr_nigeria/*.tif. Pass the shared data folder."
        )
    return out


def _zoom(a: np.ndarray, size: int, order: int) -> np.ndarray:
    """Resample the last two axes of ``a`` to ``size`` x ``size``."""
    fy, fx = size / a.shape[-2], size / a.shape[-1]
    zoom = (1,) * (a.ndim - 2) + (fy, fx)
    out = ndimage.zoom(a, zoom, order=order, mode="nearest", grid_mode=True)
    return out[..., :size, :size]


def _background_crop(bgs: list[Background], cfg: SyntheticConfig, rng: np.random.Generator):
    """A random zoomed, rotated, gain-jittered crop (image, ignore) of one background."""
    weights = np.array([b.image.shape[1] * b.image.shape[2] for b in bgs], float) ** 0.5
    for _ in range(50):
        bg = bgs[rng.choice(len(bgs), p=weights / weights.sum())]
        h, w = bg.image.shape[1:]
        lo, hi = cfg.scale_range
        scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        src = int(min(round(cfg.size * scale), h, w))
        y, x = rng.integers(0, h - src + 1), rng.integers(0, w - src + 1)
        ign = bg.ignore[y : y + src, x : x + src]
        if ign.mean() > 0.4:
            continue
        img = bg.image[:, y : y + src, x : x + src]
        if src != cfg.size:
            img = _zoom(img, cfg.size, order=1)
            ign = _zoom(ign.astype(np.uint8), cfg.size, order=0).astype(bool)
        k = int(rng.integers(4))
        img, ign = np.rot90(img, k, axes=(1, 2)), np.rot90(ign, k)
        if rng.random() < 0.5:
            img, ign = img[:, :, ::-1], ign[:, ::-1]
        gain = rng.uniform(0.85, 1.15) * rng.uniform(0.96, 1.04, size=(img.shape[0], 1, 1))
        return np.ascontiguousarray(img * gain, dtype=np.float32), np.ascontiguousarray(ign)
    raise TrainingDataError(
        "Could not find a background crop with enough known pixels; add clear backgrounds."
    )


# ---------------------------------------------------------------- cloud fields


def _smooth_noise(
    shape: tuple[int, int], cells: float, rng: np.random.Generator, octaves: int = 4
) -> np.ndarray:
    """Multi-octave smooth noise in [0, 1] with about ``cells`` blobs across."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = max(2, int(round(cells * 2**o)))
        grid = rng.standard_normal((n + 3, n + 3)).astype(np.float32)
        up = ndimage.zoom(grid, ((h + 1) / n, (w + 1) / n), order=3)[:h, :w]
        out += amp * up
        total += amp
        amp *= 0.5
    out /= total
    return (out - out.min()) / max(float(out.max() - out.min()), 1e-6)


def _opacity(field: np.ndarray, coverage: float, softness: float) -> np.ndarray:
    """Opacity 0..1: 1 inside the top ``coverage`` of ``field``, soft edge of width ``softness``."""
    thr = np.quantile(field, 1.0 - coverage)
    return np.clip((field - thr) / softness + 0.5, 0.0, 1.0) ** 1.5


def _cloud_layer(canvas: tuple[int, int], rng: np.random.Generator, *, thin: bool):
    """(opacity, brightness) of one cloud layer on the canvas."""
    if thin:
        field = _smooth_noise(canvas, rng.uniform(1.5, 5), rng, octaves=5)
        if rng.random() < 0.5:  # streaky cirrus
            field = ndimage.gaussian_filter(field, sigma=(rng.uniform(1, 3), rng.uniform(6, 16)))
            field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
        alpha = _opacity(field, rng.uniform(0.15, 0.7), rng.uniform(0.3, 0.6)) * rng.uniform(0.25, 0.6)
        brightness = rng.uniform(0.3, 0.6)
    else:
        cumulus = rng.random() < 0.6
        cells = rng.uniform(4, 12) if cumulus else rng.uniform(1.2, 3.5)
        field = _smooth_noise(canvas, cells, rng)
        cover = rng.uniform(0.02, 0.4) if rng.random() < 0.9 else rng.uniform(0.5, 0.95)
        alpha = _opacity(field, cover, rng.uniform(0.03, 0.12))
        brightness = rng.uniform(0.25, 0.85)
    texture = 0.85 + 0.3 * _smooth_noise(canvas, rng.uniform(8, 20), rng, octaves=3)
    return alpha.astype(np.float32), (brightness * texture).astype(np.float32)


def _shift(a: np.ndarray, dy: float, dx: float) -> np.ndarray:
    return ndimage.shift(a, (dy, dx), order=1, mode="constant", cval=0.0)


# ---------------------------------------------------------------- one sample


def synthesize(
    bgs: list[Background], rng: np.random.Generator, cfg: SyntheticConfig = SyntheticConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """One sample: ``(image (13, S, S) float32 reflectance, label (S, S) uint8)``."""
    parts = synthesize_parts(bgs, rng, cfg)
    return parts["image"], parts["label"]


def synthesize_parts(
    bgs: list[Background], rng: np.random.Generator, cfg: SyntheticConfig = SyntheticConfig()
) -> dict[str, np.ndarray]:
    """One sample with its making-of: ``image``, ``label``, ``background``, ``water``,
    ``cloud_alpha`` and ``shadow`` (the shadow's opacity before clouds cover it)."""
    s = cfg.size
    img, ignore = _background_crop(bgs, cfg, rng)
    water = _water(img)
    m = int(np.ceil(cfg.max_shadow_shift)) + 2
    canvas = (s + 2 * m, s + 2 * m)
    inner = (slice(m, m + s), slice(m, m + s))

    thick = np.zeros(canvas, np.float32)
    thin = np.zeros(canvas, np.float32)
    thick_b = thin_b = np.zeros(canvas, np.float32)
    u = rng.random()
    if u >= cfg.p_clear + cfg.p_thin_only:
        thick, thick_b = _cloud_layer(canvas, rng, thin=False)
    if cfg.p_clear <= u < cfg.p_clear + cfg.p_thin_only or (
        u >= cfg.p_clear + cfg.p_thin_only and rng.random() < cfg.p_thin_layer
    ):
        thin, thin_b = _cloud_layer(canvas, rng, thin=True)

    # shadows: the clouds' opacity displaced along the sun direction, blurred, not on water
    shadow = np.zeros((s, s), np.float32)
    if thick.any() and rng.random() < cfg.p_shadow:
        angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(8, cfg.max_shadow_shift)
        cast = _shift(np.maximum(thick, 0.6 * thin), dist * np.sin(angle), dist * np.cos(angle))
        cast = ndimage.gaussian_filter(cast, rng.uniform(0.5, 2.0))[inner]
        shadow = np.where(water, 0.0, cast * rng.uniform(0.8, 1.0)).astype(np.float32)
    bands = BAND_NAMES
    trans = np.array([SHADOW_TRANSMISSION[b] for b in bands], np.float32)[:, None, None]
    trans = np.clip(trans * rng.uniform(0.75, 1.3), 0.1, 0.7)
    path = np.array([PATH_REFLECTANCE[b] for b in bands], np.float32)[:, None, None] * rng.uniform(0.4, 1.1)
    path = np.minimum(path, 0.7 * img)
    out = path + (img - path) * (1.0 - shadow[None] * (1.0 - trans))

    # clouds over everything
    spec = _cloud_spectrum(bands, rng)[:, None, None]
    for alpha, bright in ((thick[inner], thick_b[inner]), (thin[inner], thin_b[inner])):
        if alpha.any():
            out = out * (1.0 - alpha[None]) + (bright[None] * spec) * alpha[None]
    out = out + rng.normal(0.0, cfg.noise, size=out.shape).astype(np.float32)

    cloud_alpha = 1.0 - (1.0 - thick[inner]) * (1.0 - thin[inner])
    visible_shadow = shadow * (1.0 - cloud_alpha)
    label = np.zeros((s, s), np.uint8)
    label[visible_shadow > 0.5] = 2
    label[(visible_shadow > 0.2) & (visible_shadow <= 0.5)] = IGNORE
    label[cloud_alpha >= 0.2] = 1
    label[(cloud_alpha > 0.08) & (cloud_alpha < 0.2)] = IGNORE
    label[ignore & (label == 0)] = IGNORE
    return {
        "image": np.clip(out, 0.0, 1.0).astype(np.float32),
        "label": label,
        "background": img,
        "water": water,
        "cloud_alpha": cloud_alpha,
        "shadow": shadow,
    }


# ---------------------------------------------------------------- dataset on disk


def write_synthetic_dataset(
    out_dir: str | Path,
    shared_data: str | Path,
    *,
    counts: dict[str, int],
    seed: int = 0,
    shard_size: int = 256,
    cfg: SyntheticConfig = SyntheticConfig(),
    progress: bool = False,
) -> Path:
    """Write ``counts`` samples per split (``{"train": 2000, "validation": 200}``) as npz shards.

    Each shard holds ``x`` (N, 13, S, S) uint16 DN (reflectance * 10000), ``y`` (N, S, S)
    uint8 labels and ``bands``; ``manifest.json`` lists the shards per split.  Shards are
    written to temporary names and renamed into place.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bgs = load_backgrounds(shared_data)
    rng = np.random.default_rng(seed)
    manifest: dict = {
        "format": "s2mask-shards/1",
        "bands": list(BAND_NAMES),
        "scale": 1e-4,
        "size": cfg.size,
        "generator": "training.synthetic",
        "seed": seed,
        "backgrounds": [b.name for b in bgs],
        "splits": {},
    }
    for split, n in counts.items():
        files = []
        for start in range(0, n, shard_size):
            k = min(shard_size, n - start)
            xs = np.empty((k, len(BAND_NAMES), cfg.size, cfg.size), np.uint16)
            ys = np.empty((k, cfg.size, cfg.size), np.uint8)
            for i in range(k):
                x, y = synthesize(bgs, rng, cfg)
                xs[i] = np.round(x * 10000.0).astype(np.uint16)
                ys[i] = y
            name = f"{split}-{start // shard_size:04d}.npz"
            tmp = out / f".{name}.tmp.npz"
            np.savez(tmp, x=xs, y=ys, bands=np.array(BAND_NAMES))
            tmp.replace(out / name)
            files.append(name)
            if progress:
                print(f"{split}: {start + k}/{n}", flush=True)
        manifest["splits"][split] = files
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(out / "manifest.json")
    return out
