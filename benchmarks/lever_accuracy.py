"""Accuracy beside speed: does a lever change the masks on the real labelled scenes?

    python benchmarks/lever_accuracy.py --weights runs/s2-9/model.safetensors --json acc.json

Runs ``training.real_scenes.evaluate_real_scenes`` (ukis scene: 3-class metrics against its
reference mask; s2cloudless scene: cloud IoU against the s2cloudless mask) for

* ``10m``: the model as the engine runs it (``LoadedModel``: channels-last, batch as given);
* ``20m``: inference on a 2x2 block-mean of the input (the 20 m grid), probabilities repeated
  back to 10 m: the ``--infer-res 20`` lever of ``full_tile_bench.py``;
* ``contiguous``: the same network without channels-last (must give the same masks).

and reports how many pixels' classes differ from ``10m``.  Speed of each lever:
``levers.py`` and ``full_tile_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT / ".." / "shared" / "data"


class Coarser:
    """Model protocol wrapper: run ``model`` on a ``factor`` x coarser grid, repeat probabilities back."""

    def __init__(self, model, factor: int = 2) -> None:  # noqa: ANN001
        self.model, self.factor = model, factor
        self.bands, self.num_classes, self.card = model.bands, model.num_classes, model.card

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        f = self.factor
        n, c, h, w = batch.shape
        ph, pw = -h % f, -w % f
        x = np.pad(batch, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")
        x = x.reshape(n, c, (h + ph) // f, f, (w + pw) // f, f).mean(axis=(3, 5))
        p = self.model.predict_proba(x.astype(np.float32))
        return np.repeat(np.repeat(p, f, axis=2), f, axis=3)[:, :, :h, :w]


class Contiguous:
    """The same network in the default (NCHW contiguous) memory format."""

    def __init__(self, model) -> None:  # noqa: ANN001
        from s2mask.model import normalize

        self.bands, self.num_classes, self.card = model.bands, model.num_classes, model.card
        self.net = model.net.to(memory_format=torch.contiguous_format)
        self._normalize = normalize

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = self._normalize(torch.as_tensor(batch), self.card.normalization)
            return torch.softmax(self.net(x), dim=1).numpy()


def _masks(model) -> dict[str, np.ndarray]:  # noqa: ANN001
    """The class maps the evaluation computes, for the agreement figure."""
    from training import real_scenes as rs

    have, _ = rs.ukis_scene(SHARED)
    x, _ = rs.approximate_bands(have, tuple(model.bands))
    with np.load(SHARED / "s2cloudless_testscene" / "input_arrays.npz") as d:
        img = d["s2_im"][0]
    names = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
    s2c = np.stack([img[..., names.index(b)] for b in model.bands]).astype(np.float32)
    return {"ukis": rs.predict_array(model, x), "s2cloudless": rs.predict_array(model, s2c)}


def main(argv: list[str] | None = None) -> int:
    from s2mask.model import load_model
    from training.real_scenes import evaluate_real_scenes

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="trained weights (file or shipped model name)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    base = load_model(args.weights, device="cpu")
    variants = {
        "10m": base,
        "20m": Coarser(base),
        "contiguous": Contiguous(load_model(args.weights, device="cpu")),
    }
    ref = _masks(base)
    out = {}
    for name, model in variants.items():
        scores = evaluate_real_scenes(model, SHARED)
        masks = ref if name == "10m" else _masks(model)
        agree = {k: float((masks[k] == ref[k]).mean()) for k in ref}
        u, s = scores["ukis"], scores["s2cloudless"]
        out[name] = {"scores": scores, "agreement_with_10m": agree}
        print(
            f"{name:<11} ukis: OA {u['accuracy']:.4f} mIoU {u['macro_iou']:.4f}"
            f"  s2cloudless: cloud IoU {s['cloud_iou']:.4f} (held-out rows {s['cloud_iou_heldout_rows']:.4f})"
            f"  same class as 10m: ukis {agree['ukis']:.4f}, s2cloudless {agree['s2cloudless']:.4f}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
