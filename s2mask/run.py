"""``s2mask run``: products in, cloud/shadow mask COGs (with summary and quick-look) out.

The orchestrator reads as its steps: check outputs, open, predict, mask, write,
summarise.  Every stage lives in its own module; this one only wires them.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from s2mask.errors import (
    InvalidParameterError,
    NoValidDataError,
    OutputError,
    OutputExistsError,
    ProductNotFoundError,
    S2MaskError,
)
from s2mask.model.card import model_info
from s2mask.options import EngineOptions, InputOptions

__all__ = [
    "RunOptions",
    "RunResult",
    "BatchReport",
    "output_paths",
    "check_run",
    "run_product",
    "mask_cube",
    "run_many",
    "product_stem",
    "mask_is_valid",
]


@dataclass(frozen=True, kw_only=True)
class RunOptions(InputOptions, EngineOptions):
    """How one product is turned into a mask: the shared input and model options, and the outputs."""

    bands: tuple[str, ...] | None = None
    """The same option as ``input_bands`` (its first name here); give either."""
    probabilities: bool = False
    """Also write per-class probabilities (uint8 0-100) as ``<out>_proba.tif``."""
    quicklook: bool = True
    """Write ``<out>.png`` (true colour with the mask overlaid)."""
    summary: bool = True
    """Write ``<out>.json`` (class fractions, model, timing)."""
    stac_item: bool = True
    """Write ``<out>.stac.json``, the mask's STAC Item (and, in a batch, ``index.geojson`` of all Items)."""
    overwrite: bool = False
    """Replace existing outputs."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        if self.bands is None or self.input_bands is None:
            names = self.bands or self.input_bands
            object.__setattr__(self, "bands", names)
            object.__setattr__(self, "input_bands", names)
        elif tuple(self.bands) != tuple(self.input_bands):
            raise InvalidParameterError(
                f"RunOptions got bands={self.bands} and input_bands={self.input_bands}; they are one option "
                "(the band names of GeoTIFF inputs). Give one of them."
            )


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
    paths = {"mask": out, "mask_classes": Path(f"{out}.aux.xml")}  # GDAL category names beside the mask
    if options.summary:
        paths["summary"] = stem.with_suffix(".json")
    if options.quicklook:
        paths["quicklook"] = stem.with_suffix(".png")
    if options.probabilities:
        paths["probabilities"] = Path(f"{stem}_proba.tif")
    if options.stac_item:
        from s2mask.stac_out import item_path

        paths["stac_item"] = item_path(out)
    return paths


def _check_outputs(paths: dict[str, Path], overwrite: bool) -> None:
    """Refuse before any work: existing outputs (unless overwrite), a folder we cannot write."""
    from s2mask._atomic import ensure_folder

    for p in paths.values():
        if p.suffix.lower() not in {".tif", ".tiff", ".json", ".png", ".xml"}:
            raise OutputError(
                f"Output {p} has suffix {p.suffix!r}; expected a mask path ending in .tif. "
                "Give -o mask.tif for one product or -o FOLDER for several."
            )
        if p.is_dir():
            raise OutputError(f"Output {p} is a folder; expected a file path. Give a file name inside it.")
        if p.exists() and not overwrite:
            raise OutputExistsError(
                f"Output {p} already exists; s2mask does not replace files unless asked. "
                "Pass --overwrite to replace it, or --resume to skip products whose mask is valid."
            )
    ensure_folder(paths["mask"].parent)


def check_run(product: str | Path, out: str | Path, options: RunOptions = RunOptions()) -> None:
    """The checks :func:`run_product` makes before any work (cheap: no model, no pixels).

    Raises:
        ProductNotFoundError: ``product`` does not exist.
        OutputExistsError, OutputError: see :func:`mask_cube`; also an output that is the product itself.
    """
    local = not str(product).startswith("/vsi")
    if local and not Path(product).expanduser().exists():
        raise ProductNotFoundError(f"The product {product} does not exist; check the path.")
    paths = output_paths(out, options)
    for target in paths.values():
        if local and target.exists() and target.resolve() == Path(product).expanduser().resolve():
            raise OutputError(
                f"The output {target} is the input product itself; expected a different path. "
                "Choose another -o path (s2mask never overwrites its input)."
            )
    _check_outputs(paths, options.overwrite)


def run_product(product: str | Path, out: str | Path, *, model: Any, options: RunOptions = RunOptions()) -> RunResult:
    """Mask one product (SAFE folder, zipped SAFE or GeoTIFF) and write ``out`` as a COG.

    Outputs are checked before any work (see :func:`mask_cube`), the product is opened
    lazily and handed to :func:`mask_cube`.

    Raises:
        S2MaskError subclasses only for problems with the inputs or outputs; nothing is
        left at the output paths when one is raised.
    """
    from s2mask.io.product import open_product

    check_run(product, out, options)
    read = {**options.read_kwargs(), "chunks": _read_chunks(model, options)}  # chunks aligned with the engine's
    cube = open_product(product, bands=model.bands, **read)
    rgb = (lambda: _rgb(cube, product, options)) if options.quicklook else None
    return mask_cube(cube, out, model=model, options=options, rgb=rgb, source=str(product))


def _read_chunks(model: Any, options: RunOptions) -> Any:
    """Read chunks aligned with the engine's blocks and window halos (:func:`s2mask.engine.input_chunks`)."""
    from s2mask.engine.predict import input_chunks

    return partial(input_chunks, model=model, chunks=options.chunks, window=options.window, overlap=options.overlap)


def mask_cube(
    cube: Any,
    out: str | Path,
    *,
    model: Any,
    options: RunOptions = RunOptions(),
    rgb: Any = None,
    source: str | None = None,
) -> RunResult:
    """The per-cube pipeline of ``s2mask run``: predict, mask, write COG (+ probabilities, quick-look, summary).

    ``cube`` follows the reader contract (lazy ``("band", "y", "x")`` reflectance).  ``rgb`` is
    the true-colour cube for the quick-look (or a callable returning it); by default the
    cube's own B04/B03/B02, and no quick-look when it has none.

    Every output is first written to a hidden temporary file beside its target; only when
    all of them are complete and the mask holds at least one valid pixel are they renamed
    into place, the mask last, so a run stopped at any moment (even by SIGKILL) leaves
    either no mask or a complete, valid one, and ``--resume`` redoes it when absent.

    Raises:
        OutputExistsError, OutputError: an output exists (without ``overwrite``) or cannot be written.
        NoValidDataError: every pixel of the cube is nodata (nothing is written).
    """
    from s2mask._atomic import OutputTransaction, remove_stale_temps
    from s2mask.engine import compute_blocks, predict
    from s2mask.io.cog import probabilities_to_uint8, write_cogs
    from s2mask.mask import NODATA, mask_write_options, to_mask
    from s2mask.summary import mask_summary

    t0 = time.perf_counter()
    paths = output_paths(out, options)
    _check_outputs(paths, options.overwrite)
    if options.overwrite:  # what a killed run of these outputs left behind
        remove_stale_temps(paths["mask"].parent, older_than_s=0, targets=paths.values())
    # the mask's .aux.xml (class names) is the writer's side file of the mask: published with it
    outputs = OutputTransaction({k: p for k, p in paths.items() if k != "mask_classes"},
                                overwrite=options.overwrite, last="mask")
    with outputs:
        staged = outputs.staged
        # predict and write the mask to its temporary file
        with _window_bar(cube, model, options, paths["mask"].name) as bar:
            probs = predict(cube, model, chunks=options.chunks, progress=bar.update if bar else None,
                            **options.predict_kwargs())
            tags = _mask_tags(cube, model)
            rasters = [(to_mask(probs), staged["mask"], mask_write_options(tags=tags))]
            if options.probabilities:  # in the same pass: the model runs once for both files
                rasters.append((probabilities_to_uint8(probs), staged["probabilities"],
                                {"nodata": NODATA, "band_descriptions": list(map(str, probs["class"].values)),
                                 "tags": tags, "overview_resampling": "average"}))
            write_cogs(rasters, progress=options.progress and bar is None, compute=compute_blocks)
        t_mask = time.perf_counter()
        written = _open_written_mask(staged["mask"])
        summary = mask_summary(written)
        _require_valid_pixels(summary, source or cube.attrs.get("source", ""), paths["mask"])

        # the other outputs, from the written mask
        if options.quicklook:
            _write_quicklook(cube, rgb, written, staged["quicklook"])
        if options.summary:
            from s2mask.summary import write_summary

            summary.update(
                product_id=_product_id(cube, source, out),
                source=str(source or cube.attrs.get("source", "")),
                model={**model_info(model), "bands": list(model.bands)},
                timing={"mask_seconds": round(t_mask - t0, 3), "total_seconds": round(time.perf_counter() - t0, 3)},
            )
            write_summary(staged["summary"], summary)
        if options.stac_item:  # last: it lists the other outputs that were written
            _write_stac_item(cube, summary, model, source, paths, staged)

        outputs.publish()  # everything else first, the mask (what --resume checks) last
    extras = {k: v for k, v in paths.items() if k != "mask" and v.exists()}
    return RunResult(str(source or cube.attrs.get("source", "")), paths["mask"], extras, summary)


def _product_id(cube: Any, source: str | None, out: str | Path) -> str:
    return str(cube.attrs.get("product_id") or Path(str(source or out)).name)


def _write_stac_item(
    cube: Any,
    summary: dict[str, Any],
    model: Any,
    source: str | None,
    paths: dict[str, Path],
    staged: dict[str, Path],
) -> None:
    """The mask's STAC Item, from the staged mask's grid and the run's summary, into its staged path."""
    from s2mask.stac_out import RasterInfo, acquisition_datetime, mask_item, write_item

    written = [k for k in ("summary", "quicklook", "probabilities") if k in staged and staged[k].exists()]
    item = mask_item(
        RasterInfo.read(staged["mask"]),
        summary,
        item_id=_product_id(cube, source, paths["mask"]),
        href=paths["mask"].name,
        when=acquisition_datetime(cube.attrs),
        source=source or cube.attrs.get("source"),
        model=model_info(model),
        siblings={k: paths[k].name for k in written},
    )
    write_item(item, staged["stac_item"])


def _require_valid_pixels(summary: dict[str, Any], source: str, target: Path) -> None:
    counts = summary.get("counts", {})
    if counts.get("total", 0) and not counts.get("valid", 0):
        raise NoValidDataError(
            f"{source} holds no valid pixel: all {counts['total']} pixels are nodata (DN 0) in the model's bands, "
            f"so no mask was written to {target}. Expected a product with data; check that it covers your area "
            "(an all-nodata tile edge) or download it again."
        )


def _write_quicklook(cube: Any, rgb: Any, mask: Any, path: Path) -> None:
    from s2mask.quicklook import write_quicklook

    if callable(rgb):
        rgb = rgb()
    if rgb is None:
        have = {str(b) for b in cube["band"].values}
        if not {"B04", "B03", "B02"} <= have:
            return
        rgb = cube.sel(band=["B04", "B03", "B02"])
    write_quicklook(rgb, mask, path)


@contextlib.contextmanager
def _window_bar(cube: Any, model: Any, options: RunOptions, name: str) -> Iterator[Any]:
    """A progress bar of model windows (local schedulers); None when quiet or on a cluster.

    On a dask.distributed cluster the engine cannot call back into this process, so the
    writer's bar of finished blocks is shown instead.
    """
    if not options.progress or _distributed_client_active():
        yield None
        return
    from s2mask.engine import count_windows
    from s2mask.progress import progress_bar

    total = count_windows(cube, model, window=options.window, overlap=options.overlap)
    with progress_bar(total, desc=name, enabled=True, unit="window") as bar:
        yield bar


def _distributed_client_active() -> bool:
    if "distributed" not in sys.modules:  # no client can exist: don't pay its import
        return False
    try:
        from distributed import default_client

        default_client()
        return True
    except (ImportError, ValueError):
        return False


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
    """The quick-look's true colour: from the opened product's overviews, else its own full-resolution read."""
    from s2mask.io.product import open_product
    from s2mask.quicklook import preview_rgb

    rgb = ("B04", "B03", "B02")
    if set(rgb) <= {str(b) for b in cube["band"].values}:
        small = preview_rgb(cube)  # the product opened for the model, read at the quick-look's size
        if small is not cube:
            return small
    try:  # no overviews (or no RGB among the model's bands): the three bands alone, not every model band
        return preview_rgb(open_product(product, bands=rgb, **options.read_kwargs()))
    except S2MaskError:
        if all(b in cube["band"].values for b in rgb):
            return cube.sel(band=list(rgb))
        raise


@dataclass
class BatchReport:
    """Outcome of a batch: what was written, skipped and what failed (with the reason)."""

    done: list[RunResult] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    index: Path | None = None
    """The batch's STAC ItemCollection (``index.geojson``) of the written and skipped masks' Items."""

    @property
    def ok(self) -> bool:
        return not self.failed


def mask_is_valid(path: Path) -> bool:
    """True when ``path`` is a complete, valid COG (what ``--resume`` keeps).

    The COG structure is validated (``rio_cogeo``) and every full-resolution block is
    decoded, so a file cut short or damaged after its header is redone, not kept.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        import rasterio
        from rasterio.windows import Window
        from rio_cogeo.cogeo import cog_validate

        if not cog_validate(str(path), quiet=True)[0]:
            return False
        with rasterio.open(path) as ds:
            rows = max(ds.block_shapes[0][0], 512)
            for y in range(0, ds.height, rows):
                ds.read(window=Window(0, y, ds.width, min(rows, ds.height - y)))
        return True
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
    """Mask many products into ``out_dir`` as ``<product id>_mask.tif``; continue past failures.

    A product that fails (any exception but ``KeyboardInterrupt``/``MemoryError``) is recorded
    in :attr:`BatchReport.failed` with a one-line reason and the others go on; ``on_error``
    is called with it as it happens.  With ``resume``, products whose mask exists and is a
    valid COG are skipped and any other existing output of theirs is replaced.  With
    ``options.stac_item``, ``out_dir/index.geojson`` is the STAC ItemCollection of the Items of
    the masks written or kept (and ``s2mask:failures``: each failed product and why).

    Raises:
        OutputError: ``out_dir`` is a file or cannot be created (before any product runs).
    """
    from s2mask._atomic import ensure_folder, remove_stale_temps
    from s2mask._batch import run_batch

    out_dir = ensure_folder(out_dir)
    remove_stale_temps(out_dir)  # temporaries of runs killed hours ago (SIGKILL cannot clean up)
    opts = _with_overwrite(options) if resume else options  # --resume redoes absent or invalid masks in place
    outcomes = run_batch(
        [(str(p), out_dir / f"{product_stem(p)}_mask.tif") for p in products],
        lambda i, name, out: run_product(products[i], out, model=model, options=opts),
        skip=mask_is_valid if resume else None,
        on_error=on_error,
    )
    report = BatchReport()
    for o in outcomes:
        if o.status == "done":
            report.done.append(o.value)
        elif o.status == "skipped":
            report.skipped.append(o.target)
        else:
            report.failed.append((o.name, o.reason))
    if options.stac_item:
        report.index = _write_index(out_dir, report)
    return report


def _write_index(out_dir: Path, report: BatchReport) -> Path:
    """``index.geojson``: the Items beside the masks written or kept, and the failures."""
    from s2mask.stac_out import INDEX_NAME, item_path, read_item, write_item_collection

    masks = [r.mask for r in report.done] + list(report.skipped)
    items = [i for i in (read_item(item_path(m)) for m in masks) if i is not None]
    failures = [{"product": name, "error": reason} for name, reason in report.failed]
    return write_item_collection(out_dir / INDEX_NAME, items, **{"s2mask:failures": failures})


def product_stem(product: str | Path) -> str:
    """The product's name without ``.SAFE``, ``.zip`` or ``.tif`` (``S2A_MSIL2A_...``)."""
    name = Path(str(product).rstrip("/")).name
    for suffix in (".zip", ".SAFE", ".safe", ".tiff", ".tif", ".TIF"):
        name = name.removesuffix(suffix)
    return name


def _with_overwrite(options: RunOptions) -> RunOptions:
    from dataclasses import replace

    return replace(options, overwrite=True)
