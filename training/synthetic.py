"""Synthetic clouds and cloud shadows composited over real clear Sentinel-2 backgrounds.

CloudSEN12 is not reachable from every machine; here every label is exact:

* **backgrounds** are real reflectance (all 13 bands; bands a product lacks approximated by
  wavelength) from ``../shared/data``: the cloud-free eo-learn Slovenia scenes, the clear
  part of the s2cloudless test scene and of the SEN12MS-CR Nigeria patch, and every scene
  its source documents as cloud-free (:mod:`training.real_data`: bright salt, snow, sand,
  towns among them), L1C and L2A.  Pixels near real clouds are labelled 255 (ignored).
* **thick clouds** are either real clouds cut out of teacher-labelled cloudy scenes
  (:func:`load_donors`, their own spectra and texture, opacity from the teacher's cloud
  probability) or procedural ones (bright, spectrally flat, lower in SWIR, multi-octave
  noise for cumulus or stratus);
* **thin clouds** are semi-transparent layers over opacities 0.15-0.9 of their field;
* **shadows** are the clouds' opacity cast along the sun azimuth at ``height * tan(zenith)``
  (:func:`shadow_offset`, :func:`sample_sun_geometry`), blurred (penumbra), never on water;
  direct light is removed and diffuse sky light kept (more in blue than in NIR/SWIR), and at
  L1C the atmosphere's path reflectance stays.  Clouds are composited over shadows, so a
  shadow is labelled only where it is visible.

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
    "CloudDonor",
    "load_donors",
    "shadow_offset",
    "sample_sun_geometry",
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
    level: str = "L1C"
    """``L1C`` (top of atmosphere: shadows keep the atmosphere's path reflectance) or ``L2A``."""


@dataclass(frozen=True)
class CloudDonor:
    """A real cloudy scene whose clouds (by a teacher's mask) are pasted onto backgrounds."""

    name: str
    image: np.ndarray
    """(13, H, W) float32 reflectance, ESA band order (missing bands approximated)."""
    cloud: np.ndarray
    """(H, W) float32 teacher cloud probability."""


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
    max_shadow_shift: float = 64.0
    """Largest cloud-to-shadow displacement in pixels (a shadow may fall outside the sample)."""
    p_real_cloud: float = 0.5
    """Probability that the thick clouds are real ones cut from a donor scene (when donors exist)."""
    pixel_m: float = 10.0
    """Ground size of a sample pixel (metres) for the sun-geometry shadow offset."""
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
    out.extend(_documented_clear(root))
    if not out:
        raise TrainingDataError(
            f"No background scenes found under {root}; expected eolearn_slovenia/REFERENCE_SCENES.npy, "
            "s2cloudless_testscene/input_arrays.npz or sen12mscr_nigeria/*.tif. Pass the shared data folder."
        )
    return out


def _esa13(bands: dict[str, np.ndarray]) -> np.ndarray:
    """(13, H, W) in ESA order; bands a scene lacks are approximated by wavelength (B10 is 0)."""
    from training.real_scenes import approximate_bands

    have = {b: a for b, a in bands.items() if b != "B10"}
    img, _ = approximate_bands(have, tuple(b for b in BAND_NAMES))
    img[BAND_NAMES.index("B10")] = bands.get("B10", np.zeros_like(img[0]))
    return img


def _documented_clear(root: Path) -> list[Background]:
    """The documented cloud-free real scenes (bright salt, snow, sand, towns among them)."""
    from training.real_data import real_scenes

    out = []
    for sc in real_scenes(root):
        if not sc.clear or sc.name.startswith("eolearn_slovenia"):
            continue
        img = _esa13(sc.bands)
        out.append(Background(sc.name, np.nan_to_num(img), np.isnan(img).any(axis=0), sc.level))
    return out


def load_donors(teacher_dir: str | Path, *, min_cloud: float = 0.05) -> list[CloudDonor]:
    """Cloudy training scenes of a teacher dataset (``training.teacher``) as cloud donors."""
    import json

    root = Path(teacher_dir)
    manifest = json.loads((root / "manifest.json").read_text())
    out = []
    for e in manifest["scenes"]:
        if e["split"] != "train" or e["teacher"] is None or e["cloud_share"] < min_cloud:
            continue
        with np.load(root / e["file"]) as d:
            names = [str(b) for b in d["bands"]]
            x = d["x"].astype(np.float32) * 1e-4
            cloud = d["probs"][1].astype(np.float32) / float(manifest["prob_scale"])
        out.append(CloudDonor(e["name"], _esa13(dict(zip(names, x, strict=True))), cloud))
    return out


def shadow_offset(
    sun_azimuth_deg: float, sun_zenith_deg: float, cloud_height_m: float, pixel_m: float
) -> tuple[float, float]:
    """(rows, cols) from a cloud to its shadow on flat ground, north up.

    The shadow falls away from the sun at ``height * tan(zenith)``: for a sun in the
    south-east (azimuth 135) the shadow lies north-west of the cloud (rows < 0, cols < 0).
    """
    d = cloud_height_m * np.tan(np.radians(sun_zenith_deg)) / pixel_m
    az = np.radians(sun_azimuth_deg)
    return float(d * np.cos(az)), float(-d * np.sin(az))


def sample_sun_geometry(rng: np.random.Generator, cfg: SyntheticConfig) -> dict[str, float]:
    """A sun position and cloud height whose shadow offset is 3..``max_shadow_shift`` px."""
    while True:
        g = {
            "sun_azimuth": float(rng.uniform(0, 360)),
            "sun_zenith": float(rng.uniform(15, 72)),
            "cloud_height": float(np.exp(rng.uniform(np.log(200), np.log(6000)))),
        }
        dy, dx = shadow_offset(g["sun_azimuth"], g["sun_zenith"], g["cloud_height"], cfg.pixel_m)
        if 3 <= np.hypot(dy, dx) <= cfg.max_shadow_shift:
            return {**g, "dy": dy, "dx": dx}


def _donor_layer(donors: list[CloudDonor], canvas: tuple[int, int], rng: np.random.Generator):
    """(opacity, (13, H, W) spectra) of real clouds cut from a donor, on the canvas."""
    for _ in range(20):
        dn = donors[int(rng.integers(len(donors)))]
        h, w = dn.cloud.shape
        ch, cw = min(canvas[0], h), min(canvas[1], w)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        p = dn.cloud[y : y + ch, x : x + cw]
        if (p > 0.5).mean() < 0.03:
            continue
        img = dn.image[:, y : y + ch, x : x + cw]
        k = int(rng.integers(4))
        p, img = np.rot90(p, k), np.rot90(img, k, axes=(1, 2))
        alpha = np.clip((ndimage.gaussian_filter(p, 0.7) - 0.3) / 0.5, 0.0, 1.0)
        oy, ox = (
            int(rng.integers(0, canvas[0] - p.shape[0] + 1)),
            int(rng.integers(0, canvas[1] - p.shape[1] + 1)),
        )
        a = np.zeros(canvas, np.float32)
        spec = np.zeros((13,) + canvas, np.float32)
        a[oy : oy + p.shape[0], ox : ox + p.shape[1]] = alpha
        spec[:, oy : oy + p.shape[0], ox : ox + p.shape[1]] = img
        return a, spec
    return None


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
        return np.ascontiguousarray(img * gain, dtype=np.float32), np.ascontiguousarray(ign), bg.level
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
        alpha = _opacity(field, rng.uniform(0.15, 0.7), rng.uniform(0.3, 0.6)) * rng.uniform(0.15, 0.9)
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
    bgs: list[Background],
    rng: np.random.Generator,
    cfg: SyntheticConfig = SyntheticConfig(),
    donors: list[CloudDonor] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One sample: ``(image (13, S, S) float32 reflectance, label (S, S) uint8)``."""
    parts = synthesize_parts(bgs, rng, cfg, donors)
    return parts["image"], parts["label"]


def synthesize_parts(
    bgs: list[Background],
    rng: np.random.Generator,
    cfg: SyntheticConfig = SyntheticConfig(),
    donors: list[CloudDonor] | None = None,
) -> dict[str, np.ndarray]:
    """One sample with its making-of: ``image``, ``label``, ``background``, ``water``,
    ``cloud_alpha``, ``shadow`` (the shadow's opacity before clouds cover it) and ``sun``
    (azimuth, zenith, cloud height and the shadow offset in pixels)."""
    s = cfg.size
    img, ignore, level = _background_crop(bgs, cfg, rng)
    water = _water(img)
    m = int(np.ceil(cfg.max_shadow_shift)) + 2
    canvas = (s + 2 * m, s + 2 * m)
    inner = (slice(m, m + s), slice(m, m + s))

    thick = np.zeros(canvas, np.float32)
    thin = np.zeros(canvas, np.float32)
    thick_b = thin_b = np.zeros(canvas, np.float32)
    real_spec = None
    u = rng.random()
    if u >= cfg.p_clear + cfg.p_thin_only:
        layer = _donor_layer(donors, canvas, rng) if donors and rng.random() < cfg.p_real_cloud else None
        if layer is not None:
            thick, real_spec = layer
        else:
            thick, thick_b = _cloud_layer(canvas, rng, thin=False)
    if cfg.p_clear <= u < cfg.p_clear + cfg.p_thin_only or (
        u >= cfg.p_clear + cfg.p_thin_only and rng.random() < cfg.p_thin_layer
    ):
        thin, thin_b = _cloud_layer(canvas, rng, thin=True)

    # shadows: the clouds' opacity displaced along the sun direction, blurred, not on water
    shadow = np.zeros((s, s), np.float32)
    sun = sample_sun_geometry(rng, cfg)
    if thick.any() and rng.random() < cfg.p_shadow:
        cast = _shift(np.maximum(thick, 0.6 * thin), sun["dy"], sun["dx"])
        cast = ndimage.gaussian_filter(cast, rng.uniform(0.5, 2.0))[inner]
        shadow = np.where(water, 0.0, cast * rng.uniform(0.8, 1.0)).astype(np.float32)
    bands = BAND_NAMES
    trans = np.array([SHADOW_TRANSMISSION[b] for b in bands], np.float32)[:, None, None]
    trans = np.clip(trans * rng.uniform(0.75, 1.3), 0.1, 0.7)
    path = np.array([PATH_REFLECTANCE[b] for b in bands], np.float32)[:, None, None] * rng.uniform(0.4, 1.1)
    path = np.minimum(path, 0.7 * img) * (level == "L1C")  # surface reflectance has no path term
    out = path + (img - path) * (1.0 - shadow[None] * (1.0 - trans))

    # clouds over everything
    spec = _cloud_spectrum(bands, rng)[:, None, None]
    if real_spec is not None:  # real cloud pixels, spectra and texture as observed
        a = thick[inner][None]
        out = out * (1.0 - a) + real_spec[:, inner[0], inner[1]] * a
    layers = ((thin[inner], thin_b[inner]),) if real_spec is not None else ()
    if real_spec is None:
        layers = ((thick[inner], thick_b[inner]), (thin[inner], thin_b[inner]))
    for alpha, bright in layers:
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
        "sun": sun,
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
    teacher: str | Path | None = None,
) -> Path:
    """Write ``counts`` samples per split (``{"train": 2000, "validation": 200}``) as npz shards.

    Each shard holds ``x`` (N, 13, S, S) uint16 DN (reflectance * 10000), ``y`` (N, S, S)
    uint8 labels and ``bands``; ``manifest.json`` lists the shards per split.  Shards are
    written to temporary names and renamed into place.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bgs = load_backgrounds(shared_data)
    donors = load_donors(teacher) if teacher else []
    rng = np.random.default_rng(seed)
    manifest: dict = {
        "format": "s2mask-shards/1",
        "bands": list(BAND_NAMES),
        "scale": 1e-4,
        "size": cfg.size,
        "generator": "training.synthetic",
        "seed": seed,
        "backgrounds": [b.name for b in bgs],
        "cloud_donors": [d.name for d in donors],
        "splits": {},
    }
    for split, n in counts.items():
        files = []
        for start in range(0, n, shard_size):
            k = min(shard_size, n - start)
            xs = np.empty((k, len(BAND_NAMES), cfg.size, cfg.size), np.uint16)
            ys = np.empty((k, cfg.size, cfg.size), np.uint8)
            for i in range(k):
                x, y = synthesize(bgs, rng, cfg, donors)
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
