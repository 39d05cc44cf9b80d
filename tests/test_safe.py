"""The SAFE reader against products written by s2mask.testing.products (real JP2 + XML layout)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st

import s2mask.io._lazy as lazy
from s2mask.bands import BAND_NAMES, PRESETS
from s2mask.errors import (
    BandMismatchError,
    CorruptDataError,
    InvalidParameterError,
    ProductFormatError,
    ProductNotFoundError,
)
from s2mask.io import open_product, open_safe
from s2mask.io._xml import parse_product_metadata
from s2mask.io.safe import find_safe_layout
from s2mask.testing.products import DEFAULT_TRANSFORM, block_mean, write_safe

H, W = 120, 180
TOL = 1.0001e-4  # one DN of quantification 10000


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """Smooth, band-dependent reflectance with some texture, plus a nodata corner."""
    rng = np.random.default_rng(42)
    yy, xx = np.mgrid[0:H, 0:W]
    base = 0.05 + 0.4 * (np.sin(yy / 9.0) * np.cos(xx / 13.0) + 1) / 2
    refl = np.stack([base * (0.6 + 0.05 * i) + rng.uniform(0, 0.05, (H, W)) for i in range(13)]).astype(
        np.float32
    )
    nodata = np.zeros((H, W), bool)
    nodata[:12, :18] = True
    return refl, nodata


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    return _scene()


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory, scene) -> dict[str, Path]:
    refl, nodata = scene
    out = tmp_path_factory.mktemp("safe")
    return {
        "l1c": write_safe(out, refl, level="L1C", baseline="03.01", nodata_mask=nodata),
        "l1c_n05": write_safe(out, refl, level="L1C", baseline="05.09", nodata_mask=nodata),
        "l2a": write_safe(out, refl, level="L2A", baseline="05.09", nodata_mask=nodata),
        "l2a_old": write_safe(out, refl, level="L2A", baseline="03.01", nodata_mask=nodata),
        "l2a_zip": write_safe(
            out / "zipped", refl, level="L2A", baseline="05.09", nodata_mask=nodata, zipped=True
        ),
    }


def _expected(refl: np.ndarray, band: str, factor: int) -> np.ndarray:
    """What a band written at 10 m * factor holds, as reflectance (block mean, quantised to 1e-4)."""
    i = BAND_NAMES.index(band)
    return np.clip(np.rint(block_mean(refl[i].astype(np.float64), factor) * 1e4) / 1e4, 0, 1)


@pytest.mark.parametrize("key", ["l1c", "l1c_n05", "l2a", "l2a_old"])
def test_roundtrip_10m_bands_and_nodata(products, scene, key):
    refl, nodata = scene
    cube = open_product(products[key], chunks=64)
    assert cube.dims == ("band", "y", "x") and cube.dtype == np.float32
    values = cube.values
    for band in ("B02", "B03", "B04", "B08"):
        got = values[list(cube.band.values).index(band)]
        want = refl[BAND_NAMES.index(band)]
        assert np.nanmax(np.abs(got - want)) <= TOL
        assert not np.isnan(got[~nodata]).any()
    assert np.isnan(values[:, nodata]).all()


def test_bands_and_attrs_follow_the_product(products):
    l1c, l2a = open_product(products["l1c"]), open_product(products["l2a"])
    assert tuple(l1c.band.values) == BAND_NAMES
    assert tuple(l2a.band.values) == tuple(b for b in BAND_NAMES if b != "B10")
    assert l1c.attrs["level"] == "L1C" and l2a.attrs["level"] == "L2A"
    assert l1c.attrs["processing_baseline"] == "03.01" and l2a.attrs["processing_baseline"] == "05.09"
    assert l2a.attrs["product_id"] == products["l2a"].name.removesuffix(".SAFE")
    assert l2a.attrs["source"] == str(products["l2a"])


def test_offsets_are_read_from_the_xml(products):
    new = find_safe_layout(products["l2a"]).metadata
    old = find_safe_layout(products["l2a_old"]).metadata
    assert new.quantification == 10000 and set(new.offsets.values()) == {-1000.0} and len(new.offsets) == 13
    assert old.offsets == {} and old.offset("B02") == 0.0
    l1c = find_safe_layout(products["l1c_n05"]).metadata
    assert l1c.level == "L1C" and l1c.offset("B12") == -1000.0


def test_baselines_give_the_same_reflectance(products):
    new = open_product(products["l2a"]).values
    old = open_product(products["l2a_old"]).values
    np.testing.assert_allclose(new, old, atol=TOL, equal_nan=True)
    # DN differ by the 1000 offset, so a reader ignoring offsets would be 0.1 off
    with (
        rasterio.open(next(products["l2a"].rglob("*_B02_10m.jp2"))) as a,
        rasterio.open(next(products["l2a_old"].rglob("*_B02_10m.jp2"))) as b,
    ):
        diff = a.read(1).astype(int) - b.read(1).astype(int)
    assert np.median(diff) == 1000


def test_crs_transform_and_coords(products):
    cube = open_product(products["l2a"])
    assert cube.rio.crs.to_epsg() == 32631
    assert cube.rio.transform() == DEFAULT_TRANSFORM
    assert cube.x.values[0] == DEFAULT_TRANSFORM.c + 5 and cube.y.values[0] == DEFAULT_TRANSFORM.f - 5
    coarse = open_product(products["l2a"], resolution=60)
    assert coarse.rio.transform().a == 60 and coarse.x.values[0] == DEFAULT_TRANSFORM.c + 30


def test_open_is_lazy_and_reads_only_block_windows(products, monkeypatch):
    windows = []
    real = lazy._read_window

    def spy(src, rows, cols):
        windows.append((rows[1] - rows[0], cols[1] - cols[0]))
        return real(src, rows, cols)

    monkeypatch.setattr(lazy, "_read_window", spy)
    cube = open_product(products["l1c"], chunks=(40, 60))
    assert isinstance(cube.data, da.Array)
    assert cube.chunks == ((13,), (40, 40, 40), (60, 60, 60))
    assert windows == []  # nothing read at open
    cube.isel(y=slice(0, 40), x=slice(0, 60)).compute()
    assert 0 < len(windows) <= 13
    assert max(r * c for r, c in windows) <= 40 * 60


def test_20m_band_is_nearest_upsampled(products, scene):
    refl, nodata = scene
    cube = open_product(products["l1c"], bands=["B05", "B8A", "B01"])
    b05 = cube.sel(band="B05").values
    want = np.repeat(np.repeat(_expected(refl, "B05", 2), 2, axis=0), 2, axis=1)
    want[nodata] = np.nan
    np.testing.assert_allclose(b05, want, atol=1e-6, equal_nan=True)
    b01 = cube.sel(band="B01").values
    want01 = np.repeat(np.repeat(_expected(refl, "B01", 6), 6, axis=0), 6, axis=1)
    np.testing.assert_allclose(b01[12:, 18:], want01[12:, 18:], atol=1e-6)


def test_bilinear_matches_separable_interpolation(products):
    cube = open_product(products["l1c"], bands=["B05"], resampling="bilinear", chunks=(37, 41))
    with rasterio.open(next(products["l1c"].rglob("*_B05.jp2"))) as ds:
        src = ds.read(1).astype(np.float64) / 1e4
    src[:6, :9] = np.nan  # the nodata corner at 20 m
    t_y = np.clip((np.arange(H) + 0.5) / 2 - 0.5, 0, src.shape[0] - 1)
    t_x = np.clip((np.arange(W) + 0.5) / 2 - 0.5, 0, src.shape[1] - 1)
    rows = np.stack([np.interp(t_y, np.arange(src.shape[0]), src[:, j]) for j in range(src.shape[1])], axis=1)
    want = np.stack([np.interp(t_x, np.arange(src.shape[1]), rows[i]) for i in range(H)])
    got = cube.values[0]
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], atol=1e-6)
    assert np.isnan(got[:12, :18]).all()
    np.testing.assert_array_equal(
        got, open_product(products["l1c"], bands=["B05"], resampling="bilinear", chunks=500).values[0]
    )


def test_resolution_20_and_60(products, scene):
    refl, _ = scene
    c20 = open_product(products["l2a"], resolution=20)
    assert c20.shape == (12, H // 2, W // 2) and c20.rio.transform().a == 20
    # L2A ships B02 at 20 m in R20m: read it from there (ESA's block mean), not decimated
    np.testing.assert_allclose(
        c20.sel(band="B02").values[6:, 9:], _expected(refl, "B02", 2)[6:, 9:], atol=1e-6
    )
    c60 = open_product(products["l1c"], resolution=60, resampling="average", bands=["B02", "B01"])
    assert c60.shape == (2, H // 6, W // 6)
    b02 = open_product(products["l1c"], bands=["B02"]).values[0]
    np.testing.assert_allclose(c60.values[0, 2:, 3:], block_mean(b02, 6)[2:, 3:], atol=1e-6)
    near = open_product(products["l1c"], resolution=20, bands=["B02"]).values[0]
    np.testing.assert_array_equal(near, b02[1::2, 1::2])


def test_band_selection_order(products):
    cube = open_product(products["l2a"], bands=["b4", "B03", "B02"])
    assert list(cube.band.values) == ["B04", "B03", "B02"]
    full = open_product(products["l2a"])
    np.testing.assert_array_equal(cube.values[0], full.sel(band="B04").values)


def test_zipped_safe_reads_in_place(products, monkeypatch):
    path = products["l2a_zip"]
    assert path.suffix == ".zip" and zipfile.is_zipfile(path)
    before = sorted(p.name for p in path.parent.iterdir())
    paths = set()
    real = lazy._read_window

    def spy(src, rows, cols):
        paths.add(src.path)
        return real(src, rows, cols)

    monkeypatch.setattr(lazy, "_read_window", spy)
    cube = open_product(path, chunks=50)
    np.testing.assert_array_equal(cube.values, open_product(products["l2a"]).values)
    assert paths and all(p.startswith(f"/vsizip/{path}/") for p in paths if "zipped" in p)
    assert any(p.startswith("/vsizip/") for p in paths)
    assert cube.attrs["product_id"] == products["l2a"].name.removesuffix(".SAFE")
    assert sorted(p.name for p in path.parent.iterdir()) == before  # nothing extracted


def test_graph_pickles_and_computes_elsewhere(products):
    cube = open_product(products["l2a_zip"], chunks=64)
    clone = pickle.loads(pickle.dumps(cube))
    np.testing.assert_array_equal(clone.values, cube.values)


def test_saturated_reads_one(tmp_path):
    refl, _ = _scene()
    refl[:, 30:36, 30:36] = 9.0  # DN 65535
    p = write_safe(tmp_path, refl, level="L2A", baseline="05.09", band_names=BAND_NAMES)
    got = open_product(p, bands=["B02", "B05"]).values
    assert (got[:, 30:36, 30:36] == 1.0).all()


def test_missing_band(products, tmp_path):
    with pytest.raises(BandMismatchError, match="B10"):
        open_product(products["l2a"], bands=["B02", "B10"])
    refl, _ = _scene()
    names = tuple(b for b in BAND_NAMES if b != "B05")
    p = write_safe(tmp_path, refl[[BAND_NAMES.index(b) for b in names]], level="L1C", band_names=names)
    assert "B05" not in open_product(p).band.values
    with pytest.raises(BandMismatchError, match="B05"):
        open_product(p, bands=["B04", "B05"])


def test_truncated_jp2_is_corrupt_data(tmp_path):
    refl, _ = _scene()
    p = write_safe(tmp_path, refl, level="L1C", baseline="04.00")
    jp2 = next(p.rglob("*_B03.jp2"))
    data = jp2.read_bytes()
    jp2.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDataError, match="B03"):
        open_product(p).compute()
    jp2.write_bytes(b"")
    with pytest.raises(CorruptDataError, match="B03"):
        open_product(p)


def test_file_damaged_after_open_fails_at_compute_naming_it(tmp_path):
    refl, _ = _scene()
    p = write_safe(tmp_path, refl, level="L1C")
    cube = open_product(p, bands=["B02", "B04"])
    jp2 = next(p.rglob("*_B04.jp2"))
    jp2.write_bytes(jp2.read_bytes()[:200])
    with pytest.raises(CorruptDataError, match="_B04.jp2"):
        cube.compute()


def test_bad_xml_is_corrupt_data(tmp_path):
    refl, _ = _scene()
    p = write_safe(tmp_path, refl, level="L2A")
    mtd = p / "MTD_MSIL2A.xml"
    mtd.write_text(mtd.read_text()[:500])
    with pytest.raises(CorruptDataError, match="not valid XML"):
        open_product(p)
    mtd.write_text("")
    with pytest.raises(CorruptDataError, match="empty"):
        open_product(p)


def test_metadata_without_quantification_or_with_wrong_type(products):
    text = (products["l2a"] / "MTD_MSIL2A.xml").read_text()
    no_q = text.replace("BOA_QUANTIFICATION_VALUE", "SOMETHING_ELSE")
    with pytest.raises(CorruptDataError, match="BOA_QUANTIFICATION_VALUE"):
        parse_product_metadata(no_q.encode())
    with pytest.raises(ProductFormatError, match="S2MSI1B"):
        parse_product_metadata(text.replace("S2MSI2A", "S2MSI1B").encode())


def test_not_a_product(tmp_path):
    with pytest.raises(ProductNotFoundError):
        open_product(tmp_path / "nope.SAFE")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "readme.txt").write_text("hi")
    with pytest.raises(ProductFormatError, match="not a Sentinel-2 .SAFE"):
        open_product(tmp_path / "folder")
    old = tmp_path / "S2A_OPER_PRD_MSIL1C_PDMC_20151201T000000.SAFE"
    old.mkdir()
    (old / "S2A_OPER_MTD_SAFL1C_PDMC_20151201T000000.xml").write_text("<x/>")
    with pytest.raises(ProductFormatError, match="old-format"):
        open_product(old)
    (tmp_path / "empty.SAFE").mkdir()
    with pytest.raises(ProductFormatError, match="MTD_MSIL1C.xml"):
        open_product(tmp_path / "empty.SAFE")
    bad_zip = tmp_path / "x.zip"
    bad_zip.write_bytes(b"not a zip")
    with pytest.raises(CorruptDataError, match="zip"):
        open_product(bad_zip)
    other_zip = tmp_path / "y.zip"
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("data/readme.txt", "hi")
    with pytest.raises(ProductFormatError, match="MTD_MSIL"):
        open_product(other_zip)


def test_invalid_parameters(products):
    with pytest.raises(InvalidParameterError, match="10, 20 or 60"):
        open_safe(products["l1c"], resolution=30)
    with pytest.raises(InvalidParameterError, match="resampling"):
        open_product(products["l1c"], resampling="cubic")
    with pytest.raises(InvalidParameterError, match="chunks"):
        open_product(products["l1c"], chunks=0)


def test_metadata_file_path_opens_its_product(products):
    cube = open_product(products["l1c"] / "MTD_MSIL1C.xml", bands=["B02"])
    assert cube.attrs["level"] == "L1C" and cube.shape == (1, H, W)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    ratio=st.sampled_from([0.5, 2.0, 1 / 3, 3.0, 1 / 6, 6.0, 0.4, 2.5]),
    method=st.sampled_from(["nearest", "bilinear", "average"]),
    cut=st.integers(1, 30),
    seed=st.integers(0, 2**16),
)
def test_resampling_blocks_equal_whole(n, ratio, method, cut, seed):
    """Resampling anchored to global indices: any split of the target axis gives the same pixels."""
    src = np.random.default_rng(seed).uniform(0, 1, (n, 3)).astype(np.float32)
    m = max(1, round(n / ratio))
    cut = min(cut, m)

    def run(t0, t1):
        s0, s1, idx, w = lazy.resample_indices(t0, t1, ratio, n, method)
        assert 0 <= s0 < s1 <= n
        return lazy._apply(src[s0:s1], 0, idx, w, method, ratio)

    whole = run(0, m)
    parts = np.concatenate([run(0, cut), run(cut, m)]) if cut < m else run(0, m)
    np.testing.assert_array_equal(whole, parts)
    assert whole.shape == (m, 3) and np.isfinite(whole).all()
    assert whole.min() >= src.min() - 1e-6 and whole.max() <= src.max() + 1e-6


@pytest.mark.slow
def test_computes_on_a_process_pool(products):
    import dask

    cube = open_product(products["l2a_zip"], chunks=64)
    with dask.config.set(scheduler="processes", num_workers=2):
        got = cube.values
    np.testing.assert_array_equal(got, open_product(products["l2a"]).values)


def test_downsampling_reads_in_bounded_strips(products, monkeypatch):
    want = open_product(products["l1c"], resolution=60, resampling="average", bands=["B02", "B05"]).values
    windows = []
    real = lazy._read_window

    def spy(src, rows, cols):
        windows.append((rows[1] - rows[0]) * (cols[1] - cols[0]))
        return real(src, rows, cols)

    monkeypatch.setattr(lazy, "_read_window", spy)
    monkeypatch.setattr(lazy, "MAX_WINDOW_PIXELS", 2000)
    got = open_product(products["l1c"], resolution=60, resampling="average", bands=["B02", "B05"]).values
    np.testing.assert_array_equal(got, want)
    assert len(windows) > 2 and max(windows) <= 2000


def test_bands_as_preset_or_comma_list(products):
    assert list(open_product(products["l2a"], bands="s2-9").band.values) == list(PRESETS["s2-9"])
    assert list(open_product(products["l2a"], bands="B4,B3,B2").band.values) == ["B04", "B03", "B02"]
    with pytest.raises(InvalidParameterError, match="repeats"):
        open_product(products["l2a"], bands=["B02", "B2"])


def test_l2a_missing_its_native_20m_b11_is_refused_naming_the_file(scene, tmp_path):
    """Masking from the 60 m copy without a word gave a degraded mask; the product is incomplete."""
    refl, nodata = scene
    p = write_safe(tmp_path, refl, level="L2A", baseline="05.09", nodata_mask=nodata)
    (gone,) = p.rglob("R20m/*_B11_20m.jp2")
    gone.unlink()
    with pytest.raises(
        ProductFormatError, match=rf"lacks R20m/{gone.name}, its B11 band at the native 20 m"
    ) as err:
        open_product(p, bands=PRESETS["s2-9"])
    assert "R60m/" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ProductFormatError, match="lacks R20m/"):
        open_product(p, bands=["B11"], resolution=20)
    coarse = open_product(
        p, bands=["B11"], resolution=60
    )  # the 60 m grid reads the 60 m file, as it always did
    assert coarse.shape == (1, H // 6, W // 6)
    assert "B12" in open_product(p, bands=["B12"]).band.values  # other bands are untouched
