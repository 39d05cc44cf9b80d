"""Real scenes with teacher probabilities (``training.teacher``) as a training data source.

Each scene is cut into tiles of ``tile`` px (stride ``tile - 32``); a sample is the
tile's reflectance (NaN = nodata) and its soft label: ``(3, h, w)`` float32 class
probabilities, all zero where the scene has no data.

``scales`` adds copies of every scene averaged over 2x2, 3x3, ... pixels (20 m, 30 m
ground pixels: labelled scenes elsewhere come at other resolutions), and tiles where
the label holds cloud or shadow on more than 5 % of the pixels are listed ``boost``
times, since most real pixels here are clear.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from s2mask.errors import TrainingDataError

__all__ = ["TeacherSource"]


def _coarsen(x: np.ndarray, probs: np.ndarray, valid: np.ndarray, f: int):
    """Mean over f x f pixels (a pixel is valid only where all its parts are)."""
    if f == 1:
        return x, probs, valid
    h, w = (valid.shape[0] // f) * f, (valid.shape[1] // f) * f

    def mean(a):
        return a[..., :h, :w].reshape(a.shape[:-2] + (h // f, f, w // f, f)).mean(axis=(-3, -1))

    v = mean(valid.astype(np.float32)) == 1.0
    return (
        np.round(mean(x.astype(np.float32))).astype(np.uint16),
        np.round(mean(probs.astype(np.float32))).astype(np.uint8),
        v,
    )


class TeacherSource:
    """The scenes of one split of a teacher dataset that hold every requested band."""

    soft = True
    temperature = 0.5
    """Teacher probabilities are sharpened as ``p ** (1 / T)`` (renormalised): flip/rotation
    averaging blurs them, and a blurred shadow target teaches a student to call shadow clear."""

    def __init__(
        self,
        path: str | Path,
        *,
        split: str,
        bands: tuple[str, ...],
        tile: int = 192,
        scales: tuple[int, ...] = (1, 2, 3),
        boost: int = 3,
    ) -> None:
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
            x = np.where(valid, x, 0).astype(np.uint16)
            for f in scales:
                if min(valid.shape) // f < 64:
                    continue
                k = len(self.scenes)
                self.scenes.append(_coarsen(x, probs, valid, f))
                self.items.extend(self._tiles(k, tile, boost))
        self.tile = tile
        if not self.items:
            raise TrainingDataError(
                f"{root} split {split!r} has no scene with bands {','.join(bands)}; "
                "rebuild it with `python -m training make-teacher` or choose other bands."
            )

    def _tiles(self, k: int, tile: int, boost: int) -> list[tuple[int, int, int]]:
        _, probs, valid = self.scenes[k]
        h, w = valid.shape
        step = max(1, tile - 32)
        out = set()
        for r in range(0, max(1, h - 32), step):
            for c in range(0, max(1, w - 32), step):
                out.add((k, min(r, max(0, h - tile)), min(c, max(0, w - tile))))
        tiles = []
        for t in sorted(out):
            p = probs[:, t[1] : t[1] + tile, t[2] : t[2] + tile]
            cls = p.argmax(0)[p.sum(0) > 0]
            busy = cls.size and (cls != 0).mean() > 0.05
            tiles.extend([t] * (boost if busy else 1))
        return tiles

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        k, r, c = self.items[i]
        x, probs, valid = self.scenes[k]
        t = self.tile
        v = valid[r : r + t, c : c + t]
        img = x[:, r : r + t, c : c + t].astype(np.float32) * np.float32(1e-4)
        img[:, ~v] = np.nan
        p = probs[:, r : r + t, c : c + t].astype(np.float32) * np.float32(self.scale)
        if self.temperature != 1.0:
            p = p ** (1.0 / self.temperature)
            total = p.sum(0, keepdims=True)
            p = np.where(total > 0, p / np.maximum(total, 1e-12), 0.0).astype(np.float32)
        return img, p
