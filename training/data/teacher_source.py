"""Real scenes with teacher probabilities (``training.teacher``) as a training data source.

Each scene is cut into tiles of ``tile`` px (stride ``tile - 32``); a sample is the
tile's reflectance (NaN = nodata) and its soft label: ``(3, h, w)`` float32 class
probabilities, all zero where the scene has no data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from s2mask.errors import TrainingDataError

__all__ = ["TeacherSource"]


class TeacherSource:
    """The scenes of one split of a teacher dataset that hold every requested band."""

    soft = True

    def __init__(self, path: str | Path, *, split: str, bands: tuple[str, ...], tile: int = 192) -> None:
        root = Path(path)
        manifest = json.loads((root / "manifest.json").read_text())
        self.scale = 1.0 / float(manifest["prob_scale"])
        self.bands, self.name = tuple(bands), f"{root.name}:{split}"
        self.scenes: list[tuple[np.ndarray, np.ndarray]] = []
        self.items: list[tuple[int, int, int]] = []
        self.skipped: list[str] = []
        for e in manifest["scenes"]:
            if e["split"] != split:
                continue
            if any(b not in e["bands"] for b in bands):
                self.skipped.append(e["name"])
                continue
            with np.load(root / e["file"]) as d:
                have = [str(b) for b in d["bands"]]
                x = d["x"][[have.index(b) for b in bands]]
                probs, valid = d["probs"], d["valid"]
            probs = np.where(valid, probs, 0).astype(np.uint8)
            k = len(self.scenes)
            self.scenes.append((np.where(valid, x, 0).astype(np.uint16), probs, valid))
            h, w = valid.shape
            step = max(1, tile - 32)
            for r in range(0, max(1, h - 32), step):
                for c in range(0, max(1, w - 32), step):
                    r0, c0 = min(r, max(0, h - tile)), min(c, max(0, w - tile))
                    self.items.append((k, r0, c0))
        self.tile = tile
        self.items = sorted(set(self.items))
        if not self.items:
            raise TrainingDataError(
                f"{root} split {split!r} has no scene with bands {','.join(bands)}; "
                "rebuild it with `python -m training make-teacher` or choose other bands."
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        k, r, c = self.items[i]
        x, probs, valid = self.scenes[k]
        t = self.tile
        v = valid[r : r + t, c : c + t]
        img = x[:, r : r + t, c : c + t].astype(np.float32) * np.float32(1e-4)
        img[:, ~v] = np.nan
        return img, probs[:, r : r + t, c : c + t].astype(np.float32) * np.float32(self.scale)
