"""Training data sources and the patch dataset that feeds the training loop.

A *source* is a sequence of ``(image, label)`` pairs: ``image`` (C, H, W) float32
reflectance in the requested band order, ``label`` (H, W) uint8 project classes
(0 clear, 1 cloud, 2 shadow, 255 ignored).  Samples whose labels are all 255 are
skipped by every source.  :func:`open_source` picks the reader from the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from s2mask.errors import TrainingDataError
from training.augment import Augment, augment, center_crop, random_crop, to_soft

__all__ = ["Source", "PatchDataset", "MixedSource", "open_source", "SPLITS"]

SPLITS = ("train", "validation", "test")


class Source(Protocol):
    """What the training loop needs from a dataset."""

    bands: tuple[str, ...]
    name: str

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...


def open_source(path: str | Path, *, split: str, bands: tuple[str, ...], filters=None) -> Source:
    """Open ``path`` as a shard folder, a teacher dataset, a GeoTIFF pairs folder or a CloudSEN12 taco.

    ``path`` may list several datasets separated by commas, each optionally followed by
    ``*N`` to repeat it N times per epoch (``runs/syn,runs/teacher*3``): they are mixed
    into one source (soft labels for all if any has them).  A split that one of them
    lacks is taken from the others.
    """
    from training.data.geotiff_pairs import GeoTiffPairSource, is_geotiff_pairs
    from training.data.shards import ShardSource, is_shard_dataset
    from training.teacher import is_teacher_dataset

    if "," in str(path) or "*" in Path(str(path)).name:
        return MixedSource(str(path), split=split, bands=bands, filters=filters)
    p = Path(path)
    if is_teacher_dataset(p):
        from training.data.teacher_source import TeacherSource

        return TeacherSource(p, split=split, bands=bands)
    if is_shard_dataset(p):
        return ShardSource(p, split=split, bands=bands)
    if is_geotiff_pairs(p):
        return GeoTiffPairSource(p, split=split, bands=bands)
    from training.data.taco import TacoSource, is_taco

    if is_taco(p):
        return TacoSource(p, split=split, bands=bands, filters=filters)
    if not p.exists():
        raise TrainingDataError(f"Training data {p} does not exist; check the path.")
    raise TrainingDataError(
        f"{p} is not a dataset s2mask can train on; expected a CloudSEN12 .tacozip/.tacocat/.taco, "
        "a folder with images/ and labels/ GeoTIFFs, or a synthetic shard folder with manifest.json."
    )


class MixedSource:
    """Several sources as one (see :func:`open_source`); repeated ones count N times."""

    def __init__(self, spec: str, *, split: str, bands: tuple[str, ...], filters=None) -> None:
        self.parts: list[tuple[Source, int]] = []
        errors = []
        for item in (s.strip() for s in spec.split(",") if s.strip()):
            name, _, rep = item.partition("*")
            try:
                src = open_source(name, split=split, bands=bands, filters=filters)
            except TrainingDataError as exc:
                errors.append(str(exc))
                continue
            self.parts.append((src, int(rep or 1)))
        if not self.parts:
            raise TrainingDataError(f"None of {spec} has split {split!r}: " + " ".join(errors))
        self.soft = any(getattr(s, "soft", False) for s, _ in self.parts)
        self.index = [(j, i) for j, (s, n) in enumerate(self.parts) for _ in range(n) for i in range(len(s))]
        self.bands, self.name = tuple(bands), f"{spec}:{split}"

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        j, k = self.index[i]
        x, y = self.parts[j][0][k]
        return (x, to_soft(y, 3)) if self.soft else (x, y)


class PatchDataset(torch.utils.data.Dataset):
    """Crops (random for training, central otherwise) and augments samples of a source."""

    def __init__(
        self,
        source: Source,
        *,
        crop: int,
        train: bool,
        aug: Augment | None = None,
        seed: int = 0,
    ) -> None:
        if len(source) == 0:
            raise TrainingDataError(f"The dataset {source.name} is empty after filtering; relax the filters.")
        self.source, self.crop, self.train = source, crop, train
        self.aug = aug or Augment(flips=False, rotations=False)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.source[i]
        if self.train:
            x, y = random_crop(x, y, self.crop, self.rng)
            x, y = augment(x, y, self.aug, self.rng, getattr(self.source, "bands", None))
        else:
            x, y = center_crop(x, y, self.crop)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if y.ndim == 3:  # soft labels stay float
            return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
        return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(y).astype(np.int64))
