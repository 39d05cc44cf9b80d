"""Real-scene evaluation, band approximation, band-set comparison and shipping a model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from s2mask.model import ModelCard, build_model, load_model
from s2mask.testing.models import tiny_unet
from training.compare import compare_bands, format_comparison
from training.data.taco_build import real_patch_samples, write_taco
from training.export import ship_model
from training.loop import TrainConfig
from training.real_scenes import approximate_bands, evaluate_s2cloudless, evaluate_ukis, predict_array


def test_missing_red_edge_bands_are_interpolated_by_wavelength():
    have = {"B02": np.full((2, 2), 0.05), "B04": np.full((2, 2), 0.1), "B08": np.full((2, 2), 0.5)}
    x, approx = approximate_bands(have, ("B01", "B04", "B05", "B07", "B08", "B12"))
    assert approx == ["B01", "B05", "B07", "B12"]
    t5, t7 = (705 - 665) / (842 - 665), (783 - 665) / (842 - 665)
    np.testing.assert_allclose(x[:, 0, 0], [0.05, 0.1, 0.1 + t5 * 0.4, 0.1 + t7 * 0.4, 0.5, 0.5], rtol=1e-6)


def test_predict_array_tiles_cover_the_scene():
    model = tiny_unet(("B02", "B03", "B04", "B08"), width=4)
    img = np.random.default_rng(0).random((4, 70, 90), dtype=np.float32)
    whole = model.predict_proba(img[None])[0].argmax(0)
    tiled = predict_array(model, img, tile=48)
    assert tiled.shape == (70, 90)
    assert (tiled == whole).mean() > 0.98  # 32 px context margins: tiles agree with the whole-scene pass


def test_ukis_and_s2cloudless_reports(shared_data):
    rgbn = tiny_unet(("B02", "B03", "B04", "B08"), width=4)
    r = evaluate_ukis(rgbn, shared_data)
    assert r["pixels"] == 512 * 512 and r["approximated_bands"] == []
    assert np.array(r["confusion"]).sum() == r["pixels"]
    s29 = tiny_unet(width=4)
    assert evaluate_ukis(s29, shared_data)["approximated_bands"] == ["B05", "B06", "B07"]
    s = evaluate_s2cloudless(s29, shared_data)
    assert 0.4 < s["cloud_fraction_s2cloudless"] < 0.5

    class AllCloud:  # predicts cloud everywhere: IoU = the reference's cloud share, exactly
        bands, num_classes = tuple(s29.bands), 3

        def predict_proba(self, batch):
            p = np.zeros((batch.shape[0], 3) + batch.shape[2:], np.float32)
            p[:, 1] = 1.0
            return p

    a = evaluate_s2cloudless(AllCloud(), shared_data)
    with np.load(shared_data / "s2cloudless_testscene" / "input_arrays.npz") as d:
        ref = d["cl_mask"][0] > 0
    assert a["cloud_iou"] == round(float(ref.mean()), 4) == a["cloud_fraction_s2cloudless"]
    assert a["cloud_iou_heldout_rows"] == round(float(ref[428:].mean()), 4) and a["cloud_fraction_pred"] == 1.0


@pytest.fixture(scope="module")
def tiny_taco(shared_data, tmp_path_factory):
    return write_taco(
        tmp_path_factory.mktemp("cmp") / "mini.tacozip", real_patch_samples(shared_data, n=8, size=32)
    )


def test_compare_bands_table(tiny_taco, tmp_path):
    base = TrainConfig(
        data=str(tiny_taco),
        out_dir=str(tmp_path),
        epochs=1,
        batch_size=4,
        width=4,
        crop=32,
        threads=1,
        device="cpu",
        n_samples=1,
        log_every=0,
    )
    res = compare_bands(base, ("rgb", "rgbn"))
    assert list(res) == ["rgb", "rgbn"] and res["rgbn"]["bands"] == ["B02", "B03", "B04", "B08"]
    table = (tmp_path / "comparison.md").read_text()
    assert table.startswith("| bands |") and "| rgbn | 4 | test |" in table
    assert json.loads((tmp_path / "comparison.json").read_text())["rgb"]["split"] == "test"
    assert format_comparison(res).count("\n") == 3


def test_ship_model_writes_card_with_measured_metrics(shared_data, tmp_path):
    import torch

    card = ModelCard(name="rgbn", bands=("B02", "B03", "B04", "B08"), width=4, training_data="unit test")
    ckpt = tmp_path / "best_model.pth"
    torch.save({"model": build_model(card).state_dict(), "card": card.to_dict()}, ckpt)
    path, metrics = ship_model(ckpt, tmp_path / "rgbn.safetensors", shared_data=shared_data, command="cmd x")
    m = load_model(path, device="cpu")
    assert m.card.command == "cmd x" and m.card.training_data == "unit test"
    real = m.card.metrics["real_scenes"]
    assert {"ukis", "s2cloudless", "accra_scl", "nodata_edges"} <= set(real)
    assert m.card.metrics == json.loads(json.dumps(metrics))
    # the card's figures are what an independent evaluation of the written weights measures
    from training.real_scenes import evaluate_accra, evaluate_ukis

    assert real["ukis"]["macro_iou"] == evaluate_ukis(m, shared_data)["macro_iou"]
    assert real["accra_scl"]["confusion"] == evaluate_accra(m, shared_data)["confusion"]


def test_cli_make_synthetic_export_and_evaluate_scenes(shared_data, tmp_path):
    import torch
    from click.testing import CliRunner

    from s2mask.model import save_model
    from training.cli import train_cli

    runner = CliRunner()
    r = runner.invoke(
        train_cli,
        [
            "make-synthetic",
            "--shared-data",
            str(shared_data),
            "--out",
            str(tmp_path / "syn"),
            "--train",
            "2",
            "--validation",
            "1",
            "--test",
            "0",
            "--size",
            "32",
        ],
    )
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "syn" / "manifest.json").read_text())
    assert set(manifest["splits"]) == {"train", "validation"}

    card = ModelCard(name="rgbn", bands=("B02", "B03", "B04", "B08"), width=4)
    ckpt = tmp_path / "best_model.pth"
    torch.save({"model": build_model(card).state_dict(), "card": card.to_dict()}, ckpt)
    r = runner.invoke(
        train_cli,
        [
            "export",
            "--checkpoint",
            str(ckpt),
            "--out",
            str(tmp_path / "m.safetensors"),
            "--command",
            "made by a test",
        ],
    )
    assert r.exit_code == 0, r.output
    assert load_model(tmp_path / "m.safetensors", device="cpu").card.command == "made by a test"

    weights = save_model(build_model(card), card, tmp_path / "w.safetensors")
    r = runner.invoke(
        train_cli,
        [
            "evaluate-scenes",
            "--weights",
            str(weights),
            "--shared-data",
            str(shared_data),
            "--json",
            str(tmp_path / "scenes.json"),
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "scenes.json").read_text())
    assert {"ukis", "s2cloudless", "accra_scl", "nodata_edges", "peer"} <= set(res)
    assert res["accra_scl"]["level"] == "L2A" and res["s2cloudless"]["level"] == "L1C"
    # the peer ran on the same arrays (ukis-csmask is part of the teacher extra the tests install)
    assert res["peer"]["accra_scl"]["peer"] == "ukis-csmask 4b-L2A"
    assert res["peer"]["accra_scl"]["pixels"] == res["accra_scl"]["pixels"]
