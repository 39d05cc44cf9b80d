"""``s2mask stac``: search a STAC API, mask every item found, index the outputs.

The orchestrator reads as its steps: search, plan the outputs, and for each item open
the lazy cube and hand it to the per-cube pipeline (the same one ``s2mask run`` uses),
then write an index of what was produced.  A failed item is recorded and the others go
on; the caller decides the exit code from :attr:`StacRunResult.failures`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

INDEX_NAME = "index.geojson"
"""File name of the output index (a STAC ItemCollection, hence also GeoJSON)."""

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
    options: Any = None,
    bands: Sequence[str] | None = None,
    max_cloud: float | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    crop: bool = True,
    resolution: float = 10,
    resampling: str = "nearest",
    chunks: int = 2048,
    overwrite: bool = False,
    resume: bool = False,
    preset: StacPreset | None = None,
    allowed_schemes: Sequence[str] = DEFAULT_SCHEMES,
    timeout: float = 30,
    retries: int = 3,
    backoff: float = 0.5,
    on_item: Callable[[int, int, str], None] | None = None,
) -> StacRunResult:
    """Search ``collection`` at ``url`` and write one mask per item into ``out_dir``.

    Each item is opened lazily with :func:`~s2mask.io.stac.open_stac_item` (cropped to
    ``bbox`` when ``crop``, else the whole tile) with the model's bands (``model.bands``,
    or ``bands``), then ``run_one(cube, out_dir / "<item id>_mask.tif")`` writes the
    mask (and its ``.json`` summary and ``.png`` quick-look beside it).  By default that is
    ``s2mask run``'s own pipeline (:func:`s2mask.run.mask_cube` with ``model`` and ``options``,
    a :class:`~s2mask.run.RunOptions`, replacing files when ``overwrite`` or ``resume``); a
    custom ``run_one`` must replace existing files itself when ``overwrite`` or ``resume``
    is set.  Existing masks are refused before any work unless ``overwrite``
    (redo all) or ``resume`` (skip the valid COGs, redo partial ones).  Failed items
    are logged and listed in the result; the others go on.  ``index.geojson`` (a STAC
    ItemCollection with each output's class fractions) is written atomically.
    ``dry_run`` searches and returns the plan without writing anything.

    Raises:
        InvalidParameterError, StacError, EmptySearchError: from the search.
        OutputExistsError: an output exists and neither ``overwrite`` nor ``resume`` is set.
        OutputError: ``out_dir`` cannot be created or written.
    """
    # normalise arguments and search
    box, dates = parse_bbox(bbox), parse_date_range(date)
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
            plan[i][0], bands=bands, resolution=resolution, bbox=box if crop else None, chunks=chunks,
            preset=preset, allowed_schemes=allowed_schemes, remote=remote, resampling=resampling,
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


def _mask_pipeline(model: Any, options: Any, *, overwrite: bool) -> RunOne:
    """``s2mask run``'s per-cube pipeline (predict, mask, COG, summary, quick-look) for one item."""
    from dataclasses import replace

    from s2mask.run import RunOptions, mask_cube

    if model is None:
        raise InvalidParameterError("run_stac() needs a model (or a run_one); pass model=load_model('s2-9').")
    opts = replace(options or RunOptions(), overwrite=overwrite)

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


def _mask_legend() -> str:
    from s2mask.mask import category_names

    return ", ".join(f"{v} {name}" for v, name in category_names().items())


def _assets(path: Path) -> dict[str, dict[str, Any]]:
    assets = {
        "mask": {
            "href": path.name,
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
            "title": f"Cloud and shadow mask ({_mask_legend()})",
        }
    }
    for key, suffix, media, role in (
        ("summary", ".json", "application/json", "metadata"),
        ("quicklook", ".png", "image/png", "overview"),
    ):
        sibling = path.with_suffix(suffix)
        if sibling.exists():
            assets[key] = {"href": sibling.name, "type": media, "roles": [role]}
    return assets


def _write_index(
    target: Path,
    plan: Sequence[tuple[Any, Path]],
    outputs: Sequence[ItemOutput],
    failures: Sequence[ItemFailure],
    *,
    url: str,
    collection: str,
) -> Path:
    """Write the STAC ItemCollection of the outputs (one Item per mask) atomically."""
    by_id = {o.item_id: o for o in outputs}
    features = []
    for item, path in plan:
        out = by_id.get(item.id)
        if out is None:
            continue
        props = {
            "datetime": out.datetime or None,
            "eo:cloud_cover": out.cloud_cover,
            "s2mask:status": out.status,
            "s2mask:source_item": item.id,
            "s2mask:source_collection": collection,
            "s2mask:source_api": url,
        }
        props.update({f"s2mask:{k}_fraction": v for k, v in out.fractions.items()})
        feature = {
            "type": "Feature",
            "stac_version": "1.0.0",
            "stac_extensions": [],
            "id": item.id,
            "geometry": item.geometry,
            "bbox": list(item.bbox) if item.bbox else None,
            "properties": props,
            "links": [],
            "assets": _assets(path),
        }
        features.append(feature)
    doc = {
        "type": "FeatureCollection",
        "features": features,
        "s2mask:failures": [{"item_id": f.item_id, "error": f.error} for f in failures],
    }
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=2, default=str))
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"Cannot write the index {target} ({exc}).") from exc
    return target


def describe_plan(result: StacRunResult) -> str:
    """One line per item for ``--dry-run``: id, date, provider cloud cover, output path."""
    if not result.outputs:
        raise EmptySearchError("The search found nothing to process.")
    lines = []
    for o in result.outputs:
        cloud = "   ?" if o.cloud_cover is None else f"{o.cloud_cover:5.1f}%"
        lines.append(f"{o.item_id}  {o.datetime[:19]}  cloud {cloud}  -> {o.mask}")
    return "\n".join(lines)
