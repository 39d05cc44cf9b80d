"""The real, unlabelled Sentinel-2 scenes of ``../shared/data`` that training may use.

Each loader returns :class:`RealScene` objects: reflectance per band (float32, NaN =
nodata), the processing level taken from the product's own metadata or its
documentation (``MANIFEST.md``), and the split it belongs to.  Scoring data is never
returned here: the ukis scene, rows 428- of the s2cloudless scene
(:data:`S2CLOUDLESS_HELDOUT_ROW`) and the Accra chip (its Sen2Cor
SCL is an evaluation reference) are left out by construction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from s2mask.bands import BANDS
from s2mask.model.runtime import file_sha256

__all__ = ["RealScene", "real_scenes", "file_sha256", "EXCLUDED", "S2CLOUDLESS_HELDOUT_ROW"]

S2CLOUDLESS_HELDOUT_ROW = 428
"""Rows of the s2cloudless scene from here on are held out for scoring (never trained or calibrated on)."""

EXCLUDED = (
    "ukis_testscene (scoring: reference mask)",
    "s2cloudless_testscene rows 428-855 (scoring: held-out rows)",
    "mdebris_l2a_scl/accra.tif (scoring: Sen2Cor SCL third opinion)",
    "cloudsen12_rgb_humanlabels (RGB only: no B08)",
)
"""What :func:`real_scenes` never returns, and why."""

_ESA13 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
_ESA12 = tuple(b for b in _ESA13 if b != "B10")


@dataclass(frozen=True)
class RealScene:
    """One real scene (or patch) with the facts a teacher and a student need."""

    name: str
    """Unique name, ``folder/item``."""
    level: str
    """``"L1C"`` (top of atmosphere) or ``"L2A"`` (surface reflectance)."""
    bands: dict[str, np.ndarray] = field(repr=False)
    """Band name -> (H, W) float32 reflectance, NaN = nodata."""
    source: str = ""
    """Path of the file, relative to the shared data folder."""
    split: str = "train"
    """``train`` or ``validation``."""
    note: str = ""
    """Anything a reader of the provenance should know."""
    clear: bool = False
    """Documented cloud-free by its source: every valid pixel is labelled clear (exact),
    whatever a teacher says (bright salt, sand, snow and roofs must stay clear)."""

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.bands.values())).shape


def _stack(names, arr: np.ndarray, scale: float, offset: float = 0.0, nodata=None) -> dict[str, np.ndarray]:
    out = {}
    invalid = np.all(arr == nodata, axis=0) if nodata is not None else None
    for i, b in enumerate(names):
        if b not in BANDS:
            continue
        x = arr[i].astype(np.float32) * np.float32(scale) + np.float32(offset)
        x = np.clip(x, 0.0, 1.0)
        if invalid is not None and invalid.any():
            x[invalid] = np.nan
        out[b] = x
    return out


def _tif(path: Path, names=None, scale: float = 1e-4, offset: float = 0.0) -> dict[str, np.ndarray]:
    import rasterio

    with rasterio.open(path) as src:
        arr = src.read()
        names = names or src.descriptions
        nodata = src.nodata
    return _stack(names, arr, scale, offset, nodata)


def _upsample(a: np.ndarray, f: int) -> np.ndarray:
    return np.repeat(np.repeat(a, f, axis=0), f, axis=1)


def _bigearthnet(root: Path) -> Iterator[RealScene]:
    path = root / "bigearthnet_patches" / "bigearthnet_patches.npz"
    with np.load(path) as d:
        images, names, ids = d["images"], [str(b) for b in d["bands"]], [str(p) for p in d["patch_ids"]]
        cloudy, snow = d["contains_cloud_or_shadow"], d["contains_seasonal_snow"]
    for i, pid in enumerate(ids):
        note = "BigEarthNet flags: " + ", ".join(
            f for f, on in (("cloud or shadow", cloudy[i]), ("seasonal snow", snow[i])) if on
        )
        yield RealScene(
            f"bigearthnet/{pid}",
            "L2A",
            _stack(names, images[i], 1e-4),
            source="bigearthnet_patches/bigearthnet_patches.npz",
            split="validation" if i % 6 == 0 else "train",
            note=note if note.endswith(("shadow", "snow")) else "",
            clear=not cloudy[i],  # BigEarthNet v2 flags every patch with cloud or shadow
        )


def _dsen2(root: Path) -> Iterator[RealScene]:
    for path in sorted((root / "dsen2_l1c").glob("*.npz")):
        with np.load(path) as d:
            bands = {}
            for key, f in (("10m", 1), ("20m", 2), ("60m", 6)):
                for b, a in zip(d[f"bands_{key}"], d[f"b{key}"], strict=True):
                    bands[str(b)] = np.clip(_upsample(a.astype(np.float32) * 1e-4, f), 0, 1)
        yield RealScene(
            f"dsen2/{path.stem}",
            "L1C",
            bands,
            source=f"dsen2_l1c/{path.name}",
            note="salt lake: bright ground, not cloud" if "T49JGM" in path.stem else "",
            clear=True,
        )


def _limassol(root: Path) -> Iterator[RealScene]:
    path = root / "mdebris_l2a_scl" / "limassol.tif"
    meta = json.loads(path.with_suffix(".json").read_text())
    bands = _tif(path, scale=meta["reflectance_scale"], offset=meta["reflectance_offset"])
    yield RealScene("mdebris/limassol", "L2A", bands, source="mdebris_l2a_scl/limassol.tif", clear=True)


def _aberystwyth(root: Path) -> Iterator[RealScene]:
    path = root / "rsgislib_aberystwyth" / "sen2_20210527_aber_mosaic.tif"
    yield RealScene(
        "rsgislib/aberystwyth",
        "L2A",
        _tif(path, scale=1e-3),
        source="rsgislib_aberystwyth/sen2_20210527_aber_mosaic.tif",
        note="ARCSI surface reflectance x 1000",
        clear=True,
    )


def _scg(root: Path) -> Iterator[RealScene]:
    # the values are reflectance x 10000 (clear blue 0.047), not x 1000 as the source says
    for name in ("clean", "cloudy"):
        yield RealScene(
            f"scg/{name}",
            "L2A",
            _tif(root / "scg_clear_cloudy_pair" / f"{name}.tif", scale=1e-4),
            source=f"scg_clear_cloudy_pair/{name}.tif",
            note="level not documented; surface-like blue reflectance, taken as L2A",
            clear=name == "clean",
        )


def _boadella(root: Path) -> Iterator[RealScene]:
    for i, path in enumerate(sorted((root / "eotdl_boadella").glob("*.tif"))):
        yield RealScene(
            f"eotdl_boadella/{path.stem[-8:]}",
            "L2A",
            _tif(path, scale=1e-4),
            source=f"eotdl_boadella/{path.name}",
            split="validation" if i == 0 else "train",
        )


def _s2cloudless(root: Path) -> Iterator[RealScene]:
    with np.load(root / "s2cloudless_testscene" / "input_arrays.npz") as d:
        img = d["s2_im"][0, :S2CLOUDLESS_HELDOUT_ROW]
    yield RealScene(
        "s2cloudless/rows0-427",
        "L1C",
        {b: np.ascontiguousarray(img[..., i], dtype=np.float32) for i, b in enumerate(_ESA13)},
        source="s2cloudless_testscene/input_arrays.npz",
        note=f"rows 0-{S2CLOUDLESS_HELDOUT_ROW - 1} only",
    )


def _nigeria(root: Path) -> Iterator[RealScene]:
    path = root / "sen12mscr_nigeria" / "ROIs1868_summer_s2_cloudy_19_p30.tif"
    yield RealScene(
        "sen12mscr/nigeria",
        "L1C",
        _tif(path, _ESA13),
        source=str(path.relative_to(root)),
        split="validation",  # real cumulus and shadows to choose checkpoints by
    )


def _slovenia(root: Path) -> Iterator[RealScene]:
    scenes = np.load(root / "eolearn_slovenia" / "REFERENCE_SCENES.npy")
    for i, s in enumerate(scenes):
        yield RealScene(
            f"eolearn_slovenia/{i}",
            "L1C",
            {b: np.ascontiguousarray(s[..., k], dtype=np.float32) for k, b in enumerate(_ESA13)},
            source="eolearn_slovenia/REFERENCE_SCENES.npy",
            clear=True,
        )


_LOADERS = (
    ("bigearthnet_patches", _bigearthnet),
    ("dsen2_l1c", _dsen2),
    ("mdebris_l2a_scl", _limassol),
    ("rsgislib_aberystwyth", _aberystwyth),
    ("scg_clear_cloudy_pair", _scg),
    ("eotdl_boadella", _boadella),
    ("s2cloudless_testscene", _s2cloudless),
    ("sen12mscr_nigeria", _nigeria),
    ("eolearn_slovenia", _slovenia),
)


def real_scenes(shared_data: str | Path, *, only: tuple[str, ...] | None = None) -> list[RealScene]:
    """Every usable real scene under ``shared_data`` (folders that are absent are skipped).

    ``only`` restricts the result to the named folders (e.g. ``("dsen2_l1c",)``).
    """
    root = Path(shared_data)
    out: list[RealScene] = []
    for folder, load in _LOADERS:
        if only is not None and folder not in only:
            continue
        if (root / folder).exists():
            out.extend(load(root))
    return out
