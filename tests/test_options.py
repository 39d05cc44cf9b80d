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
