"""The teacher data source: provenance, reproducibility, level routing, scoring data kept out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.augment import Augment, augment, nodata_edge, to_soft
from training.data import MixedSource, PatchDataset, open_source
from training.loop import SoftCrossEntropy, hard_labels
from training.real_data import file_sha256, real_scenes

pytest.importorskip("ukis_csmask", reason="the teacher extra is not installed")

from training.teacher import (  # noqa: E402
    Teacher,
    build_teacher_dataset,
    choose_variant,
    teacher_probabilities,
)

RGBN = ("B02", "B03", "B04", "B08")


@pytest.fixture(scope="module")
def teacher_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    only = ("sen12mscr_nigeria", "scg_clear_cloudy_pair", "dsen2_l1c")
    return build_teacher_dataset(shared_data, out, tta=2, only=only)


def test_provenance_and_level_routing(teacher_dir: Path, shared_data: Path) -> None:
    m = json.loads((teacher_dir / "manifest.json").read_text())
    assert m["format"] == "s2mask-teacher/1" and m["tta"] == 2
    by = {e["name"]: e for e in m["scenes"]}
    nig, cloudy = by["sen12mscr/nigeria"], by["scg/cloudy"]
    # the level picks the teacher: L1C -> the L1C model, L2A -> the L2A model, 6 bands when B11/B12 exist
    assert nig["level"] == "L1C" and nig["teacher"] == "model_6b_l1c.onnx"
    assert cloudy["level"] == "L2A" and cloudy["teacher"] == "model_6b_l2a.onnx"
    t = Teacher("L1C", "6b", tta=1)
    assert nig["teacher_sha256"] == file_sha256(t.path)
    assert nig["source_sha256"] == file_sha256(shared_data / nig["source"])
    # documented-clear scenes are labelled clear exactly, whatever the teacher would say (the salt lake)
    salt = by["dsen2/S2B_MSIL1C_20171022_T49JGM"]
    assert salt["label"] == "documented clear (exact)" and salt["teacher"] is None and salt["cloud_share"] == 0
    # the real cumulus of the Nigeria patch are found, with shadows
    assert nig["cloud_share"] > 0.2 and nig["shadow_share"] > 0.02
    with np.load(teacher_dir / nig["file"]) as d:
        p = d["probs"].astype(np.float32) / m["prob_scale"]
        assert d["x"].dtype == np.uint16 and p.shape == (3, 256, 256)
        assert np.allclose(p.sum(0), 1.0, atol=0.02)  # probabilities, not classes


def test_variant_needs_b11_b12_for_6_bands() -> None:
    z = np.zeros((2, 2), np.float32)
    assert choose_variant({b: z for b in ("B02", "B03", "B04", "B08", "B11", "B12")}) == "6b"
    assert choose_variant({b: z for b in ("B02", "B03", "B04", "B06", "B08", "B11")}) == "4b"
    from s2mask.errors import TrainingDataError

    with pytest.raises(TrainingDataError, match="B02,B03,B04,B08"):
        choose_variant({b: z for b in ("B02", "B03", "B04")})


def test_rebuild_is_identical(teacher_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    again = build_teacher_dataset(shared_data, tmp_path, tta=2, only=("sen12mscr_nigeria",))
    name = "sen12mscr__nigeria.npz"
    with np.load(teacher_dir / name) as a, np.load(again / name) as b:
        for k in ("x", "probs", "valid"):
            np.testing.assert_array_equal(a[k], b[k])


def test_flip_averaging_is_equivariant(shared_data: Path) -> None:
    """With all 8 flips/rotations averaged, the teacher's output on a flipped scene is the flipped output."""
    sc = next(s for s in real_scenes(shared_data, only=("sen12mscr_nigeria",)))
    t = Teacher("L1C", "6b", tta=8)
    bands = {b: sc.bands[b] for b in t.bands}
    p = teacher_probabilities(t, bands)
    pf = teacher_probabilities(t, {b: np.ascontiguousarray(a[:, ::-1]) for b, a in bands.items()})
    np.testing.assert_allclose(pf[:, :, ::-1], p, atol=2e-3)


def test_scoring_data_never_reaches_training(shared_data: Path) -> None:
    names = [s.name for s in real_scenes(shared_data)]
    assert not any("ukis" in n or "accra" in n for n in names)
    s2c = next(s for s in real_scenes(shared_data, only=("s2cloudless_testscene",)))
    from training.real_scenes import S2CLOUDLESS_HELDOUT_ROW

    assert s2c.shape[0] == S2CLOUDLESS_HELDOUT_ROW


def test_teacher_source_soft_labels_and_mixing(teacher_dir: Path, tmp_path: Path) -> None:
    src = open_source(teacher_dir, split="train", bands=RGBN)
    assert src.soft and len(src) > 0
    x, y = src[0]
    assert x.shape[0] == 4 and y.shape == (3,) + x.shape[1:]
    mix = open_source(f"{teacher_dir},{teacher_dir}*3", split="train", bands=RGBN)
    assert isinstance(mix, MixedSource) and len(mix) == 4 * len(src)
    ds = PatchDataset(mix, crop=64, train=True, aug=Augment(nodata=1.0), seed=0)
    xb, yb = ds[1]
    assert yb.dtype == torch.float32 and yb.shape == (3, 64, 64)
    blank = torch.isnan(xb).all(0)
    assert (yb.sum(0)[blank] == 0).all()  # nodata is ignored, not clear


def test_soft_loss_equals_cross_entropy_on_one_hot() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    y = torch.randint(0, 3, (2, 8, 8), generator=g)
    y[0, :2] = 255
    w = torch.tensor([1.0, 1.0, 2.5])
    ref = torch.nn.CrossEntropyLoss(weight=w, ignore_index=255)(logits, y)
    soft = torch.from_numpy(np.stack([to_soft(a.numpy().astype(np.uint8), 3) for a in y]))
    assert torch.allclose(SoftCrossEntropy(w)(logits, soft), ref, atol=1e-6)
    assert torch.equal(hard_labels(soft), y)


def test_augment_moves_soft_and_hard_labels_alike() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((2, 16, 16), dtype=np.float32)
    y = rng.integers(0, 3, (16, 16)).astype(np.uint8)
    for seed in range(6):
        xa, ya = augment(x, y, Augment(), np.random.default_rng(seed))
        xs, ys = augment(x, to_soft(y, 3), Augment(), np.random.default_rng(seed))
        np.testing.assert_array_equal(xa, xs)
        np.testing.assert_array_equal(to_soft(ya, 3), ys)
    xn, yn = nodata_edge(x, y, np.random.default_rng(3))
    blank = np.isnan(xn).all(0)
    assert blank.any() and not blank.all() and (yn[blank] == 255).all() and (yn[~blank] == y[~blank]).all()


def test_missing_band_augmentation_matches_the_inference_approximation() -> None:
    from training.augment import MISSING_BAND_SETS, approximate_missing
    from training.real_scenes import approximate_bands

    bands = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12")
    x = np.random.default_rng(0).random((9, 8, 8), dtype=np.float32)
    seen = set()
    for seed in range(20):
        out = approximate_missing(x, bands, np.random.default_rng(seed))
        changed = tuple(b for i, b in enumerate(bands) if not np.allclose(out[i], x[i]))
        assert changed in MISSING_BAND_SETS
        ref, approx = approximate_bands({b: x[i] for i, b in enumerate(bands) if b not in changed}, bands)
        assert tuple(approx) == changed and np.array_equal(out, ref)
        seen.add(changed)
    assert len(seen) == len(MISSING_BAND_SETS)
    rgbn = x[[0, 1, 2, 6]]
    assert np.array_equal(approximate_missing(rgbn, RGBN, np.random.default_rng(0)), rgbn)
