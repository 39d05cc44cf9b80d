"""Parsing and validating the user's area and time of interest.

Shared by ``s2mask stac`` and ``s2mask composite``: a bounding box in WGS84 degrees
(``"W,S,E,N"``) and a date range (``"2024-06-01/2024-06-30"``).  Both parse into small
frozen dataclasses; every malformed value raises
:class:`~s2mask.errors.InvalidParameterError` saying what was given and what is expected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from s2mask.errors import InvalidParameterError

__all__ = ["BBox", "DateRange", "parse_bbox", "parse_date_range"]


@dataclass(frozen=True)
class BBox:
    """A bounding box in WGS84 longitude/latitude degrees; west < east and south < north."""

    west: float
    """Minimum longitude, -180 .. 180."""
    south: float
    """Minimum latitude, -90 .. 90."""
    east: float
    """Maximum longitude, -180 .. 180."""
    north: float
    """Maximum latitude, -90 .. 90."""

    def as_tuple(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)``, the order STAC and odc-stac expect."""
        return (self.west, self.south, self.east, self.north)

    def __str__(self) -> str:
        return ",".join(f"{v:g}" for v in self.as_tuple())


@dataclass(frozen=True)
class DateRange:
    """A closed UTC time interval; either end may be open (``None``)."""

    start: datetime | None
    """First instant included (timezone-aware UTC), or ``None`` for an open start."""
    end: datetime | None
    """Last instant included (timezone-aware UTC), or ``None`` for an open end."""

    def to_stac(self) -> str:
        """The interval as a STAC ``datetime`` parameter, e.g. ``2024-06-01T00:00:00Z/2024-06-30T23:59:59Z``."""
        return f"{_iso(self.start)}/{_iso(self.end)}"

    def contains(self, when: datetime) -> bool:
        """Whether ``when`` (naive values are taken as UTC) falls inside the interval."""
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        return (self.start is None or when >= self.start) and (self.end is None or when <= self.end)

    def __str__(self) -> str:
        return self.to_stac()


def _iso(value: datetime | None) -> str:
    if value is None:
        return ".."
    text = value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def parse_bbox(value: str | Sequence[float] | BBox) -> BBox:
    """Parse ``"W,S,E,N"`` (or four numbers) into a validated :class:`BBox`.

    Raises:
        InvalidParameterError: not four finite numbers, out of range, swapped or of zero area.
    """
    if isinstance(value, BBox):
        return value
    parts = value.replace(" ", ",").split(",") if isinstance(value, str) else list(value)
    parts = [p for p in parts if not (isinstance(p, str) and not p.strip())]
    if len(parts) != 4:
        raise InvalidParameterError(
            f"The bbox {value!r} has {len(parts)} values; expected four numbers W,S,E,N in degrees, "
            "e.g. --bbox 11.0,46.0,11.2,46.1."
        )
    try:
        west, south, east, north = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"The bbox {value!r} holds a value that is not a number; expected W,S,E,N in degrees."
        ) from None
    if not all(math.isfinite(v) for v in (west, south, east, north)):
        raise InvalidParameterError(f"The bbox {value!r} holds NaN or infinity; expected finite degrees.")
    for name, v, limit in (
        ("west", west, 180),
        ("east", east, 180),
        ("south", south, 90),
        ("north", north, 90),
    ):
        if not -limit <= v <= limit:
            raise InvalidParameterError(
                f"The bbox {name} value {v:g} is outside -{limit}..{limit}; the bbox is W,S,E,N in "
                "WGS84 degrees (longitude first), not projected metres."
            )
    if west > east:
        raise InvalidParameterError(
            f"The bbox west {west:g} is greater than east {east:g}; give W,S,E,N with W < E "
            "(a box across the antimeridian must be split in two)."
        )
    if south > north:
        raise InvalidParameterError(
            f"The bbox south {south:g} is greater than north {north:g}; give W,S,E,N with S < N."
        )
    if west == east or south == north:
        raise InvalidParameterError(
            f"The bbox {west:g},{south:g},{east:g},{north:g} has zero area; W must differ from E and S from N."
        )
    return BBox(west, south, east, north)


_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def _parse_instant(text: str, *, is_end: bool, whole: str) -> datetime | None:
    """One end of a range; partial dates cover their whole year, month or day."""
    text = text.strip()
    if text in ("", ".."):
        return None
    m = _PARTIAL.match(text)
    try:
        if m:
            year, month, day = int(m[1]), int(m[2] or 1), int(m[3] or 1)
            first = date(year, month, day)
            if not is_end:
                return datetime.combine(first, time(0), tzinfo=timezone.utc)
            if m[3]:
                last = first
            elif m[2]:
                last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
            else:
                last = date(year, 12, 31)
            return datetime.combine(last, time(23, 59, 59), tzinfo=timezone.utc)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidParameterError(
            f"The date {text!r} in {whole!r} is not a valid date ({exc}); expected YYYY-MM-DD, "
            "YYYY-MM, YYYY or an ISO 8601 date-time such as 2024-06-01T10:30:00Z."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def parse_date_range(value: str | DateRange) -> DateRange:
    """Parse ``"START/END"`` or a single date into a validated :class:`DateRange`.

    Each end is ``YYYY-MM-DD``, ``YYYY-MM``, ``YYYY`` or an ISO date-time; partial dates
    cover their whole period (``2024-06`` is all of June), ``..`` or an empty side leaves
    that end open.  A single value is the whole of that period.

    Raises:
        InvalidParameterError: malformed or impossible dates, or the end before the start.
    """
    if isinstance(value, DateRange):
        return value
    text = str(value).strip()
    if not text or text.count("/") > 1:
        raise InvalidParameterError(
            f"The date range {value!r} is malformed; expected START/END such as 2024-06-01/2024-06-30, "
            "or a single date."
        )
    start_text, _, end_text = text.partition("/") if "/" in text else (text, "", text)
    start = _parse_instant(start_text, is_end=False, whole=text)
    end = _parse_instant(end_text, is_end=True, whole=text)
    if start is None and end is None:
        raise InvalidParameterError(f"The date range {value!r} is open at both ends; give at least one date.")
    if start is not None and end is not None and end < start:
        raise InvalidParameterError(
            f"The date range {value!r} ends ({_iso(end)}) before it starts ({_iso(start)}); "
            "give START/END with START first."
        )
    return DateRange(start, end)
