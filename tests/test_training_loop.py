"""A few training steps on a tiny CloudSEN12-shaped .taco: loss, outputs, resume, fine-tune, evaluate."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from s2mask.model import ModelCard, build_model, load_model, save_model
from training.augment import Augment
from training.cli import train_cli
from training.data.taco_build import real_patch_samples, write_taco_v1
from training.evaluate import evaluate
from training.labels import remap_cloudsen12
from training.loop import TrainConfig, train
from training.metrics import confusion_matrix, metrics_from_confusion

RGBN = ("B02", "B03", "B04", "B08")


@pytest.fixture(scope="module")
def samples(shared_data):
    return real_patch_samples(shared_data, n=8, size=32, seed=1)


@pytest.fixture(scope="module")
def taco(samples, tmp_path_factory):
    return write_taco_v1(tmp_path_factory.mktemp("taco") / "cloudsen12-l1c.0000.part.taco", samples)


@pytest.fixture(scope="module")
def run(taco, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(
        data=str(taco),
        out_dir=str(out),
        bands=RGBN,
        epochs=6,
        batch_size=4,
        lr=1e-2,
        width=4,
        crop=32,
        seed=0,
        threads=1,
        device="cpu",
        n_samples=3,
        log_every=0,
        aug=Augment(flips=False, rotations=False),
        name="tiny",
    )
    return cfg, train(cfg)


def test_training_lowers_the_loss(run):
    _, res = run
    losses = [h["train_loss"] for h in res.history]
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0]


def test_training_writes_checkpoints_log_curve_and_samples(run):
    cfg, res = run
    from pathlib import Path

    out = Path(cfg.out_dir)
    for name in (
        "checkpoints/best_model.pth",
        "checkpoints/last.pth",
        "final_model_weights.pth",
        "metrics.csv",
        "metrics.json",
        "training_curve.png",
        "test_metrics.json",
    ):
        assert (out / name).stat().st_size > 0, name
    assert sorted(p.name for p in (out / "samples").iterdir()) == sorted(
        f"{s}_{i}.png"
        for s in ("input", "gt", "pred")
        for i in range(2)  # the 2 test patches
    )
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))
    assert {"train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_macro_iou"} <= set(rows[0])
    assert json.loads((out / "metrics.json").read_text())[-1]["epoch"] == 6
    # both checkpoints load through the package's loader with their card
    for name in ("checkpoints/best_model.pth", "final_model_weights.pth"):
        m = load_model(out / name, device="cpu")
        assert m.bands == RGBN and m.card.name == "tiny" and m.card.width == 4
    best = torch.load(out / "checkpoints/best_model.pth", weights_only=True)
    assert best["metrics"]["macro_iou"] == pytest.approx(
        max(h["val_macro_iou"] for h in res.history), abs=1e-6
    )


def test_resume_continues_from_the_checkpoint(run, tmp_path):
    cfg, res = run
    from pathlib import Path

    last = Path(cfg.out_dir) / "checkpoints" / "last.pth"
    out = tmp_path / "resumed"
    out.mkdir()
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "last.pth").write_bytes(last.read_bytes())
    (out / "checkpoints" / "best_model.pth").write_bytes(
        (Path(cfg.out_dir) / "checkpoints/best_model.pth").read_bytes()
    )
    res2 = train(replace(cfg, out_dir=str(out), epochs=8, resume=str(out / "checkpoints" / "last.pth")))
    assert [h["epoch"] for h in res2.history] == list(range(1, 9))
    assert res2.history[:6] == res.history  # the first six epochs come from the checkpoint
    ck = torch.load(out / "checkpoints" / "last.pth", weights_only=True)
    assert ck["epoch"] == 8


def test_init_carries_bands_and_width_over(run, taco, tmp_path):
    cfg, _ = run
    from pathlib import Path

    res = train(
        replace(
            cfg,
            out_dir=str(tmp_path / "ft"),
            bands=("B04",),
            width=8,
            epochs=1,
            init=str(Path(cfg.out_dir) / "final_model_weights.pth"),
        )
    )
    m = load_model(res.final_weights, device="cpu")
    assert m.bands == RGBN and m.card.width == 4


def _constant_model(path, cls: int):
    """A U-Net whose output is class ``cls`` everywhere (all weights zero, head bias one-hot)."""
    card = ModelCard(name="const", bands=RGBN, width=4)
    net = build_model(card)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.head.bias[cls] = 5.0
    return save_model(net, card, path)


def test_evaluate_matches_hand_computed_confusion(taco, samples, tmp_path):
    weights = _constant_model(tmp_path / "const.safetensors", cls=1)
    m = evaluate(weights, taco, split="train", device="cpu")
    # by hand: every valid pixel of the train split is predicted "cloud"
    counts = np.zeros(3, np.int64)
    for s in samples:
        if s.metadata["tortilla:data_split"] == "train":
            y = remap_cloudsen12(s.label)
            counts += [(y == k).sum() for k in range(3)]
    expected = np.zeros((3, 3), np.int64)
    expected[:, 1] = counts
    assert m.confusion == expected.tolist()
    assert m.accuracy == pytest.approx(counts[1] / counts.sum())
    assert m.per_class_iou["cloud"] == pytest.approx(counts[1] / counts.sum())
    assert m.per_class_iou["clear"] == 0.0


def test_metrics_from_a_known_confusion():
    y = np.array([0, 0, 0, 1, 1, 2, 255])
    p = np.array([0, 0, 1, 1, 2, 2, 0])
    cm = confusion_matrix(y, p, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    m = metrics_from_confusion(cm, ("clear", "cloud", "shadow"))
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.per_class_iou == pytest.approx({"clear": 2 / 3, "cloud": 1 / 3, "shadow": 1 / 2})
    assert m.macro_iou == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert m.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_cli_evaluate_prints_table_and_json(taco, tmp_path):
    weights = _constant_model(tmp_path / "const.safetensors", cls=0)
    out = tmp_path / "m.json"
    r = CliRunner().invoke(
        train_cli,
        [
            "evaluate",
            "--weights",
            str(weights),
            "--data",
            str(taco),
            "--split",
            "train",
            "--json",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "macro IoU" in r.output and "confusion" in r.output
    assert set(json.loads(out.read_text())) >= {
        "accuracy",
        "macro_f1",
        "macro_iou",
        "per_class_iou",
        "confusion",
    }


def test_cli_reports_bad_data_cleanly(tmp_path):
    r = CliRunner().invoke(
        train_cli, ["train", "--data", str(tmp_path / "missing.taco"), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 1 and "does not exist" in r.output
