"""Quick-look PNGs: a true-colour thumbnail with the cloud mask drawn over it and a legend.

The image is built from a downsampled copy so a full tile never comes into memory at
full resolution: the reflectance is averaged over f x f cells and the mask
is reduced to the most frequent value of each block (a *mode*), both chunk by chunk
(``map_blocks`` on chunks aligned to the reduction factor) in one dask pass.

Colours: the true colour (B04, B03, B02) is stretched between the 2nd and 98th
percentile of the clear pixels (of all valid pixels when under 1 % are clear), so the
ground stays readable and clouds saturate to white (``stretch="percentile"``) or multiplied by a gain
(``stretch="gain"``, 3.5 by default), then gamma-corrected.  Cloud is tinted magenta,
shadow amber (both semi-transparent), nodata is darkened; clear pixels are left as they
are.  A legend strip below the image names the classes with their share of the valid
pixels.  A composite's quick-look has its own legend (:func:`composite_legend`): the share of
pixels without a composite value, clear observations per pixel (min / median / max) and the dates
used, drawn by the same strip.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from PIL import Image, ImageDraw, ImageFont

from s2mask._atomic import atomic_output, check_target
from s2mask.errors import InvalidParameterError
from s2mask.mask import (
    CLASSES,
    CLEAR,
    CLOUD,
    COLOURS,
    NODATA,
    NODATA_NAME,
    SHADOW,
    class_counts,
    fractions_from_counts,
)

__all__ = ["OVERLAY", "OverlayStyle", "composite_legend", "preview_rgb", "write_quicklook"]

_RGB = ("B04", "B03", "B02")
_NODATA = NODATA


@dataclass(frozen=True)
class OverlayStyle:
    """How one mask value is drawn over the image."""

    label: str
    """Legend text."""
    colour: tuple[int, int, int]
    """RGB overlay colour."""
    alpha: float
    """Opacity of the overlay, 0 (invisible) to 1 (opaque)."""


OVERLAY: Mapping[int, OverlayStyle] = {
    CLEAR: OverlayStyle(CLASSES[CLEAR], COLOURS[CLEAR][:3], 0.0),
    CLOUD: OverlayStyle(CLASSES[CLOUD], (255, 0, 255), 0.45),
    SHADOW: OverlayStyle(CLASSES[SHADOW], (255, 176, 0), 0.55),
    _NODATA: OverlayStyle(NODATA_NAME, (0, 0, 0), 0.8),
}
"""Mask value -> overlay style (clear is not tinted; its swatch shows its map colour).

Names come from :mod:`s2mask.mask`; the tints are the quick-look's own (a white cloud, the
COG's colour, would vanish over a bright image)."""

_LEGEND_BG = (24, 24, 24)
_LEGEND_FG = (235, 235, 235)


def _true_colour(rgb: xr.DataArray) -> xr.DataArray:
    """The (3, y, x) red, green, blue bands of ``rgb`` as float32 reflectance."""
    if not isinstance(rgb, xr.DataArray) or rgb.ndim != 3:
        raise InvalidParameterError(
            f"write_quicklook() got {type(rgb).__name__} with shape {getattr(rgb, 'shape', '?')}; "
            'expected an xr.DataArray ("band", "y", "x") holding B04, B03 and B02 (or exactly 3 bands).'
        )
    lead = rgb.dims[0]
    names = [str(v) for v in rgb.coords[lead].values] if lead in rgb.coords else []
    if all(b in names for b in _RGB):
        out = rgb.sel({lead: list(_RGB)})
    elif rgb.shape[0] == 3:
        out = rgb
    else:
        raise InvalidParameterError(
            f"The image for the quick-look has bands {names or rgb.shape[0]}; expected B04, B03 and "
            "B02 among them (or exactly 3 bands in red, green, blue order). Load the RGB bands."
        )
    if out.dtype.kind in "iu":  # digital numbers: the Sentinel-2 quantification value
        return out.astype(np.float32) / np.float32(10000.0)
    return out.astype(np.float32)


def _factor(shape: tuple[int, int], max_size: int) -> int:
    return max(1, math.ceil(max(shape) / max_size))


def _aligned_chunks(chunks: tuple[int, ...], f: int) -> tuple[int, ...]:
    """Chunk sizes close to ``chunks`` that are multiples of ``f`` (only the last may be ragged)."""
    n, size = sum(chunks), max(f, round(max(chunks) / f) * f)
    out = [size] * (n // size)
    if n % size:
        out.append(n % size)
    return tuple(out)


def _pad_to(block: np.ndarray, f: int, fill: float) -> np.ndarray:
    ph, pw = -block.shape[-2] % f, -block.shape[-1] % f
    if not (ph or pw):
        return block
    widths = [(0, 0)] * (block.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(block, widths, constant_values=fill)


def _cells(block: np.ndarray, f: int) -> np.ndarray:
    """View ``(..., h, w)`` as ``(..., h/f, f, w/f, f)`` (``h``, ``w`` multiples of ``f``; no copy)."""
    *lead, h, w = block.shape
    return block.reshape(*lead, h // f, f, w // f, f)


def _mean_block(block: np.ndarray, f: int) -> np.ndarray:
    """NaN-ignoring mean of each ``f`` x ``f`` cell (NaN where a cell has no finite value)."""
    block = block.astype(np.float32, copy=False)
    if not block.shape[-2] % f and not block.shape[-1] % f and np.isfinite(block).all():
        # every cell full and finite (the common case): f*f strided adds, 3-4x faster than nansum
        total = np.zeros(block.shape[:-2] + (block.shape[-2] // f, block.shape[-1] // f), np.float64)
        for i in range(f):
            for j in range(f):
                total += block[..., i::f, j::f]
        return (total / (f * f)).astype(np.float32)
    cells = _cells(_pad_to(block, f, np.nan), f)
    count = np.isfinite(cells).sum(axis=(-3, -1))
    total = np.nansum(cells, axis=(-3, -1), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(np.float32)


def _mode_block(block: np.ndarray, f: int, values: tuple[int, ...]) -> np.ndarray:
    """Most frequent of ``values`` in each ``f`` x ``f`` cell (ties go to the first value)."""
    fill = next(v for v in range(256) if v not in values)
    padded = _pad_to(block, f, fill)
    counts = np.zeros((len(values),) + padded.shape[:-2] + (padded.shape[-2] // f, padded.shape[-1] // f), np.int32)
    for k, v in enumerate(values):
        hit = padded == v
        for i in range(f):  # f*f strided adds: the same counts as a sum over each cell, several times faster
            for j in range(f):
                counts[k] += hit[..., i::f, j::f]
    return np.asarray(values, dtype=np.uint8)[np.argmax(counts, axis=0)]


def _block_reduce(arr: da.Array, f: int, fn: Any, dtype: Any) -> da.Array:
    """Apply a cell reduction ``fn(block, f)`` over the last two axes, chunk by chunk.

    The spatial chunks are first aligned to multiples of ``f`` so no cell straddles two
    chunks; memory stays at a few chunks whatever the array's size.
    """
    if not isinstance(arr, da.Array):
        arr = da.from_array(np.asarray(arr), chunks=(*arr.shape[:-2], 2048, 2048))
    aligned = tuple(_aligned_chunks(c, f) for c in arr.chunks[-2:])
    arr = arr.rechunk((*arr.chunks[:-2], *aligned))
    out_chunks = (*arr.chunks[:-2], *(tuple(-(-c // f) for c in cs) for cs in aligned))
    return arr.map_blocks(fn, f, dtype=dtype, chunks=out_chunks)


def _coarse_mode(mask: Any, f: int, values: tuple[int, ...]) -> da.Array:
    """Lazy per-cell mode of a ``(y, x)`` mask among ``values``."""
    return _block_reduce(mask, f, functools.partial(_mode_fn, values=values), np.uint8)


def _mode_fn(block: np.ndarray, f: int, *, values: tuple[int, ...]) -> np.ndarray:
    return _mode_block(block, f, values)


def _reduced_shape(shape: tuple[int, int], f: int) -> tuple[int, int]:
    return math.ceil(shape[0] / f), math.ceil(shape[1] / f)


def preview_rgb(rgb: xr.DataArray, *, max_size: int = 1024) -> xr.DataArray:
    """The true colour of ``rgb`` reduced for :func:`write_quicklook`, from the files' overviews when possible.

    When ``rgb`` comes straight from a reader (:func:`s2mask.io.open_product`, with B04, B03
    and B02 among its bands), those three bands are read once at the quick-look's size from
    the COG's overviews or the JPEG 2000's reduced-resolution levels through the readers'
    preview contract (:func:`s2mask.io.read_preview`; a full SAFE tile: 2 s instead of 34 s
    decoding three full-resolution bands).  Files without overviews, and any other cube, are
    returned unchanged and :func:`write_quicklook` averages them itself, in parallel blocks.
    """
    from s2mask.io.product import read_preview

    f = _factor(rgb.shape[1:], max_size)
    names = [str(b) for b in rgb.coords[rgb.dims[0]].values] if rgb.dims[0] in rgb.coords else []
    bands = _RGB if set(_RGB) <= set(names) else tuple(names)
    if f == 1 or len(bands) != 3:
        return rgb
    # without overviews GDAL would average every pixel in one thread: dask does it faster
    small = read_preview(rgb, bands=bands, shape=_reduced_shape(rgb.shape[1:], f))
    return rgb if small is None else small


def _downsample(
    rgb: xr.DataArray, mask: xr.DataArray | None, f: int, scheduler: Any, *, image_reduced: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cell means of ``rgb`` and cell modes of ``mask`` (``f`` x ``f`` cells), computed in one pass.

    With ``image_reduced`` the image is already at the cell grid (:func:`preview_rgb`).
    """
    small = rgb.data if image_reduced or f == 1 else _block_reduce(rgb.data, f, _mean_block, np.float32)
    if mask is None:
        (img,) = dask.compute(small, scheduler=scheduler)
        return np.asarray(img), None
    mask_data = mask.data.astype(np.uint8)
    reduced = mask_data if f == 1 else _coarse_mode(mask_data, f, tuple(OVERLAY))
    img, red = dask.compute(small, reduced, scheduler=scheduler)
    return np.asarray(img), np.asarray(red)


def _stretch(
    rgb: np.ndarray,
    valid: np.ndarray,
    reference: np.ndarray,
    *,
    stretch: str,
    gain: float,
    gamma: float,
    percentiles: tuple[float, float],
) -> np.ndarray:
    """(3, h, w) reflectance -> (h, w, 3) uint8; percentiles are taken over ``reference`` pixels."""
    x = np.nan_to_num(rgb, nan=0.0)
    if stretch == "percentile":
        sample = x[:, reference]
        if sample.size:
            lo, hi = np.percentile(sample, percentiles)
        else:
            lo, hi = 0.0, 1.0
        x = (x - lo) / max(hi - lo, 1e-6)
    elif stretch == "gain":
        x = x * gain
    else:
        raise InvalidParameterError(f"stretch={stretch!r}; expected 'percentile' or 'gain'.")
    x = np.clip(x, 0.0, 1.0) ** (1.0 / gamma)
    x[:, ~valid] = 0.0
    return np.round(x * 255).astype(np.uint8).transpose(1, 2, 0)


def _overlay(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = img.astype(np.float32)
    for value, style in OVERLAY.items():
        if style.alpha <= 0:
            continue
        sel = mask == value
        out[sel] = out[sel] * (1 - style.alpha) + np.asarray(style.colour, np.float32) * style.alpha
    return np.round(out).astype(np.uint8)


def _font(width: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    size = int(min(16, max(10, width // 45)))
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def _legend(width: int, entries: list[tuple[OverlayStyle | None, str]]) -> Image.Image:
    """A strip of coloured swatches and labels (no swatch where the style is None), wrapped to ``width``."""
    font = _font(width)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    ascent = probe.textbbox((0, 0), "Ag", font=font)[3]
    sw, pad, row_h = ascent, max(4, ascent // 2), ascent + max(6, ascent // 2)
    items = []
    for style, text in entries:
        tw = int(probe.textlength(text, font=font))
        items.append((style, text, (sw + 4 if style is not None else 0) + tw + 2 * pad))
    rows: list[list] = [[]]
    used = pad
    for item in items:
        if rows[-1] and used + item[2] > width:
            rows.append([])
            used = pad
        rows[-1].append(item)
        used += item[2]
    strip = Image.new("RGB", (width, len(rows) * row_h + pad), _LEGEND_BG)
    draw = ImageDraw.Draw(strip)
    for r, row in enumerate(rows):
        x, y = pad, pad // 2 + r * row_h + (row_h - sw) // 2
        for style, text, w in row:
            tx = x
            if style is not None:
                draw.rectangle((x, y, x + sw - 1, y + sw - 1), fill=style.colour, outline=_LEGEND_FG)
                tx += sw + 4
            draw.text((tx, y + sw // 2), text, fill=_LEGEND_FG, font=font, anchor="lm")
            x += w
    return strip


def _fractions(mask: Any, small_mask: np.ndarray, scheduler: Any) -> dict[str, float | None]:
    """The legend's fractions, counted like the summary's (:func:`s2mask.mask.fractions_from_counts`)."""
    data = getattr(mask, "data", mask)
    counts = class_counts(data if data.dtype == np.uint8 else small_mask, scheduler=scheduler)
    return fractions_from_counts(counts)


def composite_legend(
    count: np.ndarray,
    nodata: Any,
    *,
    dates: Any = (),
    date_band: np.ndarray | None = None,
    min_observations: int = 1,
    top: int = 4,
) -> list[tuple[OverlayStyle | None, str]]:
    """Legend entries for a composite's quick-look (pass them as ``write_quicklook(..., legend=)``).

    Args:
        count: clear observations per pixel (the composite's ``count`` band, any resolution).
        nodata: the quick-look's nodata mask (255 where the composite has no value) on ``count``'s grid.
        dates: the scenes' dates (ISO text), shown as a range when ``date_band`` is absent.
        date_band: the chosen observation's days since 1970-01-01 (0: none), for the methods that
            pick one observation: the ``top`` most used dates are listed with their share.
        min_observations: the composite's minimum, named in the nodata entry.

    Returns ``(style, text)`` pairs: the nodata swatch with its share, then text-only entries.
    """
    count = np.asarray(count)
    empty = np.asarray(getattr(nodata, "values", nodata)) == _NODATA
    share = float(empty.mean()) if empty.size else 0.0
    what = "no clear obs" if min_observations <= 1 else f"< {min_observations} clear obs"
    entries: list[tuple[OverlayStyle | None, str]] = [(OVERLAY[_NODATA], f"{what} {100 * share:.0f}%")]
    if count.size:
        lo, mid, hi = np.min(count), np.median(count), np.max(count)
        entries.append((None, f"clear obs/pixel min {lo:.0f} median {mid:.0f} max {hi:.0f}"))
    dates = [str(d)[:10] for d in dates]
    if date_band is not None:
        days = np.asarray(date_band)[~empty]
        days = days[days > 0]
        values, counts = np.unique(days, return_counts=True)
        ranked = sorted(zip(counts, values, strict=True), reverse=True)
        for n, day in ranked[:top]:
            text = str(np.datetime64(int(day), "D"))
            entries.append((None, f"{text} {100 * n / max(days.size, 1):.0f}%"))
        if len(ranked) > top:
            rest = sum(n for n, _ in ranked[top:])
            entries.append((None, f"{len(ranked) - top} more dates {100 * rest / max(days.size, 1):.0f}%"))
    elif dates:
        entries.append((None, f"{len(dates)} scenes {min(dates)} to {max(dates)}"))
    return entries


def _label(name: str, frac: float | None) -> str:
    return name if frac is None else f"{name} {100 * frac:.0f}%"


def write_quicklook(
    rgb: xr.DataArray,
    mask: xr.DataArray | None,
    path: str | os.PathLike[str],
    *,
    max_size: int = 1024,
    overwrite: bool = False,
    stretch: str = "percentile",
    percentiles: tuple[float, float] = (2.0, 98.0),
    gain: float = 3.5,
    gamma: float = 1.0,
    fractions: Mapping[str, float | None] | None = None,
    legend: list[tuple[OverlayStyle | None, str]] | None = None,
    scheduler: Any = None,
) -> Path:
    """Write a PNG quick-look of ``rgb`` with ``mask`` overlaid and a legend; return its path.

    Args:
        rgb: lazy ``("band", "y", "x")`` reflectance holding B04, B03, B02 (or exactly three
            bands in red, green, blue order); integer input is read as DN / 10000.
        mask: ``("y", "x")`` uint8 mask (0 clear, 1 cloud, 2 shadow, 255 nodata) on the same
            grid, or ``None`` for a plain true-colour image without legend.
        path: output ``.png``; written atomically.
        max_size: longest side of the image part in pixels (the image is block-averaged
            by the smallest integer factor that fits; never upsampled).
        overwrite: replace an existing ``path``; otherwise refused before any work.
        stretch: ``"percentile"`` (``percentiles`` of the clear pixels, all bands together)
            or ``"gain"`` (reflectance times ``gain``).
        gamma: gamma applied after the stretch (``> 1`` brightens dark areas).
        fractions: class fractions for the legend (e.g. ``mask_summary(...)["fractions"]``);
            default: counted on the full mask, as the JSON summary counts them.
        legend: ``(style, text)`` entries that replace the class legend (a composite's, from
            :func:`composite_legend`); a ``None`` style draws text without a swatch.
        scheduler: dask scheduler for the downsampling.

    The PNG is ``ceil(w / f)`` wide and ``ceil(h / f)`` plus the legend strip high.
    """
    target = check_target(path, overwrite=overwrite)
    if max_size < 16:
        raise InvalidParameterError(f"max_size={max_size}; expected at least 16 pixels.")
    if gamma <= 0:
        raise InvalidParameterError(f"gamma={gamma}; expected a positive number such as 1.0 or 1.5.")
    if stretch not in ("percentile", "gain"):
        raise InvalidParameterError(f"stretch={stretch!r}; expected 'percentile' or 'gain'.")
    if not 0 <= percentiles[0] < percentiles[1] <= 100:
        raise InvalidParameterError(
            f"percentiles={percentiles}; expected (low, high) with 0 <= low < high <= 100, e.g. (2, 98)."
        )
    colour = _true_colour(rgb)
    reduced = False
    if mask is not None:
        if mask.ndim == 3 and mask.shape[0] == 1:
            mask = mask.squeeze(mask.dims[0], drop=True)
        f = _factor(mask.shape, max_size)
        reduced = f > 1 and colour.shape[1:] == _reduced_shape(mask.shape, f)
        if mask.shape != colour.shape[1:] and not reduced:
            raise InvalidParameterError(
                f"The mask has shape {mask.shape} but the image is {colour.shape[1:]}; expected the "
                f"same grid (or the image already reduced to {_reduced_shape(mask.shape, f)} by "
                "preview_rgb). Pass the mask predicted from this image."
            )
    f = _factor(mask.shape if mask is not None else colour.shape[1:], max_size)
    small, small_mask = _downsample(colour, mask, f, scheduler, image_reduced=reduced)
    valid = np.isfinite(small).all(axis=0) & (np.nan_to_num(small) > 0).any(axis=0)
    reference = valid  # the pixels the percentile stretch is fitted to
    if small_mask is not None:
        valid &= small_mask != _NODATA
        clear = valid & (small_mask == 0)
        reference = clear if clear.sum() >= max(1, 0.01 * valid.sum()) else valid
    img = _stretch(small, valid, reference, stretch=stretch, gain=gain, gamma=gamma, percentiles=percentiles)
    if small_mask is not None:
        img = _overlay(img, small_mask)
    picture = Image.fromarray(img)
    if small_mask is not None or legend is not None:
        if legend is not None:
            entries = list(legend)
        else:
            fr = dict(fractions) if fractions is not None else _fractions(mask, small_mask, scheduler)
            entries = [(s, _label(s.label, fr.get(s.label))) for s in OVERLAY.values()]
        strip = _legend(picture.width, entries)
        canvas = Image.new("RGB", (picture.width, picture.height + strip.height), _LEGEND_BG)
        canvas.paste(picture, (0, 0))
        canvas.paste(strip, (0, picture.height))
        picture = canvas
    with atomic_output(target, overwrite=overwrite, suffix=".png") as tmp:
        picture.save(tmp, format="PNG", compress_level=3)  # 40 % faster than 6, 3 % larger
    return target
