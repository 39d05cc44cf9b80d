"""CloudSEN12 loaders (current tacozip and legacy v1 .taco), label remapping, filters, GeoTIFF pairs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from s2mask.errors import BandMismatchError, InvalidParameterError, TrainingDataError
from training.data import PatchDataset, open_source
from training.data.taco import TacoFilter, TacoSource
from training.data.taco_build import TacoSample, real_patch_samples, write_taco, write_taco_v1
from training.labels import all_ignored, remap_cloudsen12

RGBN = ("B02", "B03", "B04", "B08")


def test_remap_cloudsen12_labels():
    raw = np.array([[0, 1, 2, 3], [4, 255, 7, 1]], np.uint8)
    np.testing.assert_array_equal(remap_cloudsen12(raw), [[0, 1, 1, 2], [255, 255, 255, 1]])
    f = np.array([0.0, 3.0, np.nan, 2.5])
    np.testing.assert_array_equal(remap_cloudsen12(f), [0, 2, 255, 255])
    assert all_ignored(np.full((3, 3), 255, np.uint8))
    assert not all_ignored(np.array([255, 0], np.uint8))


@pytest.fixture(scope="module")
def samples(shared_data):
    s = real_patch_samples(shared_data, n=8, size=48)
    empty = TacoSample(
        "ROI_EMPTY",
        s[0].image,
        np.full((48, 48), 255, np.uint8),
        dict(s[0].metadata, **{"tortilla:data_split": "train"}),
    )
    return [*s, empty]


@pytest.fixture(scope="module", params=["tacozip", "v1"])
def taco(request, samples, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    if request.param == "tacozip":
        return write_taco(d / "cloudsen12-l1c.tacozip", samples)
    return write_taco_v1(d / "cloudsen12-l1c.0000.part.taco", samples)


def _ids(src: TacoSource) -> list[str]:
    rows = src.reader.rows
    return [rows[i].get("id", rows[i].get("tortilla:id")) for i in src.index]


def test_split_and_all_255_skip(taco, samples):
    src = open_source(taco, split="train", bands=RGBN)
    assert isinstance(src, TacoSource)
    expected = [s.id for s in samples if s.metadata["tortilla:data_split"] == "train" and s.id != "ROI_EMPTY"]
    assert _ids(src) == expected  # ROI_EMPTY (all 255) is skipped
    assert _ids(open_source(taco, split="test", bands=RGBN)) == [
        s.id for s in samples if s.metadata["tortilla:data_split"] == "test"
    ]


def test_reads_bands_as_reflectance_and_remaps_labels(taco, samples):
    src = open_source(taco, split="train", bands=("B08", "B02"))
    x, y = src[0]
    first = samples[0]
    assert x.shape == (2, 48, 48) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], first.image[7] / 10000.0, rtol=1e-6)
    np.testing.assert_allclose(x[1], first.image[1] / 10000.0, rtol=1e-6)
    np.testing.assert_array_equal(y, remap_cloudsen12(first.label))


def test_filters(taco, samples):
    high = TacoSource(taco, split="train", bands=RGBN, filters=TacoFilter(label_type="high"))
    assert all(samples[int(i[4:])].metadata["label_type"] == "high" for i in _ids(high))
    mexico = TacoSource(taco, split="train", bands=RGBN, filters=TacoFilter.from_options(region="mexico"))
    assert _ids(mexico) and all(
        float(samples[int(i[4:])].metadata["stac:centroid"][7:].split()[0]) < -80 for i in _ids(mexico)
    )
    box = TacoSource(taco, split="train", bands=RGBN, filters=TacoFilter.from_options(bbox="5,40,30,50"))
    assert set(_ids(box)).isdisjoint(_ids(mexico))
    clear = TacoSource(taco, split="train", bands=RGBN, filters=TacoFilter.from_options(cloud_cover="0,5"))
    for i in _ids(clear):
        md = samples[int(i[4:])].metadata
        assert md["thick_percentage"] + md["thin_percentage"] <= 5
    with pytest.raises(TrainingDataError, match="L2A"):
        TacoSource(taco, split="train", bands=RGBN, filters=TacoFilter(level="L2A"))


def test_bad_filter_options():
    with pytest.raises(InvalidParameterError, match="region"):
        TacoFilter.from_options(region="atlantis")
    with pytest.raises(InvalidParameterError, match="empty"):
        TacoFilter.from_options(bbox="10,10,0,20")
    with pytest.raises(InvalidParameterError, match="min,max"):
        TacoFilter.from_options(cloud_cover="5")


def test_missing_band_is_reported(tmp_path, samples):
    path = write_taco(
        tmp_path / "rgb.tacozip",
        [TacoSample(s.id, s.image[[3, 2, 1]], s.label, s.metadata) for s in samples[:2]],
    )
    with pytest.raises(BandMismatchError):
        TacoSource(path, split="train", bands=RGBN)[0]


def test_patch_dataset_crops_and_augments(taco):
    ds = PatchDataset(open_source(taco, split="train", bands=RGBN), crop=32, train=True, seed=3)
    x, y = ds[0]
    assert tuple(x.shape) == (4, 32, 32) and tuple(y.shape) == (32, 32)
    assert str(y.dtype) == "torch.int64"


def _tif(path, arr, descriptions=None):
    arr = arr[None] if arr.ndim == 2 else arr
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=arr.shape[1],
        width=arr.shape[2],
        count=arr.shape[0],
        dtype=arr.dtype,
        crs="EPSG:32633",
        transform=from_origin(0, 0, 10, 10),
    ) as dst:
        dst.write(arr)
        for i, d in enumerate(descriptions or [], 1):
            dst.set_band_description(i, d)


def test_geotiff_pairs(tmp_path, samples):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for i, s in enumerate(samples[:4]):
        _tif(tmp_path / "images" / f"p{i}.tif", s.image[[1, 2, 3, 7]], ["B02", "B03", "B04", "B08"])
        _tif(tmp_path / "labels" / f"p{i}.tif", remap_cloudsen12(s.label))
    src = open_source(tmp_path, split="train", bands=("B08",))
    assert len(src) == 4  # fewer than 8 pairs: all train
    x, y = src[1]
    np.testing.assert_allclose(x[0], samples[1].image[7] / 10000.0, rtol=1e-6)
    np.testing.assert_array_equal(y, remap_cloudsen12(samples[1].label))
    with pytest.raises(BandMismatchError):
        open_source(tmp_path, split="train", bands=("B11",))


def test_unknown_dataset(tmp_path):
    with pytest.raises(TrainingDataError, match="does not exist"):
        open_source(tmp_path / "nope", split="train", bands=RGBN)
    with pytest.raises(TrainingDataError, match="not a dataset"):
        open_source(tmp_path, split="train", bands=RGBN)
