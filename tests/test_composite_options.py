"""`s2mask composite` honours the input and model options every command shares.

``--bands``/``--scale``/``--offset``/``--resampling`` describe the inputs as in ``s2mask run``
(output bands are ``--output-bands``); ``--window``/``--overlap``/``--batch-size`` reach the model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from click.testing import CliRunner

from s2mask.cli import cli
from s2mask.io.cog import write_mask
from tests.conftest import need

BOADELLA = ("4f413a73a84ed95f1e2665b133ca7f78abeb4786", "817e7b85c0a299c0ef1cc96c702f1bd72961160c")
ORDER = "B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,B11,B12"  # eotdl's evalscript order


def _without_descriptions(src: Path, dst: Path) -> Path:
    """The real 12-band scene as users get it: no band descriptions."""
    with rasterio.open(src) as ds:
        profile, data = ds.profile, ds.read()
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    with rasterio.open(dst) as ds:
        assert ds.descriptions == (None,) * 12
    return dst


def _all_clear_mask(product: Path, out: Path) -> Path:
    grid = rioxarray.open_rasterio(product).isel(band=0, drop=True)
    return write_mask(xr.zeros_like(grid, dtype=np.uint8), out)


@pytest.fixture
def boadella(shared_data: Path, tmp_path: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for blob in BOADELLA:
        src = need(shared_data / "eotdl_boadella" / f"boadella_{blob}.tif")
        product = _without_descriptions(src, tmp_path / f"{blob[:6]}.tif")
        pairs.append((product, _all_clear_mask(product, tmp_path / f"{blob[:6]}_mask.tif")))
    return pairs


def _composite(pairs: list[tuple[Path, Path]], out: Path, *extra: str):  # noqa: ANN202
    args = ["composite", *[str(p) for p, _ in pairs], "-o", str(out), "-q", "--output-bands", "B04,B03,B02"]
    for _, mask in pairs:
        args += ["--mask", str(mask)]
    return CliRunner().invoke(cli, [*args, *extra])


def test_input_bands_and_scale_of_undescribed_geotiffs(
    boadella: list[tuple[Path, Path]], tmp_path: Path
) -> None:
    refused = _composite(boadella, tmp_path / "refused.tif")
    assert refused.exit_code == 1 and "--bands" in str(refused.exception)

    assert _composite(boadella, tmp_path / "a.tif", "--bands", ORDER).exit_code == 0
    doubled = _composite(boadella, tmp_path / "b.tif", "--bands", ORDER, "--scale", "2e-4")
    assert doubled.exit_code == 0, doubled.output
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert a.descriptions[:3] == ("B04", "B03", "B02")
        one, two = a.read(1).astype(int), b.read(1).astype(int)
    with rasterio.open(boadella[0][0]) as src:
        dn = src.read(4).astype(int)  # B04 of the first scene, in file order
    valid = (one > 0) & (dn > 0)
    assert valid.mean() > 0.9
    assert np.abs(two[valid] - np.minimum(2 * one[valid], 10000)).max() <= 1  # the median of two scenes
    assert one.max() > 100  # real reflectance, not zeros


def test_model_options_reach_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import s2mask.engine
    from s2mask.bands import BAND_NAMES
    from s2mask.model import save_model
    from s2mask.testing.models import tiny_unet
    from s2mask.testing.products import write_geotiff
    from tests.test_cli_composite import T, _scene

    tiny = tiny_unet(width=4, window_size=64)
    weights = save_model(tiny.net, tiny.card, tmp_path / "tiny.safetensors")
    products = [
        write_geotiff(tmp_path / f"s{i}.tif", _scene(v, slice(0, 10))[0], BAND_NAMES, "EPSG:32631", T)
        for i, v in enumerate((0.1, 0.2))
    ]
    seen: list[dict] = []
    real = s2mask.engine.predict

    def spy(cube, model, **kwargs):  # noqa: ANN001, ANN003, ANN202
        seen.append(kwargs)
        return real(cube, model, **kwargs)

    monkeypatch.setattr(s2mask.engine, "predict", spy)
    args = ["composite", *map(str, products), "-o", str(tmp_path / "c.tif"), "-q", "--weights", str(weights)]
    result = CliRunner().invoke(cli, [*args, "--window", "48", "--overlap", "8", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert [(k["window"], k["overlap"], k["batch_size"]) for k in seen] == [(48, 8, 3)] * 2


def test_every_command_creates_a_missing_output_folder(tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    """One rule: run created a missing -o folder while composite refused it."""
    from tests.reliability_helpers import make_inputs, run_main
    from tests.test_cli_composite import _scene, _write

    pairs = [_write(tmp_path, i, *_scene(v, slice(0, 10))) for i, v in enumerate((0.1, 0.2))]
    out = tmp_path / "new" / "deeper" / "c.tif"
    args = ["composite", *[str(p) for p, _ in pairs], "-o", str(out), "-q"]
    for _, mask in pairs:
        args += ["--mask", str(mask)]
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert out.is_file() and out.with_suffix(".png").is_file()

    inputs = make_inputs(tmp_path / "inputs")
    run_out = tmp_path / "other" / "m.tif"
    args = ["run", inputs.geotiff, "-o", run_out, "--weights", inputs.threshold, "-q", "--no-quicklook"]
    assert run_main(args, monkeypatch, capsys).code == 0 and run_out.is_file()


def test_a_composite_whose_quicklook_fails_leaves_no_composite(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """One transaction: the COG was published before the quick-look was even tried."""
    import s2mask.quicklook
    from s2mask.errors import OutputError
    from tests.test_cli_composite import _scene, _write

    pairs = [_write(tmp_path, i, *_scene(v, slice(0, 10))) for i, v in enumerate((0.1, 0.2))]
    before = sorted(p.name for p in tmp_path.iterdir())

    def full_disk(rgb, mask, path, **kwargs):  # noqa: ANN001, ANN003, ANN202
        raise OutputError(f"Writing {path} failed: the disk is full.")

    monkeypatch.setattr(s2mask.quicklook, "write_quicklook", full_disk)
    args = ["composite", *[str(p) for p, _ in pairs], "-o", str(tmp_path / "c.tif"), "-q"]
    for _, mask in pairs:
        args += ["--mask", str(mask)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and isinstance(result.exception, OutputError)
    assert str(result.exception) == f"Writing {tmp_path / 'c.png'} failed: the disk is full."
    assert sorted(p.name for p in tmp_path.iterdir()) == before
