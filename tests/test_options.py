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
