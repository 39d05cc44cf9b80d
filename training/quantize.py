"""The int8 model of a set of weights: ONNX export, static quantization calibrated on real scenes.

    python -m training quantize --weights s2-9 --shared-data ../shared/data

writes ``s2mask/models/s2-9.int8.onnx`` beside the weights (or ``--out``):

1. the fp32 network is exported to ONNX (opset 17; batch, height and width dynamic);
2. activation ranges are calibrated (min/max) on ``tiles_per_scene`` random 256 px tiles of
   every real scene of ``../shared/data`` that has the model's bands
   (:func:`training.real_data.real_scenes`, which never returns the scoring scenes), with
   the model's own nodata filling and normalisation;
3. ONNX Runtime's ``quantize_static`` writes QDQ int8: weights per output channel (int8,
   symmetric), activations per tensor (uint8).  The first convolution and the 1x1 head stay
   float: quantized, they cost rgbn 0.005 macro IoU on the ukis scene for no measurable
   speed (they are 3 % of the FLOPs);
4. the file's metadata carries the model card, the SHA-256 of the weights it was made
   from (the loader refuses a stale file) and the calibration set.

Needs the ``train`` extra (``onnx``, ``onnxruntime``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from s2mask.model.normalize import normalize
from s2mask.model.runtime import CALIBRATION_KEY, CARD_KEY, SOURCE_KEY, file_sha256, int8_path

__all__ = ["calibration_tiles", "export_onnx", "quantize_weights"]


def calibration_tiles(
    model: Any, shared_data: str | Path, *, tiles_per_scene: int = 2, size: int = 256, seed: int = 0
) -> tuple[list[np.ndarray], list[str]]:
    """Normalised ``(1, C, size, size)`` tiles of the real scenes that have the model's bands, and their names."""
    from training.real_data import real_scenes

    rng = np.random.default_rng(seed)
    tiles, names = [], []
    for scene in real_scenes(shared_data):
        if not all(b in scene.bands for b in model.bands) or min(scene.shape) < size:
            continue
        h, w = scene.shape
        for _ in range(tiles_per_scene):
            y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            tile = np.stack([scene.bands[b][y : y + size, x : x + size] for b in model.bands])[None]
            if np.isnan(tile).all():
                continue
            tiles.append(np.ascontiguousarray(normalize(tile, model.card.normalization), np.float32))
        names.append(scene.name)
    if not tiles:
        raise ValueError(
            f"No real scene under {shared_data} has the bands {', '.join(model.bands)} at {size} px or more; "
            "pass the shared data folder (../shared/data)."
        )
    return tiles, names


def export_onnx(model: Any, path: str | Path, *, opset: int = 17) -> Path:
    """Export ``model``'s fp32 network (a :class:`~s2mask.model.weights.LoadedModel`) to ONNX."""
    import torch

    net = model.net.float().to("cpu", memory_format=torch.contiguous_format).eval()
    x = torch.zeros(1, len(model.bands), 256, 256)
    dyn = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad():
        torch.onnx.export(
            net,
            x,
            str(path),
            input_names=["reflectance"],
            output_names=["logits"],
            dynamic_axes={"reflectance": dyn, "logits": dyn},
            opset_version=opset,
            dynamo=False,
        )
    return Path(path)


def quantize_weights(
    weights: str | Path,
    shared_data: str | Path,
    *,
    out: str | Path | None = None,
    tiles_per_scene: int = 2,
    seed: int = 0,
    method: str = "minmax",
) -> tuple[Path, dict[str, Any]]:
    """Write the int8 model of ``weights`` (a shipped name or a ``.safetensors``); return its path and calibration."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from s2mask.model.runtime import _resolve_weights
    from s2mask.model.weights import load_torch_model

    source = _resolve_weights(weights)
    model = load_torch_model(source, device="cpu", precision="fp32")
    out = Path(out) if out else int8_path(source)
    tiles, names = calibration_tiles(model, shared_data, tiles_per_scene=tiles_per_scene, seed=seed)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(tiles)

        def get_next(self) -> dict[str, np.ndarray] | None:
            tile = next(self._it, None)
            return None if tile is None else {"reflectance": tile}

    calibration = {
        "method": f"{method} over the tiles",
        "tiles": len(tiles),
        "tile_size": 256,
        "seed": seed,
        "scenes": names,
        "format": "QDQ; weights int8 per channel, activations uint8 per tensor",
    }
    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre, q = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        export_onnx(model, fp32)
        convs = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"]
        float_nodes = [convs[0], convs[-1]]  # first and last layer: where int8 costs accuracy, not time
        calibration["float_layers"] = float_nodes
        cwd = os.getcwd()
        os.chdir(tmp)  # the pre-processor leaves scratch files in the working directory
        try:
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        finally:
            os.chdir(cwd)
        quantize_static(
            str(pre),
            str(q),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "percentile": CalibrationMethod.Percentile,
                "entropy": CalibrationMethod.Entropy,
            }[method],
            nodes_to_exclude=float_nodes,
        )
        proto = onnx.load(str(q))
        del proto.metadata_props[:]
        for key, value in (
            (CARD_KEY, json.dumps(model.card.to_dict())),
            (SOURCE_KEY, file_sha256(source)),
            (CALIBRATION_KEY, json.dumps(calibration)),
        ):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        staged = out.with_name(f".{out.name}.tmp")
        onnx.save(proto, str(staged))
        staged.chmod(0o644)
        staged.replace(out)
    return out, calibration
