"""The ``s2mask`` command line: exit codes, one-line errors, ``--debug``, batches that go on.

Exit codes: 0 success, 1 a user error (an ``S2MaskError``: one line on stderr saying
what was found, what was expected and the fix), 2 a usage error (click), 130 Ctrl-C.
A few cases run the installed entry point in a subprocess, as a user would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from s2mask import __version__
from s2mask.errors import ProductNotFoundError
from tests.reliability_helpers import Inputs, cog_is_valid, files_in, make_inputs, run_main

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("inputs"))


def _subprocess(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s2mask.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


# --------------------------------------------------------------------------- as a user sees it


def test_user_error_in_a_real_process_is_one_line_and_exit_1(inputs: Inputs, tmp_path: Path) -> None:
    proc = _subprocess("run", "nowhere.SAFE", "-o", "out/m.tif", "--weights", inputs.weights, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "Error: The product nowhere.SAFE does not exist; check the path."
    ]
    assert proc.stdout == ""
    assert files_in(tmp_path / "out") == []


def test_debug_shows_the_traceback(inputs: Inputs, tmp_path: Path) -> None:
    proc = _subprocess(
        "--debug", "run", "nowhere.SAFE", "-o", "m.tif", "--weights", inputs.weights, cwd=tmp_path
    )
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ProductNotFoundError: The product nowhere.SAFE does not exist" in proc.stderr


def test_usage_error_in_a_real_process_exits_2(tmp_path: Path) -> None:
    proc = _subprocess("run", "--resolution", "15", "x.SAFE", "-o", "m.tif", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Invalid value for '--resolution': 15 m is not a Sentinel-2 grid" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_and_version_do_not_import_torch() -> None:
    """``--help`` of the group and of every command (the lazy ones too), and ``--version``, stay light."""
    code = """
import contextlib, io, sys
from s2mask.cli import cli
for args in (["--version"], ["--help"], *[[name, "--help"] for name in cli.list_commands(None)]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main(args, standalone_mode=False)
        except SystemExit:
            pass
    assert "Usage:" in out.getvalue() or "version" in out.getvalue(), (args, out.getvalue())
    print(" ".join(args), "torch" in sys.modules, "rasterio" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert len(lines) >= 8 and any(line.startswith("run --help") for line in lines), out
    assert all(line.endswith("False False") for line in lines), out


def test_version_and_help(monkeypatch, capsys) -> None:  # noqa: ANN001
    result = run_main(["--version"], monkeypatch, capsys)
    assert result.code == 0 and __version__ in result.out
    result = run_main(["run", "--help"], monkeypatch, capsys)
    assert result.code == 0
    for option in ("--overwrite", "--resume", "--debug", "--weights", "--device"):
        assert option in result.out


# --------------------------------------------------------------------------- in process: exit codes and --debug


@pytest.mark.parametrize("where", ["group", "run"])
def test_debug_in_process_raises_the_error_itself(
    where: str, inputs: Inputs, tmp_path: Path, monkeypatch
) -> None:  # noqa: ANN001
    from s2mask import cli

    args = ["run", "nowhere.SAFE", "-o", str(tmp_path / "m.tif"), "--weights", str(inputs.weights)]
    args = ["--debug", *args] if where == "group" else [*args, "--debug"]
    monkeypatch.setattr(sys, "argv", ["s2mask", *args])
    monkeypatch.setitem(cli.DEBUG, "on", False)
    with pytest.raises(ProductNotFoundError, match="does not exist"):
        cli.main()


def test_success_prints_the_mask_and_its_class_fractions(
    inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:  # noqa: ANN001
    out = tmp_path / "m.tif"
    result = run_main(
        ["run", inputs.geotiff, "-o", out, "--weights", inputs.threshold, "-q"], monkeypatch, capsys
    )
    assert result.code == 0, result
    line = result.out.strip()
    assert line.startswith(str(out)) and "clear " in line and "cloud " in line and "nodata 0.0%" in line
    assert result.err == ""


def test_output_exists_is_refused_then_overwritten(
    inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:  # noqa: ANN001
    out = tmp_path / "m.tif"
    args = ["run", inputs.geotiff, "-o", out, "--weights", inputs.weights, "-q", "--no-quicklook"]
    assert run_main(args, monkeypatch, capsys).code == 0
    before = out.read_bytes()
    result = run_main(args, monkeypatch, capsys)
    assert result.code == 1 and f"Error: Output {out} already exists" in result.err
    assert "pass --overwrite" in result.err.lower()
    assert out.read_bytes() == before
    assert run_main([*args, "--overwrite"], monkeypatch, capsys).code == 0
    assert cog_is_valid(out) and files_in(tmp_path) == ["m.json", "m.stac.json", "m.tif", "m.tif.aux.xml"]


# --------------------------------------------------------------------------- batches


def test_batch_goes_on_past_failures_reports_them_at_the_end_and_exits_1(
    inputs: Inputs,
    tmp_path: Path,
    monkeypatch,
    capsys,  # noqa: ANN001
) -> None:
    broken = tmp_path / "in" / "S2A_MSIL2A_broken.SAFE"
    broken.mkdir(parents=True)
    missing = tmp_path / "in" / "S2A_MSIL2A_missing.SAFE"
    out = tmp_path / "masks"
    args = ["run", broken, inputs.l2a, missing, inputs.geotiff, "-o", out, "--weights", inputs.weights, "-q"]
    result = run_main(args, monkeypatch, capsys)
    assert result.code == 1
    err = result.err.strip().splitlines()
    assert err[-3] == "2 of 4 products failed:"
    assert err[-2].startswith(f"  {broken}: ") and "holds no MTD_MSIL1C.xml" in err[-2]
    assert err[-1] == f"  {missing}: The product {missing} does not exist; check the path."
    assert "Traceback" not in result.err
    assert files_in(out) == [
        "L2A_N0509_mask.json", "L2A_N0509_mask.png", "L2A_N0509_mask.stac.json", "L2A_N0509_mask.tif",
        "L2A_N0509_mask.tif.aux.xml", "index.geojson",
        "scene_mask.json", "scene_mask.png", "scene_mask.stac.json", "scene_mask.tif", "scene_mask.tif.aux.xml",
    ]  # fmt: skip
    assert cog_is_valid(out / "L2A_N0509_mask.tif") and cog_is_valid(out / "scene_mask.tif")


def test_an_unexpected_exception_fails_one_product_not_the_batch(
    inputs: Inputs,
    tmp_path: Path,
    monkeypatch,
    capsys,  # noqa: ANN001
) -> None:
    import s2mask.run

    real = s2mask.run.run_product

    def buggy(product, out, **kw):  # noqa: ANN001, ANN202
        if Path(product) == inputs.l2a:
            raise RuntimeError("simulated bug")
        return real(product, out, **kw)

    monkeypatch.setattr(s2mask.run, "run_product", buggy)
    out = tmp_path / "masks"
    args = ["run", inputs.l2a, inputs.geotiff, "-o", out, "--weights", inputs.weights, "-q", "--no-quicklook"]
    result = run_main(args, monkeypatch, capsys)
    assert result.code == 1
    assert "unexpected RuntimeError: simulated bug" in result.err and "--debug" in result.err
    assert "Traceback" not in result.err
    assert files_in(out) == [
        "index.geojson", "scene_mask.json", "scene_mask.stac.json", "scene_mask.tif", "scene_mask.tif.aux.xml"
    ]  # fmt: skip

    result = run_main(["--debug", *args, "--overwrite"], monkeypatch, capsys)
    assert result.code == 1
    assert "Traceback (most recent call last)" in result.err and "RuntimeError: simulated bug" in result.err


def test_same_output_name_twice_in_a_batch(inputs: Inputs, tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "masks"
    args = [
        "run",
        inputs.geotiff,
        inputs.geotiff,
        "-o",
        out,
        "--weights",
        inputs.weights,
        "-q",
        "--no-quicklook",
    ]
    result = run_main(args, monkeypatch, capsys)
    assert result.code == 1
    assert "1 of 2 products failed" in result.err and "expected one product per output name" in result.err
    assert files_in(out) == [
        "index.geojson", "scene_mask.json", "scene_mask.stac.json", "scene_mask.tif", "scene_mask.tif.aux.xml"
    ]  # fmt: skip


def test_batch_output_folder_that_is_a_file(inputs: Inputs, tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    (tmp_path / "masks").write_text("x")
    args = ["run", inputs.l2a, inputs.geotiff, "-o", tmp_path / "masks", "--weights", inputs.weights, "-q"]
    result = run_main(args, monkeypatch, capsys)
    assert (
        result.code == 1 and f"Output folder {tmp_path / 'masks'} is a file; expected a folder" in result.err
    )
    assert (tmp_path / "masks").read_text() == "x"


# --------------------------------------------------------------------------- s2mask stac: bad parameters and broken APIs


def _stac(inputs: Inputs, out: Path, *extra: object) -> list[object]:
    return ["stac", "-o", out, "--weights", inputs.weights, "-q", "--collection", "sentinel-2-l2a", *extra]


@pytest.mark.parametrize(
    ("bbox", "date", "part"),
    [
        ("11.2,46.0,11.0,46.1", "2024-06", "west 11.2 is greater than east 11"),
        ("11,46,11,46.1", "2024-06", "zero area"),
        ("11,95,12,96", "2024-06", "outside -90..90"),
        ("11,46,11.2,46.1", "2024-06-30/2024-06-01", "before it starts"),
        ("11,46,11.2,46.1", "2024-13", "not a valid date"),
    ],
    ids=["bbox-swapped", "bbox-zero-area", "bbox-out-of-range", "dates-reversed", "date-invalid"],
)
def test_stac_bad_bbox_or_dates_are_usage_errors(
    bbox: str,
    date: str,
    part: str,
    inputs: Inputs,
    tmp_path: Path,
    monkeypatch,
    capsys,  # noqa: ANN001
) -> None:
    out = tmp_path / "masks"
    result = run_main(
        _stac(inputs, out, "--url", "http://127.0.0.1:9", "--bbox", bbox, "--date", date), monkeypatch, capsys
    )
    assert result.code == 2, result
    assert part in result.err and "Traceback" not in result.err
    assert files_in(out) == []


@pytest.mark.parametrize(
    ("mode", "extra", "part"),
    [
        ("status", [], "HTTP 500"),
        ("timeout", ["--timeout", "0.3"], "timed out"),
        ("invalid-json", [], "JSONDecodeError"),
    ],
    ids=["answers-500", "times-out", "invalid-json"],
)
def test_stac_broken_api_is_one_line_and_exit_1(
    mode: str,
    extra: list[str],
    part: str,
    inputs: Inputs,
    tmp_path: Path,
    monkeypatch,
    capsys,  # noqa: ANN001
) -> None:
    from tests.stac_server import FaultServer

    out = tmp_path / "masks"
    with FaultServer(mode, delay=2.0) as server:
        args = _stac(inputs, out, "--url", server.url, "--bbox", "15,45.8,15.1,45.9", "--date", "2024-06",
                     "--retries", "0", *extra)  # fmt: skip
        result = run_main(args, monkeypatch, capsys)
    assert result.code == 1, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"Error: Searching collection 'sentinel-2-l2a' at {server.url}"
    )
    assert part in lines[0] and "check the URL and your network" in lines[0]
    assert files_in(out) == []


def test_stac_search_finding_nothing_is_exit_1(inputs: Inputs, tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: ANN001
    import pystac_client

    class Client:
        def conforms_to(self, cls: object) -> bool:
            return False

        def search(self, **kw: object) -> object:
            return type("Search", (), {"items": lambda self: iter(())})()

    monkeypatch.setattr(pystac_client.Client, "open", lambda *a, **k: Client())
    out = tmp_path / "masks"
    args = _stac(
        inputs, out, "--url", "http://127.0.0.1:9", "--bbox", "15,45.8,15.1,45.9", "--date", "2024-06"
    )
    result = run_main(args, monkeypatch, capsys)
    assert result.code == 1
    assert (
        result.err.startswith("Error: No items in collection 'sentinel-2-l2a'")
        and "widen the bbox" in result.err
    )
    assert files_in(out) == []


def test_stac_batch_goes_on_past_a_failed_item_and_honours_allowed_schemes(
    inputs: Inputs,
    shared_data: Path,
    tmp_path: Path,
    monkeypatch,
    capsys,  # noqa: ANN001
) -> None:
    from tests.stac_server import RustacServer, rustac_command
    from tests.test_stac_run import make_item

    if rustac_command() is None:
        pytest.skip("rustac is not installed, so no local STAC API can run")
    good, _ = make_item(
        shared_data, tmp_path / "cogs", "c1-l2a", "S2_good", seed=1, when="2024-06-10T10:00:00Z"
    )
    bad, _ = make_item(
        shared_data, tmp_path / "cogs", "c1-l2a", "S2_bad", seed=2, when="2024-06-12T10:00:00Z"
    )
    (tmp_path / "cogs" / "S2_bad" / "B03.tif").unlink()  # the provider lost one band file
    bbox = ",".join(map(str, good["bbox"]))
    with RustacServer([good, bad], tmp_path / "server") as server:
        base = ["stac", "--url", server.url, "--collection", "sentinel-2-c1-l2a", "--bbox", bbox, "--date", "2024-06",
                "--whole-tile", "--weights", inputs.weights, "-q"]  # fmt: skip
        out = tmp_path / "masks"
        result = run_main([*base, "-o", out], monkeypatch, capsys)
        assert result.code == 1
        assert "1 items failed:" in result.err and "S2_bad:" in result.err and "B03.tif" in result.err
        assert cog_is_valid(out / "S2_good_mask.tif") and not list(out.glob("S2_bad*"))
        assert not [f for f in files_in(out) if f.startswith(".")]

        # file:// hrefs are refused when the user allows only https
        strict = tmp_path / "strict"
        result = run_main([*base, "-o", strict, "--allow-scheme", "https"], monkeypatch, capsys)
        assert result.code == 1
        assert "2 items failed:" in result.err and "scheme 'file'" in result.err
        assert not list(strict.glob("*_mask.tif"))


@pytest.mark.parametrize("case", ["missing-product", "output-exists"])
def test_single_product_errors_come_before_the_model_is_loaded(
    case: str,
    inputs: Inputs,
    tmp_path: Path,
    monkeypatch,
    capsys,  # noqa: ANN001
) -> None:
    from s2mask import cli

    monkeypatch.setattr(cli, "_load_model", lambda *a, **k: pytest.fail("the model was loaded first"))
    out = tmp_path / "m.tif"
    product = tmp_path / "missing.SAFE" if case == "missing-product" else inputs.geotiff
    if case == "output-exists":
        out.write_bytes(b"old")
    result = run_main(["run", product, "-o", out, "--weights", inputs.weights], monkeypatch, capsys)
    assert result.code == 1
    assert ("does not exist" if case == "missing-product" else "already exists") in result.err


def test_a_missing_optional_dependency_names_the_extra_to_install(monkeypatch, capsys) -> None:  # noqa: ANN001
    """Training-only dependencies live in the `train` extra; a command that needs one says how to get it."""
    import click

    from s2mask import cli

    @click.command()
    def needs_plots() -> None:
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    monkeypatch.setattr(cli.cli, "get_command", lambda ctx, name: needs_plots)
    result = run_main(["plots"], monkeypatch, capsys)
    assert result.code == 1
    assert result.err.strip() == (
        "Error: this command needs matplotlib, which is not installed; expected the 'train' extra. "
        "Install it with: pip install 's2mask[train]'"
    )


def test_the_core_package_does_not_need_the_training_extras() -> None:
    """`s2mask run`'s modules import without tacoreader, duckdb and matplotlib."""
    code = (
        "import sys; sys.modules.update(tacoreader=None, duckdb=None, matplotlib=None); "
        "import s2mask.run, s2mask.stac, s2mask.composite, s2mask.quicklook, s2mask.cli, s2mask.engine, s2mask.model"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
