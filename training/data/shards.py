"""npz shard datasets (``manifest.json`` + ``<split>-NNNN.npz``), as written by ``training.synthetic``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from s2mask.errors import TrainingDataError
from training.labels import all_ignored

__all__ = ["ShardSource", "is_shard_dataset"]


def is_shard_dataset(path: Path) -> bool:
    """True for a folder holding a shard ``manifest.json``."""
    return path.is_dir() and (path / "manifest.json").is_file()


class ShardSource:
    """All samples of one split, held in memory as uint16 DN for the requested bands."""

    def __init__(self, path: str | Path, *, split: str, bands: tuple[str, ...]) -> None:
        root = Path(path)
        manifest = json.loads((root / "manifest.json").read_text())
        have = list(manifest["bands"])
        missing = [b for b in bands if b not in have]
        if missing:
            raise TrainingDataError(
                f"{root} holds bands {', '.join(have)} but {', '.join(missing)} were asked for; "
                "choose bands the dataset has."
            )
        if split not in manifest["splits"]:
            raise TrainingDataError(f"{root} has no split {split!r}; it has {', '.join(manifest['splits'])}.")
        idx = [have.index(b) for b in bands]
        xs, ys = [], []
        for name in manifest["splits"][split]:
            with np.load(root / name) as d:
                xs.append(d["x"][:, idx])
                ys.append(d["y"])
        x, y = np.concatenate(xs), np.concatenate(ys)
        keep = np.array([not all_ignored(lab) for lab in y], bool)
        self.x, self.y = x[keep], y[keep]
        self.scale = float(manifest.get("scale", 1e-4))
        self.bands, self.name = tuple(bands), f"{root.name}:{split}"
        if not len(self.y):
            raise TrainingDataError(f"{root} split {split!r} holds no sample with a known label.")

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[i].astype(np.float32) * np.float32(self.scale), self.y[i]
