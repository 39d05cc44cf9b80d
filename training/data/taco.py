"""CloudSEN12 through tacoreader: the current format and the legacy v1 ``.taco`` parts.

* current format: ``tacoreader.load`` on a ``.tacozip``, a ``.tacocat`` folder or a list
  of ``.tacozip`` files; every sample is a folder whose children are the image
  (``s2l1c`` / ``s2l2a`` / first child) and the label (``target`` / ``label`` / last child);
* legacy v1: ``tacoreader.v1.load`` on one ``.taco`` file, a list of parts
  (``cloudsen12-l1c.0000.part.taco`` ...) or a folder holding them; ``sample.read(0)``
  is the image and ``sample.read(1)`` the label.

Images are L1C (13 bands B01..B12 with B8A and B10) or L2A (12 bands, no B10) DN,
read as DN / 10000 clipped to [0, 1] (band descriptions are used when present).
Labels are CloudSEN12 classes remapped to the project's (0 clear, 1 and 2 cloud,
3 shadow -> 0, 1, 1, 2, others 255); samples whose labels are all 255 are skipped.

Metadata columns are looked up under the names CloudSEN12 and tacotoolbox use
(``tortilla:data_split`` / ``split``, ``label_type``, ``stac:centroid`` / ``lon``+``lat``,
``cloud_cover`` or ``thick_percentage + thin_percentage``) so filters work on both.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2mask.bands import BAND_NAMES, canonical_band
from s2mask.errors import BandMismatchError, InvalidParameterError, TrainingDataError
from training.labels import all_ignored, remap_cloudsen12

__all__ = ["TacoFilter", "TacoSource", "REGIONS", "is_taco", "taco_files"]

L1C_BANDS = BAND_NAMES
L2A_BANDS = tuple(b for b in BAND_NAMES if b != "B10")

REGIONS: dict[str, tuple[float, float, float, float]] = {
    "mexico": (-118.5, 14.5, -86.5, 32.8),
    "usa": (-125.0, 24.5, -66.9, 49.4),
    "europe": (-25.0, 34.0, 45.0, 72.0),
    "africa": (-18.0, -35.0, 52.0, 37.5),
    "south-america": (-82.0, -56.0, -34.0, 13.0),
    "india": (68.0, 6.5, 97.5, 35.5),
    "australia": (112.0, -44.0, 154.0, -10.0),
}
"""Named regions (minx, miny, maxx, maxy in degrees) for ``--region``."""

_SPLIT_COLS = ("tortilla:data_split", "split", "data_split")
_COVER_COLS = ("cloud_cover", "cloud_coverage", "cloud_percentage", "eo:cloud_cover")
_SPLIT_ALIASES = {
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "train": "train",
    "test": "test",
}


@dataclass(frozen=True)
class TacoFilter:
    """Which CloudSEN12 samples to keep (``None`` keeps everything)."""

    label_type: str | None = None
    """``high`` (full human labels) or ``scribble`` (``nolabel`` samples have no usable label)."""
    bbox: tuple[float, float, float, float] | None = None
    """minx, miny, maxx, maxy in degrees: keep samples whose centroid is inside."""
    cloud_cover: tuple[float, float] | None = None
    """Inclusive range of cloud cover in percent."""
    level: str | None = None
    """``L1C`` or ``L2A``: the dataset must be of this level."""

    @classmethod
    def from_options(
        cls, *, label_type=None, bbox=None, region=None, cloud_cover=None, level=None
    ) -> TacoFilter:
        """Build from CLI strings (``bbox="minx,miny,maxx,maxy"``, ``region="mexico"``, ``cloud_cover="0,60"``)."""
        box = None
        if bbox and region:
            raise InvalidParameterError("Give --bbox or --region, not both.")
        if region:
            key = region.strip().lower()
            if key not in REGIONS:
                raise InvalidParameterError(
                    f"Unknown region {region!r}; expected one of {', '.join(REGIONS)} or use --bbox."
                )
            box = REGIONS[key]
        elif bbox:
            box = _floats(bbox, 4, "--bbox", "minx,miny,maxx,maxy")
            if box[0] >= box[2] or box[1] >= box[3]:
                raise InvalidParameterError(f"--bbox {bbox} is empty; expected minx < maxx and miny < maxy.")
        cover = _floats(cloud_cover, 2, "--cloud-cover", "min,max") if cloud_cover else None
        return cls(label_type=label_type, bbox=box, cloud_cover=cover, level=level.upper() if level else None)


def _floats(text: str, n: int, opt: str, shape: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        vals = ()
    if len(vals) != n:
        raise InvalidParameterError(f"{opt} {text!r} is malformed; expected {shape}.")
    return vals


def taco_files(path: Path) -> list[Path]:
    """The taco files behind ``path``: itself, or the ``.taco``/``.tacozip`` parts in a folder."""
    if path.is_dir() and path.suffix != ".tacocat":
        parts = sorted(p for p in path.iterdir() if p.suffix in (".taco", ".tacozip"))
        return parts
    return [path]


def is_taco(path: Path) -> bool:
    """True for a ``.taco``, ``.tacozip``, ``.tacocat`` or a folder of taco parts."""
    if path.suffix in (".taco", ".tacozip", ".tacocat") and path.exists():
        return True
    return path.is_dir() and bool(taco_files(path))


# ---------------------------------------------------------------- metadata


def _centroid(row: dict) -> tuple[float, float] | None:
    if row.get("lon") is not None and row.get("lat") is not None:
        return float(row["lon"]), float(row["lat"])
    for key in ("stac:centroid", "istac:centroid", "centroid"):
        v = row.get(key)
        if isinstance(v, str):
            m = re.search(r"POINT\s*\(\s*([-\d.eE+]+)\s+([-\d.eE+]+)", v)
            if m:
                return float(m.group(1)), float(m.group(2))
        elif isinstance(v, (bytes, bytearray)) and len(v) >= 21:  # WKB point
            fmt = "<dd" if v[0] == 1 else ">dd"
            return struct.unpack(fmt, bytes(v[5:21]))
    return None


def _cloud_cover(row: dict) -> float | None:
    for key in _COVER_COLS:
        if row.get(key) is not None:
            return float(row[key])
    if row.get("thick_percentage") is not None:
        return float(row["thick_percentage"]) + float(row.get("thin_percentage") or 0.0)
    return None


def _split_of(row: dict) -> str | None:
    for key in _SPLIT_COLS:
        if row.get(key) is not None:
            return _SPLIT_ALIASES.get(str(row[key]).lower(), str(row[key]).lower())
    return None


def _keep(row: dict, split: str, f: TacoFilter | None, name: str) -> bool:
    s = _split_of(row)
    if s is not None and s != split:
        return False
    if f is None:
        return True
    if f.label_type and row.get("label_type") is not None and str(row["label_type"]) != f.label_type:
        return False
    if f.bbox:
        c = _centroid(row)
        if c is None:
            raise TrainingDataError(
                f"{name} has no centroid column (stac:centroid or lon/lat); cannot filter by bbox."
            )
        if not (f.bbox[0] <= c[0] <= f.bbox[2] and f.bbox[1] <= c[1] <= f.bbox[3]):
            return False
    if f.cloud_cover:
        cc = _cloud_cover(row)
        if cc is None:
            raise TrainingDataError(
                f"{name} has no cloud cover column (cloud_cover or thick_percentage/thin_percentage)."
            )
        if not (f.cloud_cover[0] <= cc <= f.cloud_cover[1]):
            return False
    return True


def _level_of(paths: list[Path], child_ids: list[str]) -> str | None:
    text = " ".join([p.name.lower() for p in paths] + [c.lower() for c in child_ids])
    if "l2a" in text:
        return "L2A"
    if "l1c" in text:
        return "L1C"
    return None


# ---------------------------------------------------------------- readers


def _image_and_label(children: list[tuple[str, str]]) -> tuple[str, str]:
    """Pick (image, label) VSI paths among (id, path) children."""
    label = next(
        (p for i, p in children if i.lower() in ("target", "label", "labels", "mask")), children[-1][1]
    )
    image = next(
        (p for i, p in children if i.lower().startswith(("s2l1c", "s2l2a", "s2", "image", "l1c", "l2a"))),
        None,
    )
    if image is None:
        image = next(p for _, p in children if p != label)
    return image, label


class _V2:
    """Current taco format through ``tacoreader.load``."""

    def __init__(self, paths: list[Path]) -> None:
        import tacoreader

        arg = [str(p) for p in paths] if len(paths) > 1 else str(paths[0])
        self.ds = tacoreader.load(arg)
        self.rows = self.ds.data.to_arrow().to_pylist()

    def children(self, i: int) -> list[tuple[str, str]]:
        return [(c["id"], c["internal:gdal_vsi"]) for c in self.ds.data.read(i).to_arrow().to_pylist()]


class _V1:
    """Legacy v1 ``.taco`` parts through ``tacoreader.v1``."""

    def __init__(self, paths: list[Path]) -> None:
        import tacoreader.v1 as v1

        arg = [str(p) for p in paths] if len(paths) > 1 else str(paths[0])
        self.df = v1.load(arg).reset_index(drop=True)
        self.rows = self.df.to_dict("records")

    def children(self, i: int) -> list[tuple[str, str]]:
        sample = self.df.read(i)
        return [(str(sample.iloc[k]["tortilla:id"]), str(sample.read(k))) for k in range(len(sample))]


class TacoSource:
    """CloudSEN12 samples of one split, after filters, read lazily with rasterio."""

    def __init__(
        self, path: str | Path, *, split: str, bands: tuple[str, ...], filters: TacoFilter | None = None
    ):
        p = Path(path)
        files = taco_files(p)
        if not files:
            raise TrainingDataError(f"{p} holds no .taco or .tacozip file.")
        legacy = all(f.suffix == ".taco" for f in files)
        try:
            self.reader = _V1(files) if legacy else _V2(files)
        except TrainingDataError:
            raise
        except Exception as exc:
            raise TrainingDataError(
                f"tacoreader cannot read {p} ({type(exc).__name__}: {exc}); expected a CloudSEN12 "
                f"{'v1 .taco part' if legacy else '.tacozip/.tacocat'}."
            ) from exc
        self.bands, self.filters, self.name = tuple(bands), filters, f"{p.name}:{split}"
        self.index = [i for i, row in enumerate(self.reader.rows) if _keep(row, split, filters, p.name)]
        self.label_type = {i: str(self.reader.rows[i].get("label_type", "")) for i in self.index}
        self._files = files
        self._checked_level = False
        self._skip_empty()
        if self.index and filters is not None and filters.level:
            self[0]  # raises when the dataset's level differs from the one asked for

    def _skip_empty(self) -> None:
        """Drop samples whose labels are all 255 (reading labels only)."""
        import rasterio

        kept = []
        for i in self.index:
            if self.label_type.get(i) == "nolabel":
                continue
            _, lab = _image_and_label(self.reader.children(i))
            with rasterio.open(lab) as src:
                if all_ignored(remap_cloudsen12(src.read(1))):
                    continue
            kept.append(i)
        self.index = kept

    def __len__(self) -> int:
        return len(self.index)

    def _band_index(self, src, child_ids: list[str]) -> list[int]:
        if all(src.descriptions):
            try:
                have = tuple(canonical_band(d) for d in src.descriptions)
            except Exception:
                have = ()
        else:
            have = ()
        if not have:
            have = {13: L1C_BANDS, 12: L2A_BANDS}.get(src.count, ())
        if not have:
            raise BandMismatchError(
                f"A sample image has {src.count} unnamed bands; expected 13 (L1C) or 12 (L2A) CloudSEN12 bands."
            )
        missing = [b for b in self.bands if b not in have]
        if missing:
            raise BandMismatchError(
                f"The dataset images lack {', '.join(missing)}; they have {', '.join(have)}."
            )
        if self.filters and self.filters.level and not self._checked_level:
            level = _level_of(self._files, child_ids) or ("L1C" if "B10" in have else "L2A")
            if level != self.filters.level:
                raise TrainingDataError(
                    f"The dataset is {level} but --level {self.filters.level} was asked for."
                )
            self._checked_level = True
        return [have.index(b) + 1 for b in self.bands]

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        import rasterio

        children = self.reader.children(self.index[k])
        img, lab = _image_and_label(children)
        with rasterio.open(img) as src:
            x = src.read(self._band_index(src, [c[0] for c in children])).astype(np.float32)
        with rasterio.open(lab) as src:
            y = remap_cloudsen12(src.read(1))
        return np.clip(x / 10000.0, 0.0, 1.0), y
