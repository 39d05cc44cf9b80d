"""Nothing lost, nothing half-written: how ``s2mask run`` treats its outputs.

A run writes the mask COG, its ``.json`` summary, ``.png`` quick-look (and optionally
probabilities) to hidden temporary files beside the targets and renames them into place
only when all are complete, the mask last.  These tests break the run at each stage
(disk full in the COG or the JSON, a failing quick-look, a read error, Ctrl-C) and check
that no output and no temporary file is left, and that an older output survives.
They also pin the radiometry of L1C/L2A products before and after baseline 04.00.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from s2mask.errors import CorruptDataError, OutputError
from s2mask.testing.products import write_geotiff, write_safe
from tests.reliability_helpers import Inputs, cog_is_valid, files_in, make_inputs, run_main, scene

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("inputs"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(inputs: Inputs, out: Path, monkeypatch, capsys, *extra: object, product: Path | None = None):  # noqa: ANN001, ANN202
    args = ["run", product or inputs.l2a, "-o", out, "--weights", inputs.weights, "-q", *extra]
    return run_main(args, monkeypatch, capsys)


def test_a_run_writes_a_valid_cog_summary_and_quicklook_and_nothing_else(
    inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "out" / "mask.tif"
    result = _run(inputs, out, monkeypatch, capsys, "--probabilities")
    assert result.code == 0, result
    assert files_in(out.parent) == [
        "mask.json", "mask.png", "mask.stac.json", "mask.tif", "mask.tif.aux.xml", "mask_proba.tif"
    ]  # fmt: skip
    assert cog_is_valid(out) and cog_is_valid(out.parent / "mask_proba.tif")
    summary = json.loads((out.parent / "mask.json").read_text())
    assert summary["counts"]["total"] == 96 * 96 and summary["counts"]["valid"] == 96 * 96
    assert summary["product_id"] == "L2A_N0509"
    with rasterio.open(out) as ds:
        assert ds.shape == (96, 96) and ds.nodata == 255 and ds.dtypes[0] == "uint8"


def test_the_mask_is_published_last(inputs: Inputs, tmp_path: Path, monkeypatch, capsys) -> None:
    from s2mask._atomic import OutputTransaction

    order: list[str] = []
    real = OutputTransaction._publish

    def spy(self: OutputTransaction, tmp: Path, target: Path) -> None:
        assert tmp.parent == target.parent and tmp.name.startswith(".") and ".tmp" in tmp.name
        order.append(target.name)
        real(self, tmp, target)

    monkeypatch.setattr(OutputTransaction, "_publish", spy)
    assert _run(inputs, tmp_path / "m.tif", monkeypatch, capsys, "--probabilities").code == 0
    assert sorted(order[:-1]) == ["m.json", "m.png", "m.stac.json", "m.tif.aux.xml", "m_proba.tif"]
    assert order[-1] == "m.tif"


# --------------------------------------------------------------------------- existing outputs


@pytest.mark.parametrize("existing", ["m.tif", "m.json", "m.png"])
def test_an_existing_output_is_refused_before_any_work_and_left_untouched(
    existing: str, inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:
    import s2mask.engine

    old = tmp_path / existing
    old.write_bytes(b"an older result")
    monkeypatch.setattr(s2mask.engine, "predict", lambda *a, **k: pytest.fail("predict ran"))
    result = _run(inputs, tmp_path / "m.tif", monkeypatch, capsys)
    assert result.code == 1
    assert f"Output {old} already exists" in result.err and "--overwrite" in result.err
    assert old.read_bytes() == b"an older result"
    assert files_in(tmp_path) == [existing]


def test_overwrite_replaces_every_output(inputs: Inputs, tmp_path: Path, monkeypatch, capsys) -> None:
    for name in ("m.tif", "m.json", "m.png"):
        (tmp_path / name).write_bytes(b"old")
    assert _run(inputs, tmp_path / "m.tif", monkeypatch, capsys, "--overwrite").code == 0
    assert cog_is_valid(tmp_path / "m.tif")
    assert json.loads((tmp_path / "m.json").read_text())["counts"]["total"] == 96 * 96
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    assert files_in(tmp_path) == ["m.json", "m.png", "m.stac.json", "m.tif", "m.tif.aux.xml"]


# --------------------------------------------------------------------------- folders


def test_unwritable_output_folder(inputs: Inputs, tmp_path: Path, monkeypatch, capsys) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root ignores permissions: make the check see what a user would
            real = os.access
            monkeypatch.setattr(
                os, "access", lambda p, m, **k: False if Path(p) == folder else real(p, m, **k)
            )
        result = _run(inputs, folder / "m.tif", monkeypatch, capsys)
    finally:
        folder.chmod(0o755)
    assert result.code == 1
    assert (
        f"Output folder {folder} is not writable" in result.err and "choose another -o" in result.err.lower()
    )
    assert files_in(folder) == []


def test_output_folder_that_cannot_be_created(inputs: Inputs, tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "file").write_text("x")
    result = _run(inputs, tmp_path / "file" / "sub" / "m.tif", monkeypatch, capsys)
    assert result.code == 1
    assert "Cannot create the output folder" in result.err and "Choose another -o path" in result.err
    assert files_in(tmp_path) == ["file"]


def test_output_that_is_a_folder(inputs: Inputs, tmp_path: Path, monkeypatch, capsys) -> None:
    (tmp_path / "m.tif").mkdir()
    result = _run(inputs, tmp_path / "m.tif", monkeypatch, capsys, "--overwrite")
    assert result.code == 1 and "is a folder; expected a file path" in result.err
    assert files_in(tmp_path) == ["m.tif"]


# --------------------------------------------------------------------------- failures mid-run


def _enospc(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_writing_the_mask(inputs: Inputs, tmp_path: Path, monkeypatch, capsys) -> None:
    import s2mask.io.cog

    monkeypatch.setattr(s2mask.io.cog, "_write_window", _enospc)
    result = _run(inputs, tmp_path / "m.tif", monkeypatch, capsys)
    assert result.code == 1
    assert "the disk is full" in result.err and "free some space" in result.err
    assert files_in(tmp_path) == []


def test_disk_full_keeps_the_older_output(inputs: Inputs, tmp_path: Path, monkeypatch, capsys) -> None:
    import s2mask.io.cog

    assert _run(inputs, tmp_path / "m.tif", monkeypatch, capsys).code == 0
    before = {name: _digest(tmp_path / name) for name in files_in(tmp_path)}
    monkeypatch.setattr(s2mask.io.cog, "_write_window", _enospc)
    result = _run(inputs, tmp_path / "m.tif", monkeypatch, capsys, "--overwrite")
    assert result.code == 1 and "the disk is full" in result.err
    assert {name: _digest(tmp_path / name) for name in files_in(tmp_path)} == before


def test_disk_full_while_writing_the_summary_leaves_no_mask(
    inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:
    import s2mask._atomic

    real = s2mask._atomic._fsync_file

    def fsync(path: Path) -> None:
        if path.suffix == ".json":
            _enospc()
        real(path)

    monkeypatch.setattr(s2mask._atomic, "_fsync_file", fsync)
    result = _run(inputs, tmp_path / "m.tif", monkeypatch, capsys)
    assert result.code == 1
    assert "m.json failed: the disk is full" in result.err
    assert files_in(tmp_path) == []


def test_failing_quicklook_leaves_no_mask(inputs: Inputs, tmp_path: Path, monkeypatch, capsys) -> None:
    import s2mask.quicklook

    def broken(*args: object, **kwargs: object) -> None:
        raise OutputError("Writing m.png failed: simulated. Nothing was written.")

    monkeypatch.setattr(s2mask.quicklook, "write_quicklook", broken)
    result = _run(inputs, tmp_path / "m.tif", monkeypatch, capsys)
    assert result.code == 1 and "Writing m.png failed: simulated" in result.err
    assert files_in(tmp_path) == []


def test_read_error_during_compute_leaves_nothing(
    inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:
    import s2mask.io._lazy

    real, calls = s2mask.io._lazy._read_window, []

    def flaky(src, rows, cols):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) > 3:
            raise CorruptDataError(
                f"Cannot read rows {rows} of {src.path} (simulated); download the product again."
            )
        return real(src, rows, cols)

    monkeypatch.setattr(s2mask.io._lazy, "_read_window", flaky)
    result = _run(inputs, tmp_path / "m.tif", monkeypatch, capsys)
    assert result.code == 1 and "(simulated); download the product again" in result.err
    assert files_in(tmp_path) == []


def test_ctrl_c_mid_write_exits_130_and_leaves_nothing(
    inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:
    import s2mask.io.cog

    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(s2mask.io.cog, "_write_window", interrupt)
    result = _run(inputs, tmp_path / "m.tif", monkeypatch, capsys)
    assert result.code == 130
    assert "Interrupted; no partial output was left." in result.err
    assert files_in(tmp_path) == []


def test_api_failure_leaves_nothing_either(inputs: Inputs, tmp_path: Path, monkeypatch) -> None:
    import s2mask.io.cog
    from s2mask.model import load_model
    from s2mask.run import RunOptions, run_product

    monkeypatch.setattr(s2mask.io.cog, "_write_window", _enospc)
    with pytest.raises(OutputError, match="disk is full"):
        run_product(
            inputs.l2a,
            tmp_path / "m.tif",
            model=load_model(inputs.weights, device="cpu"),
            options=RunOptions(progress=False, probabilities=True),
        )
    assert files_in(tmp_path) == []


# --------------------------------------------------------------------------- degenerate but valid inputs


def test_product_smaller_than_one_window_gives_a_mask_of_its_size(
    inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:
    small = write_safe(tmp_path / "in", scene(36), level="L2A", product_id="SMALL")
    out = tmp_path / "out" / "m.tif"
    result = _run(inputs, out, monkeypatch, capsys, product=small)  # the model's window is 64 px
    assert result.code == 0, result
    assert cog_is_valid(out)
    with rasterio.open(out) as ds:
        mask = ds.read(1)
    assert mask.shape == (36, 36) and set(np.unique(mask)) <= {0, 1, 2}


def test_partly_nodata_product_masks_only_the_data(
    inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:
    edge = np.zeros((48, 48), bool)
    edge[:, :18] = True  # the left of the tile is outside the swath
    product = write_safe(tmp_path / "in", scene(48), level="L2A", product_id="EDGE", nodata_mask=edge)
    out = tmp_path / "out" / "m.tif"
    assert _run(inputs, out, monkeypatch, capsys, product=product).code == 0
    with rasterio.open(out) as ds:
        mask = ds.read(1)
    assert (mask[:, :18] == 255).all() and (mask[:, 18:] != 255).all()


def test_all_nodata_product_in_a_batch_is_a_failed_entry(
    inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:
    empty = write_safe(
        tmp_path / "in",
        np.full((13, 48, 48), 0.2, np.float32),
        level="L2A",
        product_id="EMPTY",
        nodata_mask=np.ones((48, 48), bool),
    )
    out = tmp_path / "out"
    result = run_main(
        ["run", empty, inputs.geotiff, "-o", out, "--weights", inputs.weights, "-q", "--no-quicklook"],
        monkeypatch,
        capsys,
    )
    assert result.code == 1
    assert "1 of 2 products failed" in result.err and "EMPTY.SAFE holds no valid pixel" in result.err
    assert files_in(out) == [
        "index.geojson", "scene_mask.json", "scene_mask.stac.json", "scene_mask.tif", "scene_mask.tif.aux.xml"
    ]  # fmt: skip


# --------------------------------------------------------------------------- radiometry


def _mask(inputs: Inputs, product: Path, out: Path, monkeypatch, capsys) -> np.ndarray:  # noqa: ANN001
    args = ["run", product, "-o", out, "--weights", inputs.threshold, "-q", "--no-quicklook"]
    result = run_main(args, monkeypatch, capsys)
    assert result.code == 0, result
    with rasterio.open(out) as ds:
        return ds.read(1)


def test_radiometry_is_the_same_for_l1c_l2a_before_and_after_baseline_04(
    inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:
    # the same reflectance as L2A 05.09 (offset -1000), L1C 04.00 zipped (-1000), L1C 02.14 (none), GeoTIFF;
    # the threshold model calls cloud above a mean reflectance of 0.25, shadow below 0.04
    masks = {
        p.name: _mask(inputs, p, tmp_path / f"{i}.tif", monkeypatch, capsys)
        for i, p in enumerate((inputs.l2a, inputs.l1c_zip, inputs.l1c, inputs.geotiff))
    }
    geotiff = masks.pop(inputs.geotiff.name)
    ref = masks.pop(inputs.l1c.name)  # before 04.00: DN = reflectance * 10000, no offset
    counts = np.bincount(ref.ravel(), minlength=3)
    assert counts[0] > 0.7 * ref.size and counts[1] > 0.1 * ref.size and counts[2] > 0.03 * ref.size
    for name, mask in masks.items():
        assert (mask != ref).mean() < 0.001, f"{name} reads other reflectance than the 02.14 product"
    # the GeoTIFF holds 20 m bands at 10 m (the SAFE products hold their 20 m block means): edges only
    assert (geotiff != ref).mean() < 0.02

    # the DN really differ by the offset, so the readers (not the generator) make them agree
    def dn(product: Path, band: str) -> np.ndarray:
        path = f"/vsizip/{product}/{product.stem}/" if product.suffix == ".zip" else f"{product}/"
        with rasterio.open(path + next(_members(product, band))) as ds:
            return ds.read(1).astype(np.int32)

    assert np.abs(dn(inputs.l1c_zip, "B02") - dn(inputs.l1c, "B02") - 1000).max() <= 1
    assert np.abs(dn(inputs.l2a, "B02_10m") - dn(inputs.l1c, "B02") - 1000).max() <= 1


def _members(product: Path, band: str):  # noqa: ANN202
    import zipfile

    if product.suffix == ".zip":
        root = product.stem + "/"
        names = zipfile.ZipFile(product).namelist()
        return (n[len(root) :] for n in names if n.endswith(f"_{band}.jp2"))
    return (str(p.relative_to(product)) for p in product.rglob(f"*_{band}*.jp2"))


def test_ignoring_the_baseline_04_offset_would_mask_the_scene_as_cloud(
    inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Control: the same product with its BOA_ADD_OFFSET dropped reads 0.1 brighter: far more 'cloud'."""
    stripped = tmp_path / "in" / inputs.l2a.name
    shutil.copytree(inputs.l2a, stripped)
    mtd = stripped / "MTD_MSIL2A.xml"
    text = mtd.read_text()
    start, end = text.index("<BOA_ADD_OFFSET_VALUES_LIST>"), text.index("</BOA_ADD_OFFSET_VALUES_LIST>")
    mtd.write_text(text[:start] + text[end + len("</BOA_ADD_OFFSET_VALUES_LIST>") :])
    good = _mask(inputs, inputs.l2a, tmp_path / "good.tif", monkeypatch, capsys)
    bad = _mask(inputs, stripped, tmp_path / "bad.tif", monkeypatch, capsys)
    assert (bad == 1).mean() > 3 * (good == 1).mean()
    assert (good == 2).any() and not (bad == 2).any()


def test_offsets_read_from_the_xml(inputs: Inputs) -> None:
    from s2mask.io.product import open_product

    refl = scene()
    for product in (inputs.l2a, inputs.l1c_zip, inputs.l1c):
        cube = open_product(product, bands=("B02", "B08"))
        np.testing.assert_allclose(cube.values, refl[[1, 7]], atol=1e-4)
        baseline = cube.attrs["processing_baseline"]
        assert (
            baseline
            == {"L2A_N0509": "05.09", "L1C_N0400": "04.00", "L1C_N0214": "02.14"}[cube.attrs["product_id"]]
        )


def test_stac_radiometry_of_every_provider_convention_gives_the_run_mask(
    inputs: Inputs, shared_data: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """``s2mask stac`` on items with the offset in raster:bands (Earth Search C1), already applied
    (Earth Search, boa_offset_applied) and implied by an old baseline (Planetary Computer 02.12)
    gives the mask ``s2mask run`` gives for a GeoTIFF of the same reflectance."""
    from s2mask.bands import BAND_NAMES
    from tests.stac_server import RustacServer, rustac_command
    from tests.test_stac_run import CRS as STAC_CRS
    from tests.test_stac_run import ORIGIN, SIZE, make_item

    if rustac_command() is None:
        pytest.skip("rustac is not installed, so no local STAC API can run")
    refl = scene(SIZE, seed=5)
    items = {
        template: make_item(shared_data, tmp_path / "cogs", template, f"S2_{template}", refl=refl,
                            when=f"2024-06-1{i}T10:00:00Z")[0]
        for i, template in enumerate(("c1-l2a", "es-l2a", "pc-l2a"))
    }  # fmt: skip
    reference = write_geotiff(tmp_path / "ref.tif", refl, BAND_NAMES, STAC_CRS, ORIGIN)
    ref = _mask(inputs, reference, tmp_path / "ref_mask.tif", monkeypatch, capsys)
    assert (ref == 1).any() and (ref == 2).any() and (ref == 0).any()
    masks = {}
    with RustacServer(list(items.values()), tmp_path / "server") as server:
        for collection in sorted({item["collection"] for item in items.values()}):
            out = tmp_path / "stac" / collection
            args = ["stac", "--url", server.url, "--collection", collection, "--bbox", ",".join(map(str, items["c1-l2a"]["bbox"])),
                    "--date", "2024-06", "--whole-tile", "--weights", inputs.threshold, "-q", "-o", out]  # fmt: skip
            result = run_main(args, monkeypatch, capsys)
            assert result.code == 0, result
            for mask in out.glob("*_mask.tif"):
                with rasterio.open(mask) as ds:
                    masks[mask.name] = ds.read(1)
    assert sorted(masks) == [f"S2_{t}_mask.tif" for t in ("c1-l2a", "es-l2a", "pc-l2a")]
    for name, mask in masks.items():
        assert mask.shape == ref.shape
        assert (mask != ref).mean() < 0.001, f"{name} reads other reflectance than the GeoTIFF"
