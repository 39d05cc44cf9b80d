"""The commands share their options and pipeline: the CLI parses and calls, it builds no orchestration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from s2mask.composite import CompositeOptions
from s2mask.errors import InvalidParameterError
from s2mask.run import RunOptions
from s2mask.stac import run_stac


def test_run_stac_without_a_model_or_run_one_is_refused_before_searching(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match=r"needs a model \(or a run_one\)"):
        run_stac(
            url="http://127.0.0.1:9/", collection="c", bbox=(0, 0, 1, 1), date="2024-06", out_dir=tmp_path
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options", [RunOptions, CompositeOptions])
def test_options_are_frozen_and_keyword_only(options: type) -> None:
    with pytest.raises(TypeError):
        options(10)
    made = options(resolution=20)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.resolution = 10  # type: ignore[misc]
    assert made.resolution == 20 and made.resampling == "nearest"
    assert all(f.kw_only for f in dataclasses.fields(options))


def test_one_batch_loop_claims_skips_and_goes_on_past_failures(tmp_path: Path) -> None:
    from s2mask._batch import run_batch
    from s2mask.errors import CorruptDataError

    jobs = [("a", tmp_path / "a.tif"), ("b", tmp_path / "b.tif"), ("a again", tmp_path / "a.tif"),
            ("c", tmp_path / "c.tif"), ("d", tmp_path / "d.tif")]  # fmt: skip
    started, errors = [], []

    def work(i: int, name: str, target: Path) -> str:
        if name == "b":
            raise CorruptDataError("b.jp2 is truncated; download it again.")
        if name == "c":
            raise ZeroDivisionError("division by zero")
        return f"{i}:{target.name}"

    outcomes = run_batch(jobs, work, skip=lambda t: t.name == "d.tif",
                         on_start=lambda n, total, name: started.append((n, total, name)),
                         on_error=lambda name, exc: errors.append(name))  # fmt: skip
    assert [(o.name, o.status) for o in outcomes] == [
        ("a", "done"), ("b", "failed"), ("a again", "failed"), ("c", "failed"), ("d", "skipped"),
    ]  # fmt: skip
    assert outcomes[0].value == "0:a.tif" and outcomes[1].reason == "b.jp2 is truncated; download it again."
    assert "would write" in outcomes[2].reason and "like a before it" in outcomes[2].reason
    assert outcomes[3].reason.startswith("unexpected ZeroDivisionError: division by zero (this may be a bug")
    assert [s[2] for s in started] == [j[0] for j in jobs] and errors == ["b", "a again", "c"]


# ---------------------------------------------------------------- one options type for every command

SHARED = ("--window", "48", "--overlap", "8", "--batch-size", "3", "--chunks", "512", "--resolution", "20",
          "--resampling", "bilinear")  # fmt: skip
GEOTIFF = ("--bands", "B02,B03,B04,B08", "--scale", "2e-4", "--offset", "-0.1")


def test_input_and_model_options_are_defined_once_and_shared() -> None:
    from s2mask.options import EngineOptions, InputOptions

    for options in (RunOptions, CompositeOptions):
        assert issubclass(options, InputOptions) and issubclass(options, EngineOptions)
        own = {f.name: f for f in dataclasses.fields(options)}
        for shared in (*dataclasses.fields(InputOptions), *dataclasses.fields(EngineOptions)):
            assert own[shared.name].default == shared.default and own[shared.name].type == shared.type
    made = CompositeOptions(input_bands=("B02",), bands=("B04", "B03", "B02"), window=48, scale=2e-4)
    assert made.read_kwargs()["band_names"] == ("B02",) and made.read_kwargs()["scale"] == 2e-4
    assert made.predict_kwargs() == {"window": 48, "overlap": None, "batch_size": 4}


def test_run_options_bands_is_input_bands() -> None:
    assert RunOptions(bands=("B02", "B03")).input_bands == ("B02", "B03")
    assert RunOptions(input_bands=("B02", "B03")).bands == ("B02", "B03")
    assert dataclasses.replace(RunOptions(bands=("B02",)), overwrite=True).input_bands == ("B02",)
    with pytest.raises(InvalidParameterError, match="one option"):
        RunOptions(bands=("B02",), input_bands=("B03",))


class _Captured(Exception):
    pass


def _capture(seen: list, name: str):  # noqa: ANN202
    def fake(*args, options, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append((name, options))
        raise _Captured(name)

    return fake


def test_every_command_gets_the_same_input_and_model_options(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from click.testing import CliRunner

    import s2mask.cli
    import s2mask.composite
    import s2mask.run
    import s2mask.stac
    from s2mask.options import EngineOptions, InputOptions
    from s2mask.testing.models import ThresholdModel

    seen: list = []
    monkeypatch.setattr(s2mask.cli, "_load_model", lambda *a: ThresholdModel())
    monkeypatch.setattr(s2mask.run, "check_run", lambda *a: None)
    monkeypatch.setattr(s2mask.run, "run_product", _capture(seen, "run"))
    monkeypatch.setattr(s2mask.stac, "run_stac", _capture(seen, "stac"))
    monkeypatch.setattr(s2mask.composite, "composite_products", _capture(seen, "composite"))
    product = tmp_path / "p.tif"
    product.write_bytes(b"")
    invocations = [
        ["run", str(product), "-o", str(tmp_path / "m.tif"), *SHARED, *GEOTIFF],
        ["stac", "--bbox", "0,0,1,1", "--date", "2024-06", "-o", str(tmp_path / "s"), *SHARED],
        ["composite", str(product), str(product), "-o", str(tmp_path / "c.tif"), *SHARED, *GEOTIFF],
    ]
    for args in invocations:
        result = CliRunner().invoke(s2mask.cli.cli, args)
        assert isinstance(result.exception, _Captured), result.output
    assert [name for name, _ in seen] == ["run", "stac", "composite"]

    def shared(options: object) -> dict:
        names = [f.name for f in (*dataclasses.fields(InputOptions), *dataclasses.fields(EngineOptions))]
        return {n: getattr(options, n) for n in names}

    run, stac, composite = (shared(o) for _, o in seen)
    assert (
        run == composite
    )  # one meaning for --bands, --scale, --resampling, --window ... in run and composite
    assert (
        run["input_bands"] == ("B02", "B03", "B04", "B08") and run["scale"] == 2e-4 and run["offset"] == -0.1
    )
    assert (run["window"], run["overlap"], run["batch_size"], run["chunks"]) == (48, 8, 3, 512)
    assert (run["resolution"], run["resampling"]) == (20, "bilinear")
    assert stac == {
        **run,
        "input_bands": None,
        "scale": None,
        "offset": None,
    }  # STAC items describe themselves


def test_run_stac_reads_items_with_the_input_options(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import s2mask.stac

    class Item:
        id, properties, datetime = "item", {}, None

    reads: list[dict] = []

    def fake_open(item, **kwargs):  # noqa: ANN001, ANN003, ANN202
        reads.append(kwargs)
        raise _Captured("read")

    monkeypatch.setattr(s2mask.stac, "search_items", lambda **kw: [Item()])
    monkeypatch.setattr(s2mask.stac, "open_stac_item", fake_open)
    options = RunOptions(resolution=20, resampling="bilinear", chunks=512)
    result = run_stac(url="http://127.0.0.1:9/", collection="c", bbox=(0, 0, 1, 1), date="2024-06",
                      out_dir=tmp_path, run_one=lambda c, p: None, options=options)  # fmt: skip
    assert [f.item_id for f in result.failures] == ["item"]
    assert [(r["resolution"], r["resampling"], r["chunks"]) for r in reads] == [(20, "bilinear", 512)]
    run_stac(url="http://127.0.0.1:9/", collection="c", bbox=(0, 0, 1, 1), date="2024-06",
             out_dir=tmp_path / "default", run_one=lambda c, p: None)  # fmt: skip
    assert (reads[-1]["resolution"], reads[-1]["resampling"]) == (10, "nearest")  # STAC: the 10 m grid
