"""``s2mask stac``: search a STAC API, mask every item found, index the outputs.

The orchestrator reads as its steps: search, plan the outputs, and for each item open
the lazy cube and hand it to the per-cube pipeline (the same one ``s2mask run`` uses),
then write an index of what was produced.  A failed item is recorded and the others go
on; the caller decides the exit code from :attr:`StacRunResult.failures`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s2mask._batch import run_batch
from s2mask.bands import DEFAULT_BANDS
from s2mask.errors import EmptySearchError, InvalidParameterError, OutputError, OutputExistsError
from s2mask.io._remote import RemoteReads
from s2mask.io.stac import (
    DEFAULT_SCHEMES,
    StacPreset,
    find_preset,
    open_stac_item,
    search_items,
)
from s2mask.params import BBox, DateRange, parse_bbox, parse_date_range
from s2mask.stac_out import INDEX_NAME as _INDEX_NAME

if TYPE_CHECKING:
    from s2mask.run import RunOptions

__all__ = [
    "INDEX_NAME",
    "ItemFailure",
    "ItemOutput",
    "StacRunResult",
    "describe_plan",
    "mask_fractions",
    "output_stem",
    "run_stac",
]

log = logging.getLogger(__name__)

INDEX_NAME = _INDEX_NAME
"""File name of the output index: the STAC ItemCollection of the masks' Items (hence also GeoJSON)."""

RunOne = Callable[[Any, Path], Any]
"""``run_one(cube, out_path)``: predict, write the mask COG (plus summary and quick-look)."""


@dataclass(frozen=True)
class ItemOutput:
    """One item's outputs (or, in a dry run, what they would be)."""

    item_id: str
    mask: Path
    datetime: str
    cloud_cover: float | None
    """The provider's ``eo:cloud_cover`` in percent."""
    fractions: Mapping[str, float | None] = field(default_factory=dict)
    """Fraction of valid pixels per class (``clear``, ``cloud``, ``shadow``) and ``nodata`` of all pixels."""
    status: str = "done"
    """``done``, ``skipped`` (resume found it), or ``planned`` (dry run)."""


@dataclass(frozen=True)
class ItemFailure:
    """An item that could not be processed."""

    item_id: str
    error: str


@dataclass(frozen=True)
class StacRunResult:
    """What :func:`run_stac` did."""

    outputs: tuple[ItemOutput, ...]
    failures: tuple[ItemFailure, ...]
    index: Path | None
    """The written index, ``None`` in a dry run."""
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """No item failed."""
        return not self.failures


def output_stem(item_id: str) -> str:
    """A file-name-safe stem for an item id (path separators and odd characters become ``_``)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", item_id).strip("._")
    return stem or "item"


def mask_fractions(path: str | Path) -> dict[str, float | None]:
    """Class fractions of a written mask (as in its JSON summary), counted block by block."""
    import numpy as np
    import rasterio

    from s2mask.mask import fractions_from_counts

    counts = np.zeros(256, dtype=np.int64)
    with rasterio.open(path) as src:
        for _, window in src.block_windows(1):
            counts += np.bincount(src.read(1, window=window).ravel(), minlength=256)[:256]
    return fractions_from_counts(counts)


def run_stac(
    *,
    url: str,
    collection: str,
    bbox: BBox | Sequence[float] | str,
    date: DateRange | str,
    out_dir: str | Path,
    run_one: RunOne | None = None,
    model: Any = None,
    options: RunOptions | None = None,
    bands: Sequence[str] | None = None,
    max_cloud: float | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    crop: bool = True,
    resume: bool = False,
    preset: StacPreset | None = None,
    allowed_schemes: Sequence[str] = DEFAULT_SCHEMES,
    timeout: float = 30,
    retries: int = 3,
    backoff: float = 0.5,
    on_item: Callable[[int, int, str], None] | None = None,
) -> StacRunResult:
    """Search ``collection`` at ``url`` and write one mask per item into ``out_dir``.

    ``options`` are ``s2mask run``'s (:class:`~s2mask.run.RunOptions`, the same input and model
    options as every command).  Each item is opened lazily with
    :func:`~s2mask.io.stac.open_stac_item` (cropped to ``bbox`` when ``crop``, else the whole
    tile) with the model's bands (``model.bands``, or ``bands``) at ``options.resolution``
    (default 10 m), ``options.resampling`` and ``options.chunks``, then
    ``run_one(cube, out_dir / "<item id>_mask.tif")`` writes the mask (and its ``.json``
    summary and ``.png`` quick-look beside it).  By default that is ``s2mask run``'s own
    pipeline (:func:`s2mask.run.mask_cube` with ``model`` and ``options``, replacing files
    when ``options.overwrite`` or ``resume``); a custom ``run_one`` must replace existing
    files itself when ``options.overwrite`` or ``resume`` is set.  Existing masks are refused
    before any work unless ``options.overwrite`` (redo all) or ``resume`` (skip the valid
    COGs, redo partial ones).  Failed items
    are logged and listed in the result; the others go on.  ``index.geojson``, the STAC
    ItemCollection of the masks' Items (each also beside its mask as ``<stem>.stac.json``, see
    :mod:`s2mask.stac_out`, with ``s2mask:status`` and the source item's id, collection, API and
    ``eo:cloud_cover`` as ``s2mask:source_*``; ``s2mask:failures`` lists the failed items), is written
    atomically.
    ``dry_run`` searches and returns the plan without writing anything.

    Raises:
        InvalidParameterError, StacError, EmptySearchError: from the search.
        OutputExistsError: an output exists and neither ``overwrite`` nor ``resume`` is set.
        OutputError: ``out_dir`` cannot be created or written.
    """
    # normalise arguments and search
    from s2mask.run import RunOptions

    box, dates = parse_bbox(bbox), parse_date_range(date)
    options = options or RunOptions()
    overwrite = options.overwrite
    run_one = run_one or _mask_pipeline(model, options, overwrite=overwrite or resume)
    bands = tuple(bands or getattr(model, "bands", None) or DEFAULT_BANDS)
    preset = preset or find_preset(url=url, collection=collection)
    items = search_items(
        url=url, collection=collection, bbox=box, date=dates, max_cloud=max_cloud, limit=limit,
        timeout=timeout, retries=retries, backoff=backoff,
    )  # fmt: skip
    out_dir = Path(out_dir)
    plan = [(item, out_dir / f"{output_stem(item.id)}_mask.tif") for item in items]
    if len({p for _, p in plan}) != len(plan):
        raise OutputError("Two items map to the same output name; their ids differ only in odd characters.")
    if dry_run:
        outputs = tuple(_output(item, path, status="planned") for item, path in plan)
        return StacRunResult(outputs, (), None, dry_run=True)
    _prepare_out_dir(out_dir, [p for _, p in plan], overwrite=overwrite, resume=resume)

    # one item at a time (the batch loop of s2mask run): open lazily, run the pipeline, count the classes
    remote = RemoteReads(timeout=timeout, retries=retries, backoff=backoff)

    def work(i: int, item_id: str, path: Path) -> dict[str, float | None]:
        cube = open_stac_item(
            plan[i][0], bands=bands, resolution=options.resolution or 10, bbox=box if crop else None,
            chunks=options.chunks, resampling=options.resampling, preset=preset, allowed_schemes=allowed_schemes,
            remote=remote,
        )  # fmt: skip
        run_one(cube, path)
        return mask_fractions(path)

    outcomes = run_batch(
        [(item.id, path) for item, path in plan], work, skip=_is_complete if resume and not overwrite else None,
        on_start=on_item, on_error=lambda item_id, exc: log.error("Item %s failed: %s", item_id, exc),
    )  # fmt: skip
    outputs: list[ItemOutput] = []
    failures: list[ItemFailure] = []
    for (item, path), o in zip(plan, outcomes, strict=True):
        if o.status == "failed":
            failures.append(ItemFailure(item.id, o.reason))
        else:
            fractions = o.value if o.status == "done" else _safe_fractions(path)
            outputs.append(_output(item, path, status=o.status, fractions=fractions))

    # the index of what exists now
    index = _write_index(out_dir / INDEX_NAME, plan, outputs, failures, url=url, collection=collection)
    return StacRunResult(tuple(outputs), tuple(failures), index)


def _output(
    item: Any, path: Path, *, status: str, fractions: Mapping[str, float | None] | None = None
) -> ItemOutput:
    cloud = (item.properties or {}).get("eo:cloud_cover")
    return ItemOutput(
        item_id=item.id,
        mask=path,
        datetime=item.datetime.isoformat() if item.datetime else "",
        cloud_cover=None if cloud is None else float(cloud),
        fractions=dict(fractions or {}),
        status=status,
    )


def _is_complete(path: Path) -> bool:
    """A mask a previous run finished (a valid COG); a partial one is redone."""
    from s2mask.run import mask_is_valid

    return mask_is_valid(path)


def _safe_fractions(path: Path) -> dict[str, float | None]:
    try:
        return mask_fractions(path)
    except Exception as exc:  # noqa: BLE001 - a stale file from an older run
        log.warning("Cannot read existing mask %s (%s); its fractions are left out of the index.", path, exc)
        return {}


def _mask_pipeline(model: Any, options: RunOptions, *, overwrite: bool) -> RunOne:
    """``s2mask run``'s per-cube pipeline (predict, mask, COG, summary, quick-look) for one item."""
    from dataclasses import replace

    from s2mask.run import mask_cube

    if model is None:
        raise InvalidParameterError("run_stac() needs a model (or a run_one); pass model=load_model('s2-9').")
    opts = replace(options, overwrite=overwrite)

    def run_one(cube: Any, path: Path) -> Any:
        return mask_cube(cube, path, model=model, options=opts, source=cube.attrs.get("source"))

    return run_one


def _prepare_out_dir(out_dir: Path, paths: Sequence[Path], *, overwrite: bool, resume: bool) -> None:
    """Create ``out_dir``; refuse existing masks unless ``overwrite`` or ``resume``."""
    from s2mask._atomic import ensure_folder

    ensure_folder(out_dir)
    existing = [p for p in paths if p.exists()]
    if existing and not (overwrite or resume):
        names = ", ".join(p.name for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise OutputExistsError(
            f"{len(existing)} output(s) already exist in {out_dir} ({names}); pass --overwrite to "
            "replace them or --resume to skip them."
        )


def _write_index(
    target: Path,
    plan: Sequence[tuple[Any, Path]],
    outputs: Sequence[ItemOutput],
    failures: Sequence[ItemFailure],
    *,
    url: str,
    collection: str,
) -> Path:
    """Write the STAC ItemCollection of the outputs atomically: each mask's Item and how this run got it.

    A mask's Item is the ``<stem>.stac.json`` written with it; a mask without a current one (a custom
    ``run_one``, ``--no-stac-item``, an older run) gets one built from the mask and its fractions.
    """
    from s2mask.stac_out import write_item_collection

    by_id = {o.item_id: o for o in outputs}
    features = []
    for item, path in plan:
        out = by_id.get(item.id)
        if out is None:
            continue
        feature = _current_item(path) or _item_from_mask(item, path, out)
        feature["properties"].update({
            "s2mask:status": out.status,
            "s2mask:source_item": item.id,
            "s2mask:source_collection": collection,
            "s2mask:source_api": url,
            "s2mask:source_cloud_cover": out.cloud_cover,
        })  # fmt: skip
        features.append(feature)
    failed = [{"item_id": f.item_id, "error": f.error} for f in failures]
    return write_item_collection(target, features, **{"s2mask:failures": failed})


def _current_item(mask: Path) -> dict[str, Any] | None:
    """The Item written with ``mask`` (published before it, so not older), else ``None``."""
    from s2mask.stac_out import item_path, read_item

    path = item_path(mask)
    try:
        if path.stat().st_mtime < mask.stat().st_mtime:
            return None  # left by an earlier run of a mask written again since
    except OSError:
        return None
    return read_item(path)


def _item_from_mask(item: Any, path: Path, out: ItemOutput) -> dict[str, Any]:
    from s2mask.io.stac import _self_href
    from s2mask.stac_out import RasterInfo, mask_item

    siblings = {key: path.with_suffix(suffix).name for key, suffix in (("summary", ".json"), ("quicklook", ".png"))
                if path.with_suffix(suffix).exists()}  # fmt: skip
    built = mask_item(
        RasterInfo.read(path), {"fractions": out.fractions}, item_id=item.id, href=path.name,
        when=item.datetime, source=_self_href(item), siblings=siblings,
    )  # fmt: skip
    return built.to_dict(include_self_link=False, transform_hrefs=False)


def describe_plan(result: StacRunResult) -> str:
    """One line per item for ``--dry-run``: id, date, provider cloud cover, output path."""
    if not result.outputs:
        raise EmptySearchError("The search found nothing to process.")
    lines = []
    for o in result.outputs:
        cloud = "   ?" if o.cloud_cover is None else f"{o.cloud_cover:5.1f}%"
        lines.append(f"{o.item_id}  {o.datetime[:19]}  cloud {cloud}  -> {o.mask}")
    return "\n".join(lines)
