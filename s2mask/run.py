"""``s2mask run``: products in, cloud/shadow mask COGs (with summary and quick-look) out.

The orchestrator reads as its steps: check outputs, open, predict, mask, write,
summarise.  Every stage lives in its own module; this one only wires them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s2mask.errors import OutputError, OutputExistsError, S2MaskError

__all__ = ["RunOptions", "RunResult", "BatchReport", "output_paths", "run_product", "run_many", "product_stem", "mask_is_valid"]


@dataclass(frozen=True)
class RunOptions:
    """How one product is turned into a mask."""

    resolution: int = 10
    """Output grid in metres (10, 20 or 60)."""
    window: int | None = None
    """Window size in px (default: the model card's)."""
    overlap: int | None = None
    """Overlap between windows in px (default: window // 8)."""
    batch_size: int = 8
    """Windows per model call."""
    chunks: int = 2048
    """Dask chunk size (px) of the lazy cube; bounds memory."""
    resampling: str = "nearest"
    """How 20/60 m bands reach the grid: ``nearest`` or ``bilinear``."""
    bands: tuple[str, ...] | None = None
    """Band names of a GeoTIFF input whose file does not describe them."""
    scale: float | None = None
    """GeoTIFF input: reflectance = DN * scale + offset (default 1e-4)."""
    offset: float | None = None
    """GeoTIFF input offset (default 0)."""
    probabilities: bool = False
    """Also write per-class probabilities (uint8 0-100) as ``<out>_proba.tif``."""
    quicklook: bool = True
    """Write ``<out>.png`` (true colour with the mask overlaid)."""
    summary: bool = True
    """Write ``<out>.json`` (class fractions, model, timing)."""
    overwrite: bool = False
    """Replace existing outputs."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class RunResult:
    """What one run produced."""

    product: str
    mask: Path
    extras: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def output_paths(out: str | Path, options: RunOptions) -> dict[str, Path]:
    """All files a run writes for mask path ``out``."""
    out = Path(out)
    stem = out.with_suffix("")
    paths = {"mask": out}
    if options.summary:
        paths["summary"] = stem.with_suffix(".json")
    if options.quicklook:
        paths["quicklook"] = stem.with_suffix(".png")
    if options.probabilities:
        paths["probabilities"] = Path(f"{stem}_proba.tif")
    return paths


def _check_outputs(paths: dict[str, Path], overwrite: bool) -> None:
    """Refuse before any work: existing outputs (unless overwrite), a folder we cannot write."""
    for p in paths.values():
        if p.suffix.lower() not in {".tif", ".tiff", ".json", ".png"}:
            raise OutputError(f"Output {p} has suffix {p.suffix!r}; expected a .tif mask path.")
        if p.exists() and not overwrite:
            raise OutputExistsError(f"Output {p} already exists; pass --overwrite to replace it, or --resume to skip it.")
    parent = paths["mask"].parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"Output folder {parent} is a file; give an output path inside a folder.")
    parent.mkdir(parents=True, exist_ok=True) if not parent.exists() else None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"Output folder {parent} is not writable; choose another -o path or fix its permissions.")


def run_product(product: str | Path, out: str | Path, *, model: Any, options: RunOptions = RunOptions()) -> RunResult:
    """Mask one product (SAFE folder, zipped SAFE or GeoTIFF) and write ``out`` as a COG."""
    from s2mask.engine import predict
    from s2mask.io.cog import mask_colormap, probabilities_to_uint8, write_cog
    from s2mask.io.product import open_product
    from s2mask.mask import to_mask

    t0 = time.perf_counter()
    paths = output_paths(out, options)
    _check_outputs(paths, options.overwrite)
    cube = open_product(product, bands=model.bands, resolution=options.resolution, resampling=options.resampling,
                        chunks=options.chunks, scale=options.scale, offset=options.offset,
                        band_names=options.bands)
    probs = predict(cube, model, window=options.window, overlap=options.overlap, batch_size=options.batch_size)
    mask = to_mask(probs)
    tags = _mask_tags(cube, model)
    write_cog(mask, paths["mask"], nodata=255, colormap=mask_colormap(), tags=tags,
              overview_resampling="mode", overwrite=options.overwrite, progress=options.progress)
    t_mask = time.perf_counter()
    if options.probabilities:
        write_cog(probabilities_to_uint8(probs), paths["probabilities"], nodata=255,
                  band_descriptions=list(map(str, probs["class"].values)), tags=tags,
                  overview_resampling="average", overwrite=options.overwrite, progress=options.progress)
    result = RunResult(str(product), paths["mask"], {k: v for k, v in paths.items() if k != "mask"})
    written = _open_written_mask(paths["mask"])
    if options.quicklook:
        from s2mask.quicklook import write_quicklook

        write_quicklook(_rgb(cube, product, options), written, paths["quicklook"], overwrite=options.overwrite)
    if options.summary:
        from s2mask.summary import mask_summary, write_summary

        result.summary = mask_summary(written)
        result.summary.update(
            product_id=cube.attrs.get("product_id", Path(str(product)).name),
            source=str(product),
            model={"name": model.card.name, "version": model.card.version, "bands": list(model.bands)},
            resolution=options.resolution,
            timing={"mask_seconds": round(t_mask - t0, 3), "total_seconds": round(time.perf_counter() - t0, 3)},
        )
        write_summary(paths["summary"], result.summary, overwrite=options.overwrite)
    return result


def _mask_tags(cube: Any, model: Any) -> dict[str, str]:
    from s2mask import __version__

    return {
        "PRODUCT_ID": str(cube.attrs.get("product_id", "")),
        "PROCESSING_BASELINE": str(cube.attrs.get("processing_baseline", "")),
        "MODEL": str(model.card.name),
        "MODEL_VERSION": str(model.card.version),
        "S2MASK_VERSION": __version__,
    }


def _open_written_mask(path: Path) -> Any:
    import rioxarray

    return rioxarray.open_rasterio(path, chunks=2048).squeeze("band", drop=True)


def _rgb(cube: Any, product: str | Path, options: RunOptions) -> Any:
    rgb = ("B04", "B03", "B02")
    if all(b in cube["band"].values for b in rgb):
        return cube.sel(band=list(rgb))
    from s2mask.io.product import open_product

    return open_product(product, bands=rgb, resolution=options.resolution, chunks=options.chunks,
                        scale=options.scale, offset=options.offset, band_names=options.bands)


@dataclass
class BatchReport:
    """Outcome of a batch: what was written, skipped and what failed (with the reason)."""

    done: list[RunResult] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def mask_is_valid(path: Path) -> bool:
    """True when ``path`` is a complete, valid COG (what ``--resume`` keeps)."""
    if not path.is_file():
        return False
    try:
        from rio_cogeo.cogeo import cog_validate

        return bool(cog_validate(str(path), quiet=True)[0])
    except Exception:
        return False


def run_many(
    products: Sequence[str | Path],
    out_dir: str | Path,
    *,
    model: Any,
    options: RunOptions = RunOptions(),
    resume: bool = False,
    on_error: Callable[[str, Exception], None] | None = None,
) -> BatchReport:
    """Mask many products into ``out_dir`` as ``<product id>_mask.tif``; continue past failures."""
    report = BatchReport()
    out_dir = Path(out_dir)
    for product in products:
        out = out_dir / f"{product_stem(product)}_mask.tif"
        if resume and mask_is_valid(out):
            report.skipped.append(out)
            continue
        try:
            opts = options if not resume else _with_overwrite(options)
            report.done.append(run_product(product, out, model=model, options=opts))
        except S2MaskError as exc:
            report.failed.append((str(product), str(exc)))
            if on_error:
                on_error(str(product), exc)
    return report


def product_stem(product: str | Path) -> str:
    """The product's name without ``.SAFE``, ``.zip`` or ``.tif`` (``S2A_MSIL2A_...``)."""
    name = Path(str(product).rstrip("/")).name
    for suffix in (".zip", ".SAFE", ".safe", ".tiff", ".tif", ".TIF"):
        name = name.removesuffix(suffix)
    return name


def _with_overwrite(options: RunOptions) -> RunOptions:
    from dataclasses import replace

    return replace(options, overwrite=True)
