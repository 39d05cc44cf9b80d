"""Plain GeoTIFF image/label pairs as training data.

Layout: ``<root>/images/<name>.tif`` with ``<root>/labels/<name>.tif`` (same names),
or the same below ``<root>/train``, ``<root>/validation``, ``<root>/test``.  Without
split folders, sorted pairs are split deterministically: every 10th pair (index 9 mod
10) is test, index 8 mod 10 validation, the rest train.

Image bands are named by the GeoTIFF band descriptions (``B02`` ...); without them a
13-, 9-, 6- or 4-band file is read as ESA 13 bands, s2-9, s2-6 or rgbn.  Integer
images are DN (reflectance = DN / 10000); float images with values above 2 too.
Labels are project classes (0 clear, 1 cloud, 2 shadow, 255 ignored) unless
``<root>/label_mapping.json`` maps other values (e.g. CloudSEN12's ``{"0":0,"1":1,"2":1,"3":2}``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from s2mask.bands import PRESETS, canonical_band
from s2mask.errors import BandMismatchError, TrainingDataError
from training.labels import all_ignored, remap_labels

__all__ = ["GeoTiffPairSource", "is_geotiff_pairs", "pair_files", "read_image_bands"]

_BY_COUNT = {13: PRESETS["s2-13"], 9: PRESETS["s2-9"], 6: PRESETS["s2-6"], 4: PRESETS["rgbn"]}


def is_geotiff_pairs(path: Path) -> bool:
    """True for a folder with ``images/`` and ``labels/`` (directly or below a split folder)."""
    return path.is_dir() and any((path / s / "images").is_dir() for s in ("", "train", "validation", "test"))


def pair_files(root: Path, split: str) -> list[tuple[Path, Path]]:
    """The (image, label) pairs of ``split``."""
    if (root / split / "images").is_dir():
        base, pick = root / split, None
    else:
        base, pick = root, split
    images = sorted(p for p in (base / "images").iterdir() if p.suffix.lower() in (".tif", ".tiff"))
    pairs = []
    for i, img in enumerate(images):
        lab = base / "labels" / img.name
        if not lab.exists():
            raise TrainingDataError(
                f"Image {img} has no label {lab}; every image needs a label with its name."
            )
        kind = "test" if i % 10 == 9 else "validation" if i % 10 == 8 else "train"
        if pick is None or kind == pick:
            pairs.append((img, lab))
    return pairs


def read_image_bands(src) -> tuple[str, ...]:
    """Band names of an open rasterio dataset from its descriptions or its band count."""
    desc = src.descriptions
    if all(desc):
        try:
            return tuple(canonical_band(d) for d in desc)
        except Exception:
            pass
    if src.count in _BY_COUNT:
        return _BY_COUNT[src.count]
    raise BandMismatchError(
        f"{src.name} has {src.count} bands without band names; expected descriptions B02.. or 13/9/6/4 bands."
    )


class GeoTiffPairSource:
    """Pairs read lazily with rasterio; samples with all-255 labels are skipped."""

    def __init__(self, root: str | Path, *, split: str, bands: tuple[str, ...]) -> None:
        import rasterio

        self.root, self.bands, self.name = Path(root), tuple(bands), f"{Path(root).name}:{split}"
        mapping_file = self.root / "label_mapping.json"
        self.mapping = (
            {int(k): int(v) for k, v in json.loads(mapping_file.read_text()).items()}
            if mapping_file.exists()
            else {0: 0, 1: 1, 2: 2}
        )
        self.items: list[tuple[Path, Path, list[int]]] = []
        for img, lab in pair_files(self.root, split):
            with rasterio.open(img) as src:
                have = read_image_bands(src)
            missing = [b for b in self.bands if b not in have]
            if missing:
                raise BandMismatchError(f"{img} lacks bands {', '.join(missing)}; it has {', '.join(have)}.")
            with rasterio.open(lab) as src:
                if all_ignored(self._labels(src.read(1))):
                    continue
            self.items.append((img, lab, [have.index(b) + 1 for b in self.bands]))

    def _labels(self, raw: np.ndarray) -> np.ndarray:
        return remap_labels(raw, self.mapping)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        import rasterio

        img, lab, idx = self.items[i]
        with rasterio.open(img) as src:
            x = src.read(idx).astype(np.float32)
            if src.nodata is not None:
                x[x == src.nodata] = np.nan
            if src.dtypes[0].startswith(("uint", "int")) or np.nanmax(x) > 2:
                x = x / 10000.0
        with rasterio.open(lab) as src:
            y = self._labels(src.read(1))
        return np.clip(x, 0, 1).astype(np.float32), y  # NaN stays nodata: normalize fills it
