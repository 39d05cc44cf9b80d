"""Bounding-box and date-range parsing (shared by `s2mask stac` and `s2mask composite`)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s2mask.errors import InvalidParameterError
from s2mask.params import BBox, DateRange, parse_bbox, parse_date_range


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text",
    ["11,46,11.2,46.1", " 11, 46, 11.2, 46.1 ", "11 46 11.2 46.1"],
)
def test_bbox_parses_comma_and_space_separated(text: str) -> None:
    assert parse_bbox(text) == BBox(11.0, 46.0, 11.2, 46.1)


def test_bbox_accepts_sequences_and_round_trips() -> None:
    box = parse_bbox([-1, -2.5, 3, 4])
    assert box.as_tuple() == (-1.0, -2.5, 3.0, 4.0)
    assert parse_bbox(str(box)) == box
    assert parse_bbox(box) is box


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("11.2,46,11,46.1", "west 11.2 is greater than east 11"),
        ("11,46.1,11.2,46", "south 46.1 is greater than north 46"),
        ("11,46,11,46.1", "zero area"),
        ("11,46,11.2,46", "zero area"),
        ("500000,5000000,510000,5010000", "outside -180..180"),
        ("11,95,11.2,96", "outside -90..90"),
        ("11,46,11.2", "has 3 values"),
        ("11,46,11.2,46.1,5", "has 5 values"),
        ("a,46,11.2,46.1", "not a number"),
        ("nan,46,11.2,46.1", "NaN or infinity"),
        ("", "has 0 values"),
    ],
)
def test_bad_bbox_is_invalid_parameter(text: str, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        parse_bbox(text)


@given(st.floats(-180, 179), st.floats(-90, 89), st.floats(0.001, 1), st.floats(0.001, 1))
def test_any_valid_box_round_trips(w: float, s: float, dw: float, dh: float) -> None:
    e, n = min(180.0, w + dw), min(90.0, s + dh)
    box = parse_bbox([w, s, e, n])
    assert box.west < box.east and box.south < box.north
    assert parse_bbox(",".join(repr(v) for v in box.as_tuple())) == box


def test_date_range_of_days_covers_whole_days() -> None:
    r = parse_date_range("2024-06-01/2024-06-30")
    assert r == DateRange(utc(2024, 6, 1), utc(2024, 6, 30, 23, 59, 59))
    assert r.to_stac() == "2024-06-01T00:00:00Z/2024-06-30T23:59:59Z"
    assert r.contains(datetime(2024, 6, 30, 12))
    assert not r.contains(utc(2024, 7, 1))


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2024-06", utc(2024, 6, 1), utc(2024, 6, 30, 23, 59, 59)),
        ("2024-02", utc(2024, 2, 1), utc(2024, 2, 29, 23, 59, 59)),
        ("2024-12", utc(2024, 12, 1), utc(2024, 12, 31, 23, 59, 59)),
        ("2023", utc(2023, 1, 1), utc(2023, 12, 31, 23, 59, 59)),
        ("2024-06-05", utc(2024, 6, 5), utc(2024, 6, 5, 23, 59, 59)),
        ("2024-06-01T10:30:00Z/2024-06-01T14:00:00+02:00", utc(2024, 6, 1, 10, 30), utc(2024, 6, 1, 12)),
        ("../2024-06-30", None, utc(2024, 6, 30, 23, 59, 59)),
        ("2024-06-01/..", utc(2024, 6, 1), None),
    ],
)
def test_partial_and_open_dates(text: str, start: datetime | None, end: datetime | None) -> None:
    r = parse_date_range(text)
    assert (r.start, r.end) == (start, end)


def test_open_end_serialises_as_double_dot() -> None:
    assert parse_date_range("2024-06-01/..").to_stac() == "2024-06-01T00:00:00Z/.."


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("2024-06-30/2024-06-01", "ends .* before it starts"),
        ("2024-02-30/2024-03-01", "not a valid date"),
        ("2024-13-01", "not a valid date"),
        ("June 2024", "not a valid date"),
        ("2024-06-01/2024-06-30/2024-07-01", "malformed"),
        ("", "malformed"),
        ("../..", "open at both ends"),
    ],
)
def test_bad_date_range_is_invalid_parameter(text: str, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        parse_date_range(text)
