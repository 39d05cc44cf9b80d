"""Every reader resamples the same way by default, so one scene gives one mask whatever its source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac
import pytest
from rasterio.transform import from_origin

from s2mask.errors import InvalidParameterError
from s2mask.io.geotiff import open_geotiff
from s2mask.io.stac import open_stac_item
from tests.stac_server import block_internet, shaped_item, shared_item, write_band_cogs  # noqa: F401

pytestmark = [
    pytest.mark.usefixtures("block_internet"),
    pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"),  # odc-geo affine products
]

CRS = "EPSG:32633"
ORIGIN = from_origin(500000, 5080000, 10, 10)
SIZE = 64


def _item_with_a_20m_band(shared_data: Path, tmp: Path) -> tuple[pystac.Item, Path]:
    rng = np.random.default_rng(7)
    dn = {
        "B04": rng.integers(500, 3000, (SIZE, SIZE)).astype(np.uint16),
        "B11": rng.integers(500, 3000, (SIZE // 2, SIZE // 2)).astype(np.uint16),  # 20 m, textured
    }
    hrefs = write_band_cogs(tmp / "item", dn, transform=ORIGIN, crs=CRS)
    raw = shaped_item(
        shared_item(shared_data, "pc-l2a"), item_id="S2_resampling", when="2024-06-10T10:00:00Z",
        cloud_cover=10.0, hrefs=hrefs, transform=ORIGIN, shapes={b: a.shape for b, a in dn.items()}, crs=CRS,
    )  # fmt: skip
    return pystac.Item.from_dict(raw), hrefs["B11"]


def test_stac_resamples_20m_bands_like_the_geotiff_reader(shared_data: Path, tmp_path: Path) -> None:
    item, b11_file = _item_with_a_20m_band(shared_data, tmp_path)
    stac = open_stac_item(item, bands=("B04", "B11")).sel(band="B11").values
    geotiff = open_geotiff(b11_file, band_names=["B11"], resolution=10).sel(band="B11").values
    assert stac.shape == geotiff.shape == (SIZE, SIZE)
    np.testing.assert_allclose(stac, geotiff, atol=1e-6)
    np.testing.assert_array_equal(stac[0::2, 0::2], stac[1::2, 1::2])  # nearest: each 20 m pixel 2 x 2 times
    smooth = open_stac_item(item, bands=("B11",), resampling="bilinear").values[0]
    assert not np.allclose(smooth, stac)  # bilinear stays available, on request


def test_stac_refuses_an_unknown_resampling(shared_data: Path, tmp_path: Path) -> None:
    item, _ = _item_with_a_20m_band(shared_data, tmp_path)
    with pytest.raises(InvalidParameterError, match="resampling='cubic'; expected one of nearest"):
        open_stac_item(item, bands=("B11",), resampling="cubic")


def test_a_30m_geotiff_is_masked_on_its_own_grid(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    """--resolution used to default to 10 m for every input: 9x the pixels (and compute) of a 30 m file."""
    import json

    import rasterio
    from affine import Affine

    from s2mask.bands import BAND_NAMES
    from s2mask.testing.products import write_geotiff
    from tests.reliability_helpers import run_main, save_threshold_weights, scene

    transform = Affine(30.0, 0.0, 600000.0, 0.0, -30.0, 5200020.0)
    product = write_geotiff(tmp_path / "landsat_like.tif", scene(48), BAND_NAMES, "EPSG:32631", transform)
    weights = save_threshold_weights(tmp_path / "threshold.safetensors")
    out = tmp_path / "m.tif"
    result = run_main(
        ["run", product, "-o", out, "--weights", weights, "-q", "--no-quicklook"], monkeypatch, capsys
    )
    assert result.code == 0, result
    with rasterio.open(out) as ds:
        assert (ds.height, ds.width) == (48, 48) and ds.transform == transform
    assert json.loads(out.with_suffix(".json").read_text())["resolution"] == [30.0, 30.0]
    assert run_main(["run", product, "-o", tmp_path / "m10.tif", "--weights", weights, "-q", "--no-quicklook",
                     "--resolution", "10"], monkeypatch, capsys).code == 0  # fmt: skip
    with rasterio.open(tmp_path / "m10.tif") as ds:
        assert (ds.height, ds.width) == (144, 144)  # asked for: the 10 m grid


def test_stac_and_geotiff_give_the_same_reflectance_bit_for_bit(shared_data: Path, tmp_path: Path) -> None:
    """One DN -> reflectance conversion: a C1 item (DN + 1000, offset -0.1) equals the GeoTIFF of the same pixels."""
    import rasterio

    from s2mask.bands import DEFAULT_BANDS
    from tests.stac_server import write_cog
    from tests.test_stac_run import CRS as ITEM_CRS
    from tests.test_stac_run import ORIGIN as ITEM_ORIGIN
    from tests.test_stac_run import make_item

    with rasterio.open(shared_data / "sen12mscr_nigeria" / "ROIs1868_summer_s2_cloudy_19_p30.tif") as src:
        dn = src.read(window=((160, 256), (160, 256)))  # real pixels, 96 x 96
    raw, _ = make_item(shared_data, tmp_path, "c1-l2a", "same", refl=dn.astype(np.float32) / 10000)
    stac = open_stac_item(pystac.Item.from_dict(raw), bands=DEFAULT_BANDS).values
    from s2mask.bands import BAND_NAMES

    tif = write_cog(tmp_path / "same.tif", dn, ITEM_ORIGIN, ITEM_CRS, descriptions=BAND_NAMES)
    geotiff = open_geotiff(tif, bands=DEFAULT_BANDS).values
    assert np.isfinite(stac).mean() > 0.99
    np.testing.assert_array_equal(stac, geotiff)
