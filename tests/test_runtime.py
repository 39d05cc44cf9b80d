"""Runtimes: the int8 model on OpenVINO / ONNX Runtime beside torch, chosen once by load_model."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from s2mask.errors import DeviceError, InvalidParameterError, WeightsError
from s2mask.model import load_model, shipped_models
from s2mask.model.runtime import (
    CARD_KEY,
    SOURCE_KEY,
    OnnxModel,
    compiled_cache_dir,
    file_sha256,
    installed_runtimes,
    int8_path,
    plan_inference,
    read_onnx_metadata,
)

RUNTIMES = installed_runtimes()
needs_runtime = pytest.mark.skipif(not RUNTIMES, reason="neither openvino nor onnxruntime is installed")
ESA13 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
INT8 = Path("m.int8.onnx")


def plan(**kw):  # noqa: ANN003, ANN201
    base = {"installed": ("openvino", "onnxruntime"), "fast_int8": True, "gpu": False, "int8_file": INT8}
    return plan_inference(**{**base, **kw})


@pytest.mark.parametrize(
    ("kw", "runtime", "precision"),
    [
        ({}, "openvino", "int8"),  # CPU with VNNI, both runtimes installed: the fastest
        ({"installed": ("onnxruntime",)}, "onnxruntime", "int8"),
        ({"installed": ()}, "torch", "auto"),  # nothing to run int8 on
        ({"fast_int8": False}, "torch", "auto"),  # no int8 units: masks would move for no speed
        ({"gpu": True}, "torch", "auto"),  # a GPU may be there: torch decides the device
        ({"device": "cuda"}, "torch", "auto"),
        ({"int8_file": None}, "torch", "auto"),  # user weights without an int8 file
        ({"precision": "fp32"}, "torch", "fp32"),
        ({"precision": "bf16"}, "torch", "bf16"),
        ({"runtime": "torch"}, "torch", "auto"),
        ({"runtime": "onnxruntime"}, "onnxruntime", "int8"),
        ({"precision": "int8", "fast_int8": False}, "openvino", "int8"),  # asked for: runs anywhere
        ({"precision": "INT8", "runtime": "OpenVINO"}, "openvino", "int8"),
    ],
)
def test_plan_inference_choices(kw: dict, runtime: str, precision: str) -> None:
    p = plan(**kw)
    assert (p.runtime, p.precision) == (runtime, precision)
    assert p.reason


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"precision": "int8", "runtime": "torch"}, InvalidParameterError, "ONNX runtime"),
        ({"precision": "fp32", "runtime": "openvino"}, InvalidParameterError, "runs on torch"),
        ({"precision": "int8", "device": "cuda"}, DeviceError, "CPU only"),
        ({"precision": "int8", "int8_file": None}, WeightsError, "training quantize"),
        ({"precision": "int8", "int8_current": False}, WeightsError, "other weights"),
        (
            {"runtime": "openvino", "installed": ("onnxruntime",)},
            InvalidParameterError,
            "openvino is not installed",
        ),
        ({"precision": "int8", "installed": ()}, InvalidParameterError, "none is installed.*pip install"),
        ({"runtime": "tensorrt"}, InvalidParameterError, "Unknown runtime"),
        ({"precision": "fp8"}, InvalidParameterError, "Unknown precision"),
    ],
)
def test_plan_inference_errors_name_the_fix(kw: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        plan(**kw)


def test_a_stale_int8_file_is_ignored_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="other weights"):
        p = plan(int8_current=False)
    assert p.runtime == "torch"


@needs_runtime
@pytest.mark.parametrize("name", ["s2-9", "rgbn"])
def test_shipped_int8_models_were_made_from_the_shipped_weights(name: str) -> None:
    weights = shipped_models()[name]
    meta = read_onnx_metadata(int8_path(weights))
    assert meta[SOURCE_KEY] == file_sha256(weights), f"rebuild: python -m training quantize --weights {name}"
    card = json.loads(meta[CARD_KEY])
    torch_card = load_model(name, runtime="torch").card.to_dict()
    assert card == json.loads(json.dumps(torch_card))


def _real_crop(shared_data: Path, bands: tuple[str, ...]) -> np.ndarray:
    from training.real_scenes import approximate_bands

    with np.load(shared_data / "s2cloudless_testscene" / "input_arrays.npz") as d:
        img = d["s2_im"][0, 300:556, :256]
    x, _ = approximate_bands({b: np.ascontiguousarray(img[..., i]) for i, b in enumerate(ESA13)}, bands)
    return x


@needs_runtime
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", ["s2-9", "rgbn"])
def test_int8_masks_agree_with_fp32_on_a_real_scene(shared_data: Path, name: str, runtime: str) -> None:
    from training.real_scenes import predict_array

    exact = load_model(name, device="cpu", precision="fp32")
    fast = load_model(name, runtime=runtime, threads=2)
    assert isinstance(fast, OnnxModel) and (fast.runtime, fast.precision) == (runtime, "int8")
    x = _real_crop(shared_data, exact.bands)
    p32, p8 = exact.predict_proba(x[None])[0], fast.predict_proba(x[None])[0]
    assert p8.shape == p32.shape and p8.dtype == np.float32
    np.testing.assert_allclose(p8.sum(axis=0), 1.0, atol=1e-4)
    assert np.abs(p32 - p8).mean() < 0.02
    a, b = predict_array(exact, x), predict_array(fast, x)
    assert (a == b).mean() > 0.98
    assert len(np.unique(a)) >= 2  # cloud and clear in the crop: agreement is not trivial


@needs_runtime
def test_odd_sizes_nodata_and_pickling(shared_data: Path) -> None:
    model = load_model("rgbn", precision="int8", threads=1)
    x = _real_crop(shared_data, model.bands)[:, :77, :101].copy()
    x[:, :20, :30] = np.nan  # a nodata corner
    p = model.predict_proba(x[None])
    assert p.shape == (1, 3, 77, 101) and np.isfinite(p).all()
    clone = pickle.loads(pickle.dumps(model))  # what a dask worker receives
    np.testing.assert_array_equal(clone.predict_proba(x[None]), p)
    exact = load_model("rgbn", precision="fp32").predict_proba(x[None])
    assert (exact.argmax(1) == p.argmax(1)).mean() > 0.97


@needs_runtime
def test_stale_int8_file_beside_user_weights(tmp_path: Path) -> None:
    import torch

    from s2mask.model.weights import load_torch_model, save_model

    net = load_torch_model(shipped_models()["rgbn"]).net
    with torch.no_grad():
        net.head.bias += 0.5  # other weights
    weights = save_model(net, load_model("rgbn", runtime="torch").card, tmp_path / "mine.safetensors")
    shutil.copy(int8_path(shipped_models()["rgbn"]), int8_path(weights))
    with pytest.warns(UserWarning, match="other weights"):
        assert load_model(weights, device="cpu").runtime == "torch"
    with pytest.raises(WeightsError, match="training quantize"):
        load_model(weights, precision="int8")


def test_no_int8_file_means_torch_and_int8_asked_for_names_the_command(tmp_path: Path) -> None:
    weights = tmp_path / "rgbn.safetensors"
    shutil.copy(shipped_models()["rgbn"], weights)
    assert load_model(weights, device="cpu").runtime == "torch"
    with pytest.raises(WeightsError, match="python -m training quantize"):
        load_model(weights, precision="int8")


@needs_runtime
def test_cli_runtimes_agree_and_int8_run_never_imports_torch(shared_data: Path, tmp_path: Path) -> None:
    import rasterio
    import torch

    from s2mask.model.device import resolve_precision

    scene = shared_data / "sen12mscr_nigeria" / "ROIs1868_summer_s2_cloudy_19_p30.tif"
    bands = ",".join(ESA13)
    masks = {}
    for runtime in ("torch", *RUNTIMES):
        out = tmp_path / f"{runtime}.tif"
        code = (
            "import sys\nfrom s2mask.cli import main\n"
            f"sys.argv = ['s2mask', 'run', {str(scene)!r}, '-o', {str(out)!r}, '--bands', {bands!r}, "
            f"'--runtime', {runtime!r}, '--quiet', '--no-quicklook']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
        )
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip().endswith("NO-TORCH" if runtime != "torch" else "TORCH"), res.stdout
        with rasterio.open(out) as src:
            masks[runtime] = src.read(1)
        summary = json.loads(out.with_suffix(".json").read_text())
        assert summary["model"]["runtime"] == runtime
        assert summary["model"]["runtime_reason"] == (
            "torch asked for" if runtime == "torch" else f"{runtime} asked for"
        )
        item = json.loads(out.with_suffix(".stac.json").read_text())
        assert item["properties"]["s2mask:model_runtime"] == runtime
        torch_precision = resolve_precision("auto", torch.device("cpu"))  # bf16 on CPUs with bf16 units
        assert summary["model"]["precision"] == ("int8" if runtime != "torch" else torch_precision)
    for runtime in RUNTIMES:
        assert (masks[runtime] == masks["torch"]).mean() > 0.98
    assert (masks["torch"] == 1).mean() > 0.02  # a cloudy scene: agreement is not trivial


@pytest.mark.slow
@needs_runtime
def test_quantize_command_rebuilds_the_shipped_int8_model(shared_data: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from training.cli import train_cli

    out = tmp_path / "rgbn.int8.onnx"
    res = CliRunner().invoke(
        train_cli, ["quantize", "--weights", "rgbn", "--shared-data", str(shared_data), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    meta = read_onnx_metadata(out)
    assert meta[SOURCE_KEY] == file_sha256(shipped_models()["rgbn"])
    calibration = json.loads(meta["s2mask_calibration"])
    assert calibration["tiles"] >= 10 and not any("ukis" in s or "accra" in s for s in calibration["scenes"])
    rebuilt, shipped = OnnxModel(out, threads=1), load_model("rgbn", precision="int8", threads=1)
    x = _real_crop(shared_data, shipped.bands)
    assert (
        rebuilt.predict_proba(x[None]).argmax(1) == shipped.predict_proba(x[None]).argmax(1)
    ).mean() > 0.999
    assert not list(Path.cwd().glob("sym_shape_infer_temp*"))  # no scratch left where it ran


needs_openvino = pytest.mark.skipif("openvino" not in RUNTIMES, reason="openvino is not installed")


@needs_openvino
def test_openvino_reuses_its_compiled_model_and_predicts_the_same(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    shipped = int8_path(shipped_models()["s2-9"])
    x = np.random.default_rng(3).random((2, 9, 64, 64), dtype=np.float32) * 0.6
    monkeypatch.setenv("S2MASK_CACHE_DIR", "")  # caching off
    assert compiled_cache_dir() is None
    plain = OnnxModel(shipped, runtime="openvino", threads=1).predict_proba(x)
    monkeypatch.setenv("S2MASK_CACHE_DIR", str(tmp_path))
    first = OnnxModel(shipped, runtime="openvino", threads=1)
    blobs = sorted((tmp_path / "openvino").glob("*.blob"))
    assert len(blobs) == 1  # compiled once, kept
    stamp = blobs[0].stat().st_mtime_ns
    second = OnnxModel(shipped, runtime="openvino", threads=1)
    assert [b.stat().st_mtime_ns for b in sorted((tmp_path / "openvino").glob("*.blob"))] == [stamp]  # reused
    np.testing.assert_array_equal(first.predict_proba(x), plain)
    np.testing.assert_array_equal(second.predict_proba(x), plain)


@needs_openvino
def test_a_cache_folder_that_cannot_be_made_means_no_cache_not_an_error(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("S2MASK_CACHE_DIR", str(blocker))
    assert compiled_cache_dir() is None
    model = OnnxModel(int8_path(shipped_models()["s2-9"]), runtime="openvino", threads=1)
    assert model.predict_proba(np.full((1, 9, 32, 32), 0.2, np.float32)).shape == (1, 3, 32, 32)
    monkeypatch.delenv("S2MASK_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compiled_cache_dir() == tmp_path / "xdg" / "s2mask" / "openvino"


@needs_openvino
def test_a_damaged_cache_entry_is_rebuilt_not_trusted(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    shipped = int8_path(shipped_models()["s2-9"])
    x = np.random.default_rng(4).random((1, 9, 64, 64), dtype=np.float32) * 0.6
    monkeypatch.setenv("S2MASK_CACHE_DIR", str(tmp_path))
    expected = OnnxModel(shipped, runtime="openvino", threads=1).predict_proba(x)
    (blob,) = (tmp_path / "openvino").glob("*.blob")
    size = blob.stat().st_size
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[: size // 3])  # a run killed while writing it, or a bad disk
    got = OnnxModel(shipped, runtime="openvino", threads=1).predict_proba(x)
    np.testing.assert_array_equal(got, expected)
    assert blob.stat().st_size > 0.9 * size  # compiled again and kept whole (sizes vary a little between compiles)
