"""write_cogs: a mask and its probabilities from one pass of the model, all-or-nothing publishing."""

from __future__ import annotations

import errno
import threading

import dask.array as da
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from rio_cogeo.cogeo import cog_validate

from s2mask.bands import DEFAULT_BANDS
from s2mask.engine import compute_blocks, count_windows, predict
from s2mask.errors import InvalidParameterError, OutputError, OutputExistsError
from s2mask.io import cog
from s2mask.io.cog import mask_colormap, probabilities_to_uint8, write_cog, write_cogs
from s2mask.mask import to_mask
from s2mask.testing.models import ThresholdModel


class CountingModel(ThresholdModel):
    """ThresholdModel that counts the windows it is asked to predict."""

    def __init__(self) -> None:
        super().__init__()
        self.windows = 0
        self.lock = threading.Lock()

    def predict_proba(self, batch):
        with self.lock:
            self.windows += len(batch)
        return super().predict_proba(batch)


def _cube(h: int = 300, w: int = 420) -> xr.DataArray:
    rng = np.random.default_rng(4)
    a = rng.random((len(DEFAULT_BANDS), h, w), dtype=np.float32) * 0.6
    a[:, 100:180, 50:200] = 0.9  # a bright "cloud"
    a[:, :30, :40] = np.nan
    cube = xr.DataArray(
        da.from_array(a, chunks=(-1, 128, 128)),
        dims=("band", "y", "x"),
        coords={
            "band": list(DEFAULT_BANDS),
            "y": 5_000_000.0 - 10.0 * np.arange(h) - 5,
            "x": 400_000.0 + 10.0 * np.arange(w) + 5,
        },
    )
    return cube.rio.write_crs("EPSG:32631")


def _items(probs, folder):
    return [
        (to_mask(probs), folder / "mask.tif", {"nodata": 255, "colormap": mask_colormap()}),
        (probabilities_to_uint8(probs), folder / "probs.tif", {"nodata": 255, "overview_resampling": "average"}),
    ]


@pytest.mark.parametrize("compute", [cog.compute_each_block, compute_blocks], ids=["writer", "engine"])
def test_mask_and_probabilities_in_one_model_pass_equal_separate_writes(tmp_path, compute):
    model = CountingModel()
    probs = predict(_cube(), model, window=64, chunks=128)
    one = tmp_path / "one"
    one.mkdir()
    write_cogs(_items(probs, one), compute=compute)
    single_pass = model.windows
    if compute is compute_blocks:  # the engine's way: every window runs once
        assert single_pass == count_windows(_cube(), model, window=64)

    model.windows = 0
    sep = tmp_path / "sep"
    sep.mkdir()
    for data, path, options in _items(probs, sep):
        write_cog(data, path, compute=compute, **options)
    assert model.windows == 2 * single_pass  # separate files run the model twice

    for name in ("mask.tif", "probs.tif"):
        assert cog_validate(str(one / name), quiet=True)[0]
        with rasterio.open(one / name) as a, rasterio.open(sep / name) as b:
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.count == b.count and a.nodata == 255
    with rasterio.open(one / "mask.tif") as src:
        assert src.colormap(1)[1] == mask_colormap()[1]
        assert set(np.unique(src.read(1))) == {0, 1, 255}
    assert sorted(p.name for p in one.iterdir()) == ["mask.tif", "probs.tif"]


def test_existing_second_target_is_refused_before_any_work(tmp_path):
    model = CountingModel()
    probs = predict(_cube(), model, window=64, chunks=128)
    (tmp_path / "probs.tif").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="probs.tif"):
        write_cogs(_items(probs, tmp_path))
    assert model.windows == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probs.tif"]
    assert (tmp_path / "probs.tif").read_bytes() == b"keep me"


def test_disk_full_on_one_file_publishes_neither(tmp_path, monkeypatch):
    probs = predict(_cube(), CountingModel(), window=64, chunks=128)
    real = cog._write_window
    calls = []

    def full(dst, block, window):
        calls.append(dst.count)
        if dst.count == 3 and calls.count(3) > 2:  # the probabilities file, third block
            raise OSError(errno.ENOSPC, "No space left on device")
        real(dst, block, window)

    monkeypatch.setattr(cog, "_write_window", full)
    with pytest.raises(OutputError, match="disk is full"):
        write_cogs(_items(probs, tmp_path))
    assert list(tmp_path.iterdir()) == []  # no mask, no probabilities, no temporary files


def test_bad_options_are_named(tmp_path):
    probs = predict(_cube(60, 60), CountingModel(), window=32, chunks=64)
    with pytest.raises(InvalidParameterError, match="colour_map"):
        write_cogs([(to_mask(probs), tmp_path / "m.tif", {"colour_map": {}})])
    with pytest.raises(InvalidParameterError, match="same output twice"):
        write_cogs([(to_mask(probs), tmp_path / "m.tif", {}), (to_mask(probs), tmp_path / "m.tif", {})])
    assert list(tmp_path.iterdir()) == []
