"""Writing composites: one uint16 COG with count (and source, date), and the path-level pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401
from rasterio.transform import from_origin

from s2mask.composite import CompositeOptions, composite, composite_products, write_composite
from s2mask.composite.products import quicklook_path
from s2mask.errors import InvalidParameterError, OutputExistsError, ProductNotFoundError

BANDS = ("B02", "B03", "B04", "B08")
H, W = 48, 40
TRANSFORM = from_origin(500_000, 4_600_000, 10, 10)
DATES = ("20240601T101031", "20240611T101031", "20240621T101031", "20240701T101031")

ISO_DATES = tuple(f"{d[:4]}-{d[4:6]}-{d[6:8]}T10:10:31Z" for d in DATES)


def _surface() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([0.05 + 0.001 * (yy + xx) + 0.01 * b for b in range(len(BANDS))]).astype(np.float32)


def _classes(t: int) -> np.ndarray:
    """Cloud in a moving square, shadow beside it; the top-left 4x4 corner is cloudy in every scene."""
    m = np.zeros((H, W), np.uint8)
    m[8 * t : 8 * t + 12, 10:22] = 1
    m[8 * t : 8 * t + 12, 22:26] = 2
    m[:4, :4] = 1
    return m


def _write_tif(path, data: np.ndarray, *, descriptions=None, nodata=None, dtype="uint16") -> None:
    profile = {"driver": "GTiff", "width": W, "height": H, "count": data.shape[0], "dtype": dtype,
               "crs": "EPSG:32633", "transform": TRANSFORM, "nodata": nodata}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions or (), start=1):
            dst.set_band_description(i, d)


@pytest.fixture()
def products(tmp_path):
    surface = _surface()
    paths, masks = [], []
    for t, date in enumerate(DATES):
        m = _classes(t)
        refl = np.where(m == 1, 0.8, np.where(m == 2, surface * 0.3, surface))
        p = tmp_path / f"S2A_MSIL2A_{date}_N0510_R022_T33TUL_{date}.tif"
        _write_tif(p, np.round(refl * 10000).astype(np.uint16), descriptions=BANDS, nodata=0)
        mp = tmp_path / f"mask_{t}.tif"
        _write_tif(mp, m[None], dtype="uint8", nodata=255)
        paths.append(p)
        masks.append(mp)
    return paths, masks, surface


def _expected(surface):
    count = sum((_classes(t) == 0).astype(int) for t in range(len(DATES)))
    return np.round(surface * 10000).astype(np.uint16), count


def _cube_and_mask(path, mask_path):
    cube = rioxarray.open_rasterio(path, chunks=16).astype(np.float32) / 10000
    cube = cube.assign_coords(band=list(BANDS))
    return cube, rioxarray.open_rasterio(mask_path).squeeze("band", drop=True)


def test_write_composite_is_a_uint16_cog_with_count_source_and_date(products, tmp_path):
    from rio_cogeo.cogeo import cog_validate

    paths, masks, surface = products
    pairs = [_cube_and_mask(p, m) for p, m in zip(paths, masks, strict=True)]
    result = composite([c for c, _ in pairs], [m for _, m in pairs], method="best-pixel", dates=ISO_DATES)
    out = write_composite(result, tmp_path / "best.tif", sources=[p.name for p in paths])
    assert cog_validate(str(out))[0]
    dn, count = _expected(surface)
    with rasterio.open(out) as src:
        assert src.count == 7 and src.dtypes[0] == "uint16" and src.nodata == 0
        assert src.descriptions == (*BANDS, "count", "source", "date")
        assert src.scales == (1e-4,) * 4 + (1.0,) * 3 and src.offsets == (0.0,) * 7
        assert src.crs.to_epsg() == 32633 and src.transform == TRANSFORM
        tags = src.tags()
        assert tags["METHOD"] == "best-pixel" and tags["SCENE_2"] == paths[1].name
        assert tags["SCENE_1_DATE"].startswith("2024-06-01")
        data = src.read()
    has = count > 0
    assert not has[:4, :4].any() and has.sum() > 0.9 * H * W
    # DN are reproduced up to float32 rounding of DN / 10000 * 10000
    assert np.abs(data[:4, has].astype(int) - dn[:, has]).max() <= 1
    np.testing.assert_array_equal(data[4], count)
    assert (data[:, ~has] == 0).all()
    first = np.argmax(np.stack([_classes(t) == 0 for t in range(len(DATES))]), axis=0) + 1
    np.testing.assert_array_equal(data[5][has], first[has])
    days = np.array([np.datetime64(d[:10], "D").astype(int) for d in ISO_DATES])
    np.testing.assert_array_equal(data[6][has], days[first[has] - 1])
    assert (data[6][~has] == 0).all() and tags["DATE_BAND"].startswith("days since 1970-01-01")
    with pytest.raises(OutputExistsError):
        write_composite(result, out)


def test_composite_products_with_mask_cogs_writes_cog_and_quicklook(products, tmp_path):
    paths, masks, surface = products
    out = tmp_path / "out" / "median.tif"
    out.parent.mkdir()
    run = composite_products(paths, out, masks=masks, options=CompositeOptions(bands=BANDS, buffer=1))
    assert run.cog == out and run.quicklook == quicklook_path(out)
    assert run.scenes == tuple(p.stem for p in paths)
    assert run.quicklook.stat().st_size > 0
    with rasterio.open(out) as src:
        data = src.read()
        assert src.descriptions == (*BANDS, "count") and src.tags()["BUFFER_PIXELS"] == "1"
    dn, _ = _expected(surface)
    has = data[4] > 0
    assert np.abs(data[:4, has].astype(int) - dn[:, has]).max() <= 1
    plain = sum((_classes(t) == 0).astype(int) for t in range(len(DATES)))
    assert (data[4] <= plain).all() and data[4].sum() < plain.sum()  # the buffer removed observations
    with pytest.raises(OutputExistsError):
        composite_products(paths, out, masks=masks, options=CompositeOptions(bands=BANDS))


def test_composite_products_computes_masks_with_a_model(products, tmp_path):
    from s2mask.testing.models import ThresholdModel

    paths, _, surface = products
    model = ThresholdModel(bands=BANDS, cloud=0.3, shadow=0.02)
    options = CompositeOptions(bands=BANDS, method="best-pixel", target_date="2024-06-30", quicklook=False)
    run = composite_products(paths, tmp_path / "bp.tif", model=model, options=options)
    assert run.quicklook is None
    with rasterio.open(run.cog) as src:
        data = src.read()
    dn, count = _expected(surface)
    clear = [(_classes(t) == 1) for t in range(len(DATES))]
    not_cloud = sum((~c).astype(int) for c in clear)  # the rule model sees cloud, not the faint shadows
    np.testing.assert_array_equal(data[4], not_cloud)
    both = (not_cloud > 0) & (count > 0)
    # the target date is closest to the 4th scene (2024-07-01), then the 3rd
    assert (data[5][both & (_classes(3) == 0)] == 4).all()


def test_composite_products_refuses_bad_inputs(products, tmp_path):
    paths, masks, _ = products
    with pytest.raises(InvalidParameterError, match="one mask COG per product"):
        composite_products(paths, tmp_path / "x.tif", masks=masks[:2])
    with pytest.raises(InvalidParameterError, match="at least one"):
        composite_products([], tmp_path / "x.tif", masks=[])
    with pytest.raises(ProductNotFoundError, match="does not exist"):
        composite_products(paths, tmp_path / "x.tif", masks=[*masks[:3], tmp_path / "nope.tif"])


def test_composite_legend_names_counts_and_dates():
    from s2mask.quicklook import OVERLAY, composite_legend

    count = np.array([[0, 1, 2], [3, 3, 4]])
    nodata = np.where(count < 2, 255, 0)
    day = np.datetime64("2024-06-01", "D").astype(int)
    dates = np.array([[0, 0, day], [day, day + 10, day + 10]])
    entries = composite_legend(count, nodata, date_band=dates, min_observations=2)
    assert entries[0] == (OVERLAY[255], "< 2 clear obs 33%")
    texts = [t for _, t in entries[1:]]
    assert texts[0] == "clear obs/pixel min 0 median 2 max 4"
    assert texts[1:] == ["2024-06-11 50%", "2024-06-01 50%"] or texts[1:] == [
        "2024-06-01 50%",
        "2024-06-11 50%",
    ]
    plain = composite_legend(count, np.zeros_like(count), dates=["2024-06-01T10:00", "2024-07-01T10:00"])
    assert plain[0][1] == "no clear obs 0%" and plain[-1][1] == "2 scenes 2024-06-01 to 2024-07-01"


def test_composite_products_quicklook_carries_the_composite_legend(products, tmp_path, monkeypatch):
    import s2mask.quicklook as ql

    seen = {}
    real = ql.write_quicklook

    def spy(rgb, mask, path, **kw):
        seen.update(kw)
        return real(rgb, mask, path, **kw)

    monkeypatch.setattr(ql, "write_quicklook", spy)
    paths, masks, _ = products
    run = composite_products(
        paths, tmp_path / "m.tif", masks=masks, options=CompositeOptions(bands=BANDS, method="first")
    )
    texts = [t for _, t in seen["legend"]]
    assert texts[0] == "no clear obs 1%" and texts[1].startswith("clear obs/pixel min 0")
    assert any(t.startswith("2024-06-01 ") for t in texts) and not any("cloud" in t for t in texts)
    assert run.quicklook.stat().st_size > 0
