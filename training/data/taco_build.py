"""Write small CloudSEN12-shaped taco datasets (current format and legacy v1).

Used by the tests (CloudSEN12 itself is not reachable offline) and useful to pack
one's own labelled patches so ``s2mask train`` reads them like CloudSEN12.

Each sample is a folder with two GeoTIFF children, ``s2l1c`` (or ``s2l2a``) holding
the image DN and ``target`` holding CloudSEN12 labels (0 clear, 1 thick, 2 thin,
3 shadow), plus metadata columns (``tortilla:data_split``, ``label_type``,
``stac:centroid``, ``thick_percentage``, ``thin_percentage`` ...).
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TacoSample", "geotiff_bytes", "write_taco", "write_taco_v1"]


@dataclass(frozen=True)
class TacoSample:
    """One CloudSEN12-like sample."""

    id: str
    """Sample id (e.g. ``ROI_0001``)."""
    image: np.ndarray
    """(C, H, W) uint16 DN (reflectance * 10000)."""
    label: np.ndarray
    """(H, W) uint8 CloudSEN12 classes (0 clear, 1 thick, 2 thin, 3 shadow, 255 nodata)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Metadata columns (split, label type, centroid, cloud percentages...)."""
    epsg: int = 32633
    """CRS of the GeoTIFFs."""
    origin: tuple[float, float] = (500000.0, 5000000.0)
    """Upper-left corner (x, y) in CRS units; pixels are 10 m."""


def geotiff_bytes(a: np.ndarray, *, epsg: int, origin: tuple[float, float], descriptions=None) -> bytes:
    """A GeoTIFF in memory of ``a`` ((C, H, W) or (H, W)) with 10 m pixels."""
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    arr = a[None] if a.ndim == 2 else a
    with MemoryFile() as mem:
        with mem.open(
            driver="GTiff",
            height=arr.shape[1],
            width=arr.shape[2],
            count=arr.shape[0],
            dtype=arr.dtype,
            crs=f"EPSG:{epsg}",
            transform=from_origin(*origin, 10, 10),
        ) as dst:
            dst.write(arr)
            if descriptions:
                for i, d in enumerate(descriptions, 1):
                    dst.set_band_description(i, d)
        return mem.read()


def _children(s: TacoSample, image_id: str) -> list[tuple[str, bytes]]:
    return [
        (image_id, geotiff_bytes(s.image, epsg=s.epsg, origin=s.origin)),
        ("target", geotiff_bytes(s.label.astype(np.uint8), epsg=s.epsg, origin=s.origin)),
    ]


def write_taco(
    path: str | Path,
    samples: list[TacoSample],
    *,
    image_id: str = "s2l1c",
    dataset_id: str = "cloudsen12-mini",
) -> Path:
    """Write ``samples`` as a current-format ``.tacozip`` with tacotoolbox."""
    import tacotoolbox
    from tacotoolbox.datamodel import Sample, Taco, Tortilla

    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for s in samples:
            kids = []
            for cid, data in _children(s, image_id):
                f = Path(tmp) / f"{s.id}_{cid}.tif"
                f.write_bytes(data)
                kids.append(Sample(id=cid, path=f))
            sample = Sample(id=s.id, path=Tortilla(samples=kids))
            if s.metadata:
                sample.extend_with(dict(s.metadata))
            rows.append(sample)
        taco = Taco(
            tortilla=Tortilla(samples=rows),
            id=dataset_id,
            dataset_version="0.1.0",
            description="CloudSEN12-shaped patches",
            licenses=["CC-BY-4.0"],
            providers=[{"name": "s2mask"}],
            tasks=["semantic-segmentation"],
        )
        tmp_out = path.with_name(f".{path.stem}.tmp{path.suffix}")
        tacotoolbox.create(taco, tmp_out, output_format="zip", split_size=None)
        tmp_out.replace(path)
    return path


# ---------------------------------------------------------------- legacy v1 writer

_HEADER = 200


def _parquet(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def _tortilla(children: list[tuple[str, bytes]]) -> bytes:
    """A v1 Tortilla ("#y"): 200-byte header, the files, a parquet footer (offsets relative)."""
    body, rows, offset = [], [], _HEADER
    for cid, data in children:
        rows.append(
            {
                "tortilla:id": cid,
                "tortilla:file_format": "GTiff",
                "tortilla:offset": offset,
                "tortilla:length": len(data),
            }
        )
        body.append(data)
        offset += len(data)
    footer = _parquet(rows)
    head = (
        b"#y" + offset.to_bytes(8, "little") + len(footer).to_bytes(8, "little") + (1).to_bytes(8, "little")
    )
    return head.ljust(_HEADER, b"\0") + b"".join(body) + footer


def write_taco_v1(
    path: str | Path, samples: list[TacoSample], *, image_id: str = "s2l1c", collection: dict | None = None
) -> Path:
    """Write ``samples`` as one legacy v1 TACO (``WX``) file, as the CloudSEN12 ``.part.taco`` files."""
    path = Path(path)
    body, rows, offset = [], [], _HEADER
    for s in samples:
        blob = _tortilla(_children(s, image_id))
        rows.append(
            {
                "tortilla:id": s.id,
                "tortilla:file_format": "TORTILLA",
                "tortilla:offset": offset,
                "tortilla:length": len(blob),
                **s.metadata,
            }
        )
        body.append(blob)
        offset += len(blob)
    coll = json.dumps(collection or {"id": "cloudsen12-mini", "taco:version": "0.5.0"}).encode()
    coll_offset = offset
    footer_offset = offset + len(coll)
    footer = _parquet(rows)
    head = (
        b"WX"
        + footer_offset.to_bytes(8, "little")
        + len(footer).to_bytes(8, "little")
        + (1).to_bytes(8, "little")
        + coll_offset.to_bytes(8, "little")
        + len(coll).to_bytes(8, "little")
    )
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(head.ljust(_HEADER, b"\0") + b"".join(body) + coll + footer)
    tmp.replace(path)
    return path


def real_patch_samples(
    shared_data: str | Path, *, n: int = 6, size: int = 64, seed: int = 0
) -> list[TacoSample]:
    """CloudSEN12-shaped samples cut from the real 13-band s2cloudless test scene.

    Images are the scene's L1C reflectance as DN (uint16); labels come from the
    s2cloudless probabilities (>0.7 thick, 0.4-0.7 thin) plus dark non-water pixels
    next to clouds as shadow.  Splits cycle train/train/validation/test; label types
    alternate high/scribble; centroids, cloud percentages and a Mexico/Europe position
    are set so every filter has something to select.
    """
    from scipy import ndimage

    with np.load(Path(shared_data) / "s2cloudless_testscene" / "input_arrays.npz") as d:
        img, prob = d["s2_im"][0], d["cl_probs"][0]
    rng = np.random.default_rng(seed)
    splits = ("train", "train", "validation", "test")
    out = []
    for i in range(n):
        r, c = int(rng.integers(0, img.shape[0] - size)), int(rng.integers(0, img.shape[1] - size))
        x = img[r : r + size, c : c + size].transpose(2, 0, 1)
        p = prob[r : r + size, c : c + size]
        lab = np.zeros((size, size), np.uint8)
        lab[(p > 0.4) & (p <= 0.7)] = 2
        lab[p > 0.7] = 1
        g, nir = x[2], x[7]
        water = (g - nir) / np.maximum(g + nir, 1e-6) > 0.05
        near = ndimage.binary_dilation(p > 0.4, iterations=8)
        lab[(nir < np.percentile(nir, 15)) & ~water & near & (lab == 0)] = 3
        thick, thin = float((lab == 1).mean() * 100), float((lab == 2).mean() * 100)
        lon, lat = (-100.0 + i, 20.0) if i % 3 != 2 else (10.0 + i, 45.0)
        out.append(
            TacoSample(
                id=f"ROI_{i:04d}",
                image=np.round(np.clip(x, 0, 1) * 10000).astype(np.uint16),
                label=lab,
                metadata={
                    "tortilla:data_split": splits[i % 4],
                    "label_type": "high" if i % 2 == 0 else "scribble",
                    "stac:centroid": f"POINT ({lon} {lat})",
                    "thick_percentage": thick,
                    "thin_percentage": thin,
                    "cloud_shadow_percentage": float((lab == 3).mean() * 100),
                },
            )
        )
    return out
