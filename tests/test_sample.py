"""The demo product builder: real s2cloudless scene -> L1C SAFE (offline: uses the shared copy)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import need

from s2mask.errors import CorruptDataError
from s2mask.io import open_product
from s2mask.testing import sample

SCENE = "s2cloudless_testscene/input_arrays.npz"


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_member_takes_only_that_file(tmp_path):
    archive = _tar(
        tmp_path / "s.tar.gz",
        {
            "s2cloudless-1.2.1/setup.py": b"print()",
            "s2cloudless-1.2.1/s2cloudless/TestInputs/input_arrays.npz": b"NPZ",
        },
    )
    out = tmp_path / "out"
    out.mkdir()
    got = sample.extract_member(archive, sample.MEMBER, out / "scene.npz")
    assert got.read_bytes() == b"NPZ"
    assert [p.name for p in out.iterdir()] == ["scene.npz"]


def test_extract_member_refuses_unsafe_or_missing(tmp_path):
    evil = _tar(tmp_path / "evil.tar.gz", {"../../" + sample.MEMBER: b"x"})
    with pytest.raises(CorruptDataError, match="unsafe"):
        sample.extract_member(evil, sample.MEMBER, tmp_path / "a.npz")
    empty = _tar(tmp_path / "empty.tar.gz", {"pkg/readme": b"x"})
    with pytest.raises(CorruptDataError, match="has no file"):
        sample.extract_member(empty, sample.MEMBER, tmp_path / "b.npz")
    assert not (tmp_path / "a.npz").exists() and not (tmp_path / "b.npz").exists()


def test_cached_scene_is_used_without_download(tmp_path):
    cache = tmp_path / ".cache"
    cache.mkdir()
    npz = cache / "s2cloudless_input_arrays.npz"
    npz.write_bytes(b"cached")
    assert sample.fetch_scene(cache) == npz


@pytest.mark.slow
def test_build_sample_from_the_real_scene(shared_data, tmp_path, capsys):
    npz = need(shared_data / SCENE)
    assert sample.main([str(tmp_path), "--npz", str(npz)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == tmp_path / f"{sample.SAMPLE_NAME}.SAFE"
    assert path.name == "S2B_MSIL1C_20200101T000000_N0208_R000_T00XXX_20200101T000000.SAFE"
    cube = open_product(path, chunks=256)
    assert cube.attrs["level"] == "L1C" and cube.attrs["processing_baseline"] == "02.08"
    assert cube.shape == (13, 852, 510) and cube.rio.crs.to_epsg() == 32631
    with np.load(npz) as data:
        want = np.clip(data["s2_im"][0, :852, :510, 3], 0, 1)
    np.testing.assert_allclose(cube.sel(band="B04").values, want, atol=1.0001e-4)
    assert sample.build_sample(tmp_path, source_npz=npz) == path  # existing product is kept


def test_load_scene_crops_to_multiple_of_six(shared_data):
    npz = need(shared_data / SCENE)
    refl = sample.load_scene(npz)
    assert refl.shape == (13, 852, 510) and refl.dtype == np.float32
    assert float(np.nanmin(refl)) >= 0.0 and float(np.nanmedian(refl[3])) < 1.0


def test_load_scene_rejects_other_npz(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, other=np.zeros(3))
    with pytest.raises(CorruptDataError, match="s2_im"):
        sample.load_scene(bad)


def test_build_sample_from_a_crop_of_the_real_scene(shared_data, tmp_path):
    with np.load(need(shared_data / SCENE)) as data:
        crop = data["s2_im"][:, 100:227, 200:299]
    small = tmp_path / "small.npz"
    np.savez(small, s2_im=crop)
    path = sample.build_sample(tmp_path / "out", source_npz=small)
    cube = open_product(path)
    assert cube.shape == (13, 126, 96) and cube.attrs["product_id"] == sample.SAMPLE_NAME
    want = np.clip(crop[0, :126, :96].transpose(2, 0, 1), 0, 1)
    np.testing.assert_allclose(
        cube.sel(band=["B02", "B03", "B04", "B08"]).values, want[[1, 2, 3, 7]], atol=1.0001e-4
    )
