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
from training.augment import Augment, augment, center_crop, random_crop

__all__ = ["Source", "PatchDataset", "open_source", "SPLITS"]

SPLITS = ("train", "validation", "test")


class Source(Protocol):
    """What the training loop needs from a dataset."""

    bands: tuple[str, ...]
    name: str

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...


def open_source(path: str | Path, *, split: str, bands: tuple[str, ...], filters=None) -> Source:
    """Open ``path`` as a shard folder, a GeoTIFF pairs folder or a CloudSEN12 taco dataset."""
    from training.data.geotiff_pairs import GeoTiffPairSource, is_geotiff_pairs
    from training.data.shards import ShardSource, is_shard_dataset

    p = Path(path)
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
            x, y = augment(x, y, self.aug, self.rng)
        else:
            x, y = center_crop(x, y, self.crop)
        x = np.ascontiguousarray(x, dtype=np.float32)
        return torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(y).astype(np.int64))
