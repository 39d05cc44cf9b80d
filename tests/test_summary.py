"""mask_summary counts like numpy on uneven chunks; write_summary is atomic strict JSON."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

from s2mask import __version__
from s2mask.errors import InvalidParameterError, OutputExistsError
from s2mask.summary import class_counts, mask_summary, write_summary


def _mask(a: np.ndarray, chunks=((50, 77, 73), (33, 120, 47))) -> xr.DataArray:
    h, w = a.shape
    x = 300000.0 + 20.0 * np.arange(w) + 10.0
    y = 4500000.0 - 20.0 * np.arange(h) - 10.0
    data = da.from_array(a, chunks=chunks)
    return xr.DataArray(data, dims=("y", "x"), coords={"y": y, "x": x}).rio.write_crs(32632)


@pytest.fixture
def mask_np() -> np.ndarray:
    rng = np.random.default_rng(3)
    a = rng.choice(np.array([0, 1, 2, 255], dtype=np.uint8), size=(200, 200), p=[0.5, 0.25, 0.15, 0.1])
    return a


def test_fractions_equal_numpy_counts(mask_np):
    s = mask_summary(_mask(mask_np), product_id="S2B_TEST", model={"name": "s2-9", "version": "0.1.0"})
    valid = np.isin(mask_np, [0, 1, 2]).sum()
    for value, name in [(0, "clear"), (1, "cloud"), (2, "shadow")]:
        assert s["counts"][name] == (mask_np == value).sum()
        assert s["fractions"][name] == pytest.approx((mask_np == value).sum() / valid)
    assert s["fractions"]["nodata"] == pytest.approx((mask_np == 255).mean())
    assert s["counts"]["valid"] == valid and s["counts"]["total"] == mask_np.size
    assert "unknown" not in s["counts"]
    assert sum(s["fractions"][k] for k in ("clear", "cloud", "shadow")) == pytest.approx(1.0)
    assert s["shape"] == [200, 200] and s["crs"] == "EPSG:32632" and s["resolution"] == [20.0, 20.0]
    assert s["bounds"] == [300000.0, 4496000.0, 304000.0, 4500000.0]
    assert s["product_id"] == "S2B_TEST" and s["model"]["name"] == "s2-9"
    assert s["s2mask_version"] == __version__ and s["timing"] == {}


def test_chunking_does_not_change_counts(mask_np):
    a = class_counts(_mask(mask_np))
    b = class_counts(_mask(mask_np, chunks=-1))
    c = class_counts(mask_np)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(a, np.bincount(mask_np.ravel(), minlength=256))


def test_all_nodata_gives_null_class_fractions():
    s = mask_summary(_mask(np.full((30, 40), 255, np.uint8), chunks=10))
    assert s["fractions"] == {"clear": None, "cloud": None, "shadow": None, "nodata": 1.0}
    assert s["counts"]["valid"] == 0


def test_unknown_values_are_reported_not_counted_valid():
    a = np.array([[0, 1], [7, 255]], dtype=np.uint8)
    s = mask_summary(a)
    assert s["counts"]["unknown"] == 1 and s["counts"]["valid"] == 2
    assert s["fractions"]["clear"] == 0.5 and s["crs"] is None


def test_model_card_like_object():
    class Card:
        name, version = "tiny", "9.9"

    class Loaded:
        card = Card()

    assert mask_summary(np.zeros((2, 2), np.uint8), model=Loaded())["model"] == {
        "name": "tiny",
        "version": "9.9",
    }


def test_non_uint8_mask_rejected():
    with pytest.raises(InvalidParameterError, match="uint8"):
        mask_summary(np.zeros((2, 2), np.float32))


def test_write_summary_round_trip_and_refusal(tmp_path, mask_np):
    s = mask_summary(_mask(mask_np), timing={"predict": np.float64(1.5)})
    s["extra"] = {"n": np.int64(3), "arr": np.arange(2), "path": tmp_path}
    out = write_summary(tmp_path / "summary.json", s)
    back = json.loads(out.read_text())
    assert back["fractions"] == s["fractions"] and back["counts"] == s["counts"]
    assert back["timing"] == {"predict": 1.5} and back["extra"] == {
        "n": 3,
        "arr": [0, 1],
        "path": str(tmp_path),
    }
    with pytest.raises(OutputExistsError):
        write_summary(out, {"a": 1})
    assert json.loads(out.read_text()) == back
    write_summary(out, {"a": 1}, overwrite=True)
    assert json.loads(out.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_write_summary_refuses_nan(tmp_path):
    with pytest.raises(InvalidParameterError, match="NaN"):
        write_summary(tmp_path / "s.json", {"x": float("nan")})
    assert list(tmp_path.iterdir()) == []
