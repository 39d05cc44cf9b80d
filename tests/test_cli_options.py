"""Options of ``s2mask run``, ``stac`` and ``composite`` run end to end through the CLI on real pixels.

The pixels are the SEN12MS-CR patch from Nigeria (13 bands, 256 x 256 px at 10 m, cumulus
clouds and their shadows) and the shipped ``s2-9`` and ``rgbn`` models.  Each test checks
what the option changes, against a run without it, so that an ignored option fails.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from s2mask.cli import cli
from tests.conftest import need
from tests.reliability_helpers import run_main

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

NIGERIA = "sen12mscr_nigeria/ROIs1868_summer_s2_cloudy_19_p30.tif"


@pytest.fixture(scope="module")
def scene(shared_data: Path) -> Path:
    return need(shared_data / NIGERIA)


@pytest.fixture(scope="module")
def reference(scene: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The 10 m mask with every option at its default."""
    out = tmp_path_factory.mktemp("reference") / "mask.tif"
    invoke("run", scene, "-o", out)
    mask = read(out)[0]
    fractions = np.bincount(mask.ravel(), minlength=3)[:3] / mask.size
    assert fractions[1] > 0.01 and fractions[2] > 0.002  # cloud and shadow: a mask that can differ
    return mask


def invoke(*args: object, env: dict[str, str] | None = None, quiet: bool = True) -> str:
    result = CliRunner().invoke(cli, [*map(str, args), *(["-q"] if quiet else [])], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def read(path: Path) -> tuple[np.ndarray, rasterio.Affine]:
    with rasterio.open(path) as src:
        return src.read(1), src.transform


def write_like(scene: Path, path: Path, dn: np.ndarray) -> Path:
    with rasterio.open(scene) as src:
        profile = {**src.profile, "count": dn.shape[0], "dtype": dn.dtype}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn)
    return path


def scene_dn(scene: Path) -> np.ndarray:
    with rasterio.open(scene) as src:
        return src.read()


# ---------------------------------------------------------------- s2mask run


@pytest.mark.parametrize("resolution", [20, 60])
def test_run_resolution_sets_the_output_grid(
    scene: Path, reference: np.ndarray, tmp_path: Path, resolution: int
) -> None:
    invoke("run", scene, "-o", tmp_path / "m.tif", "--resolution", resolution)
    mask, transform = read(tmp_path / "m.tif")
    _, ref_transform = read_scene_grid(scene)
    size = -(-256 * 10 // resolution)  # the product's 2560 m, rounded up to whole pixels
    assert mask.shape == (size, size) and (transform.a, transform.e) == (resolution, -resolution)
    assert (transform.c, transform.f) == (ref_transform.c, ref_transform.f)  # same corner as the 10 m mask
    coarse = reference[:: resolution // 10, :: resolution // 10][:size, :size]
    # the same clouds, seen coarser (at 60 m the whole patch is 43 px: less context, softer edges)
    assert (mask == coarse).mean() > 0.75
    assert abs((mask == 1).mean() - (coarse == 1).mean()) < 0.15 and (coarse == 1).mean() > 0.1


def read_scene_grid(scene: Path) -> tuple[tuple[int, int], rasterio.Affine]:
    with rasterio.open(scene) as src:
        return src.shape, src.transform


def test_run_resampling_bilinear_changes_how_bands_reach_a_coarser_grid(scene: Path, tmp_path: Path) -> None:
    invoke("run", scene, "-o", tmp_path / "nearest.tif", "--resolution", 20)
    invoke("run", scene, "-o", tmp_path / "bilinear.tif", "--resolution", 20, "--resampling", "bilinear")
    nearest, bilinear = read(tmp_path / "nearest.tif")[0], read(tmp_path / "bilinear.tif")[0]
    assert nearest.shape == bilinear.shape
    differ = (nearest != bilinear).mean()
    assert 0 < differ < 0.05, differ  # a few edge pixels move; the clouds stay


def test_run_threads_sets_the_model_threads(scene: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from s2mask.model.runtime import OnnxModel, installed_runtimes

    before = torch.get_num_threads()
    try:  # torch: the process's intra-op threads
        for threads in (1, 3):
            invoke("run", scene, "-o", tmp_path / f"t{threads}.tif", "--threads", threads, "--runtime", "torch")
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(read(tmp_path / "t1.tif")[0], read(tmp_path / "t3.tif")[0])
    if not installed_runtimes():
        return
    seen: list[int] = []  # an ONNX runtime: its own thread pool, sized by --threads
    real_open = OnnxModel._open
    monkeypatch.setattr(OnnxModel, "_open", lambda self: (seen.append(self.threads), real_open(self))[1])
    for threads in (1, 3):
        invoke("run", scene, "-o", tmp_path / f"i{threads}.tif", "--threads", threads, "--precision", "int8")
    assert seen == [1, 3]
    np.testing.assert_array_equal(read(tmp_path / "i1.tif")[0], read(tmp_path / "i3.tif")[0])


def test_run_scale_and_offset_undo_another_quantification(
    scene: Path, reference: np.ndarray, tmp_path: Path
) -> None:
    dn = scene_dn(scene).astype(np.float64)
    halved = write_like(scene, tmp_path / "halved.tif", np.round(dn / 2).astype(np.uint16))
    shifted = write_like(scene, tmp_path / "shifted.tif", (dn + 1000).astype(np.uint16))
    invoke("run", halved, "-o", tmp_path / "halved_default.tif")
    invoke("run", halved, "-o", tmp_path / "halved_scaled.tif", "--scale", 2e-4)
    invoke("run", shifted, "-o", tmp_path / "shifted_offset.tif", "--offset", -0.1)
    assert (
        read(tmp_path / "halved_default.tif")[0] != reference
    ).mean() > 0.01  # darker pixels: another mask
    # rounding DN/2 aside (up to 0.5 DN: the int8 model moves a few more pixels than fp32 for it)
    assert (read(tmp_path / "halved_scaled.tif")[0] == reference).mean() > 0.995
    # (DN + 1000) / 1e4 - 0.1 is DN / 1e4 up to float32 rounding: the same mask, except where
    # the int8 model's activations sit on a quantization step (exact on the fp32 model)
    assert (read(tmp_path / "shifted_offset.tif")[0] == reference).mean() > 0.999
    invoke("run", scene, "-o", tmp_path / "exact.tif", "--precision", "fp32")
    invoke("run", shifted, "-o", tmp_path / "exact_offset.tif", "--offset", -0.1, "--precision", "fp32")
    np.testing.assert_array_equal(read(tmp_path / "exact_offset.tif")[0], read(tmp_path / "exact.tif")[0])


def test_readme_rgbn_line_runs_a_four_band_geotiff(scene: Path, tmp_path: Path) -> None:
    """``s2mask run scene.tif --bands B02,B03,B04,B08 --model rgbn`` (README)."""
    rgbn = write_like(scene, tmp_path / "scene.tif", scene_dn(scene)[[1, 2, 3, 7]])
    invoke("run", rgbn, "-o", tmp_path / "mask.tif", "--bands", "B02,B03,B04,B08", "--model", "rgbn")
    mask = read(tmp_path / "mask.tif")[0]
    assert mask.shape == (256, 256) and (mask == 1).mean() > 0.01  # the cumulus field is found
    # the band order is honoured: the same file named in another order is another input
    invoke("run", rgbn, "-o", tmp_path / "swapped.tif", "--bands", "B08,B04,B03,B02", "--model", "rgbn")
    assert (read(tmp_path / "swapped.tif")[0] != mask).mean() > 0.01
    result = CliRunner().invoke(cli, ["run", str(rgbn), "-o", str(tmp_path / "x.tif"), "--model", "rgbn"])
    assert result.exit_code == 1 and not (tmp_path / "x.tif").exists()  # 4 unnamed bands need --bands


# ---------------------------------------------------------------- a dask scheduler


def test_scheduler_option_and_environment_run_on_that_scheduler(
    scene: Path, reference: np.ndarray, tmp_path: Path
) -> None:
    distributed = pytest.importorskip("distributed")

    class Finished(distributed.diagnostics.plugin.SchedulerPlugin):
        """Counts the tasks the scheduler saw finish."""

        def __init__(self) -> None:
            self.count = 0

        def transition(self, key, start, finish, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
            self.count += finish == "memory"

    finished = Finished()
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        cluster.scheduler.add_plugin(finished)
        address = cluster.scheduler_address
        invoke("run", scene, "-o", tmp_path / "option.tif", "--scheduler", address)
        after_option = finished.count
        invoke("run", scene, "-o", tmp_path / "env.tif", env={"DASK_SCHEDULER_ADDRESS": address})
        after_env = finished.count
    assert 0 < after_option < after_env  # both runs sent their tasks to the scheduler
    np.testing.assert_array_equal(read(tmp_path / "option.tif")[0], reference)
    np.testing.assert_array_equal(read(tmp_path / "env.tif")[0], reference)


@pytest.mark.slow  # the client gives up after its 10 s connect timeout
def test_scheduler_that_does_not_answer_is_one_line(scene: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    # a port bound and never listening: connections are refused, and no other test can take it meanwhile
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{held.getsockname()[1]}"
        result = run_main(
            ["run", scene, "-o", tmp_path / "m.tif", "--scheduler", address], monkeypatch, capsys
        )
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: Cannot reach the dask scheduler at '{address}'")
    assert not (tmp_path / "m.tif").exists()


# ---------------------------------------------------------------- s2mask composite


@pytest.mark.parametrize("resolution", [20, 60])
def test_composite_resolution_sets_the_grid(scene: Path, tmp_path: Path, resolution: int) -> None:
    dn = scene_dn(scene)
    second = write_like(scene, tmp_path / "second.tif", np.flip(dn, axis=2).copy())  # other clouds, same grid
    invoke("composite", scene, second, "-o", tmp_path / "c.tif", "--resolution", resolution)
    size = -(-2560 // resolution)
    with rasterio.open(tmp_path / "c.tif") as src:
        assert src.res == (resolution, resolution) and src.shape == (size, size)


@pytest.mark.parametrize(
    ("value", "why"), [("1,2,3", "4 numbers"), ("5,0,1,9", "min > max"), ("a,b,c,d", "not numbers")]
)
def test_composite_grid_bbox_is_validated_even_under_python_O(
    scene: Path, tmp_path: Path, value: str, why: str
) -> None:
    """``--grid-bbox`` is checked by click, not by an ``assert`` that ``python -O`` strips."""
    proc = subprocess.run(
        [sys.executable, "-O", "-m", "s2mask.cli", "composite", str(scene), "-o", str(tmp_path / "c.tif"),
         "--grid-bbox", value],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, (why, proc.stderr)
    assert "Invalid value for '--grid-bbox'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "c.tif").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stac-bbox", "3,11,4,12", "--date", "2024-06"], "either PRODUCTS or --stac-bbox"),
        ([], "either PRODUCTS or --stac-bbox"),
        (["--stac-bbox", "3,11,4,12"], "--stac-bbox needs --date"),
    ],
)
def test_composite_usage_errors_exit_2(scene: Path, tmp_path: Path, args: list[str], message: str) -> None:
    products = [str(scene)] if args != ["--stac-bbox", "3,11,4,12"] and args else []
    result = CliRunner().invoke(cli, ["composite", *products, *args, "-o", str(tmp_path / "c.tif")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "c.tif").exists()


# ---------------------------------------------------------------- training commands of the top-level CLI


def test_make_synthetic_train_evaluate_and_export_model_through_s2mask(
    shared_data: Path, scene: Path, tmp_path: Path
) -> None:
    from s2mask.model import load_model

    invoke("make-synthetic", "--shared-data", shared_data, "--out", tmp_path / "syn",
           "--train", 2, "--validation", 1, "--test", 1, "--size", 32, quiet=False)  # fmt: skip
    invoke("train", "--data", tmp_path / "syn", "--out", tmp_path / "run", "--bands", "rgbn", "--epochs", 1,
           "--batch-size", 2, "--width", 4, "--crop", 32, "--max-steps", 1, "--log-every", 0, "--device", "cpu",
           "--threads", 1, "--export", tmp_path / "m.safetensors", quiet=False)  # fmt: skip
    trained = load_model(tmp_path / "m.safetensors", device="cpu")
    assert trained.card.bands == ("B02", "B03", "B04", "B08") and trained.card.width == 4

    invoke("evaluate", "--weights", tmp_path / "m.safetensors", "--data", tmp_path / "syn",
           "--json", tmp_path / "eval.json", "--device", "cpu", quiet=False)  # fmt: skip
    metrics = json.loads((tmp_path / "eval.json").read_text())
    confusion = np.array(metrics["confusion"])
    assert metrics["pixels"] == confusion.sum() > 0
    assert metrics["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum(), abs=1e-4)

    best = tmp_path / "run" / "checkpoints" / "best_model.pth"
    out = tmp_path / "again.safetensors"
    invoke("export-model", "--checkpoint", best, "--out", out, "--command", "by a test", quiet=False)
    again = load_model(tmp_path / "again.safetensors", device="cpu")
    assert again.card.command == "by a test"
    for (name, a), (_, b) in zip(
        trained.net.state_dict().items(), again.net.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name  # --export and export-model write the same best checkpoint

    rgbn = write_like(scene, tmp_path / "rgbn.tif", scene_dn(scene)[[1, 2, 3, 7]])
    invoke(
        "run",
        rgbn,
        "-o",
        tmp_path / "mask.tif",
        "--bands",
        "B02,B03,B04,B08",
        "--weights",
        tmp_path / "m.safetensors",
    )
    assert read(tmp_path / "mask.tif")[0].shape == (256, 256)


# ---------------------------------------------------------------- s2mask composite: method, buffer and grid


@pytest.fixture
def three(tmp_path: Path) -> list[str]:
    """Three 64 px scenes (B02 0.1, 0.2, 0.6) with masks: scene 1 cloudy in rows 0-19, the others clear."""
    from tests.test_cli_composite import _scene, _write

    rows = (slice(0, 20), slice(0, 0), slice(0, 0))
    pairs = [
        _write(tmp_path, i, *_scene(v, r)) for i, (v, r) in enumerate(zip((0.1, 0.2, 0.6), rows, strict=True))
    ]
    return [str(p) for p, _ in pairs] + [arg for _, m in pairs for arg in ("--mask", str(m))]


def _b02(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(src.descriptions.index("B02") + 1).astype(float) / 10000


def test_composite_method_and_buffer(three: list[str], tmp_path: Path) -> None:
    for name, extra in (("median", []), ("mean", ["--method", "mean"]), ("buffered", ["--buffer", "3"])):
        invoke("composite", *three, "-o", tmp_path / f"{name}.tif", *extra)
    median, mean, buffered = (_b02(tmp_path / f"{n}.tif") for n in ("median", "mean", "buffered"))
    np.testing.assert_allclose(median[10], 0.4, atol=1e-4)  # scene 1 cloudy: median of 0.2 and 0.6
    np.testing.assert_allclose(median[30], 0.2, atol=1e-4)  # all clear: median of 0.1, 0.2, 0.6
    np.testing.assert_allclose(mean[30], 0.3, atol=1e-4)
    np.testing.assert_allclose(median[21], 0.2, atol=1e-4)  # rows 20-22 are clear in scene 1 ...
    np.testing.assert_allclose(buffered[21], 0.4, atol=1e-4)  # ... but within 3 px of its cloud
    np.testing.assert_allclose(buffered[24], 0.2, atol=1e-4)


def test_composite_crs_grid_resolution_and_grid_bbox(three: list[str], tmp_path: Path) -> None:
    invoke("composite", *three, "-o", tmp_path / "utm.tif", "--grid-resolution", 20,
           "--grid-bbox", "600100,1299500,600500,1299900")  # fmt: skip
    with rasterio.open(tmp_path / "utm.tif") as src:
        assert src.crs.to_epsg() == 32631 and src.res == (20.0, 20.0)
        assert tuple(src.bounds) == (600100, 1299500, 600500, 1299900)
    invoke("composite", *three, "-o", tmp_path / "merc.tif", "--crs", "EPSG:3857", "--grid-resolution", 30)
    with rasterio.open(tmp_path / "merc.tif") as src:
        assert src.crs.to_epsg() == 3857 and src.res == (30.0, 30.0)
        assert 0.05 < np.nanmean(_b02(tmp_path / "merc.tif")[src.read(src.count) > 0]) < 0.6


def test_composite_best_pixel_takes_the_first_clear_observation(three: list[str], tmp_path: Path) -> None:
    invoke("composite", *three, "-o", tmp_path / "best.tif", "--method", "best-pixel")
    best = _b02(tmp_path / "best.tif")
    np.testing.assert_allclose(best[30], 0.1, atol=1e-4)  # all clear: the first scene wins the tie
    np.testing.assert_allclose(best[10], 0.2, atol=1e-4)  # scene 1 cloudy there: the next clear one
    with rasterio.open(tmp_path / "best.tif") as src:
        assert any("source" in (d or "").lower() for d in src.descriptions)  # which scene each pixel came from


@pytest.mark.slow
def test_run_workers_gives_the_default_mask(scene: Path, reference: np.ndarray, tmp_path: Path) -> None:
    invoke("run", scene, "-o", tmp_path / "w.tif", "--workers", 1, "--threads", 1)
    assert (read(tmp_path / "w.tif")[0] == reference).mean() > 0.999
