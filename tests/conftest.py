"""Shared fixtures: the path to ../shared/data (skipped cleanly when absent); a private compiled-model cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _compiled_model_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests (and the CLI runs they start) keep OpenVINO's compiled models in a temporary folder, not ~/.cache."""
    os.environ["S2MASK_CACHE_DIR"] = str(tmp_path_factory.mktemp("s2mask-cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def need(path: Path) -> Path:
    """Skip the calling test when ``path`` does not exist."""
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path
