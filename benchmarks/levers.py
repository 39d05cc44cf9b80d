"""Inference levers on this CPU: batch size, threads vs processes, channels-last, width, 20 m, compile, ONNX.

    python benchmarks/levers.py                      # every lever, ~10 min on 2 busy cores
    python benchmarks/levers.py --only base,width8,res20 --repeats 5 --json levers.json

Each variant runs the model (untrained, seeded: speed does not depend on the weights) on
``--windows`` real 256 px windows cut from the s2cloudless test scene, ``--repeats`` times;
the best repeat counts (the machine is shared, the minimum is the least disturbed figure).
Throughput is given in *scene* pixels per second: a 10 m window of 256 px advances the
scene by ``stride^2`` = 224^2 px (windows overlap by 32 px); ``res20`` uses 128 px windows at
20 m, the same 2560 m of ground, so it advances the scene by the same 224^2 px of 10 m.  Pre- and post-processing of the engine (normalisation, softmax) are
included; reading and blending are not (see ``full_tile_bench.py``).

Variants: ``base`` (the engine's path: ``LoadedModel``, width 16, batch 8, all threads,
channels-last), ``batchN``, ``threads1``, ``procs2x1`` (two processes with one thread each),
``contiguous`` (no channels-last), ``width8``, ``res20`` (inference at 20 m: 128 px windows
hold 256 px of 10 m ground), ``compile`` (``torch.compile``), ``onnx`` (onnxruntime on the
exported model, run with ``--peer-python`` where onnxruntime is installed).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from make_full_tile import SCENE  # the one path to the real scene (run as a script from benchmarks/)

S2_9 = (1, 2, 3, 4, 5, 6, 7, 11, 12)  # indices of B02..B07, B08, B11, B12 in ESA order
WINDOW, STRIDE = 256, 224


def real_windows(n: int, size: int = WINDOW) -> np.ndarray:
    """``n`` windows ``(n, 9, size, size)`` of real reflectance, 10 m windows block-averaged for 20 m."""
    with np.load(SCENE) as d:
        im = d["s2_im"][0][..., S2_9].transpose(2, 0, 1).astype(np.float32)
    rng = np.random.default_rng(0)
    out = np.empty((n, 9, WINDOW, WINDOW), np.float32)
    for k in range(n):
        y, x = rng.integers(0, im.shape[1] - WINDOW), rng.integers(0, im.shape[2] - WINDOW)
        out[k] = im[:, y : y + WINDOW, x : x + WINDOW]
    if size != WINDOW:
        f = WINDOW // size
        out = out.reshape(n, 9, size, f, size, f).mean(axis=(3, 5))
    return out


def make_model(width: int = 16, *, channels_last: bool = True):  # noqa: ANN201
    from s2mask.bands import DEFAULT_BANDS
    from s2mask.model import LoadedModel, ModelCard, build_model

    card = ModelCard(name=f"bench-w{width}", bands=DEFAULT_BANDS, width=width)
    torch.manual_seed(0)
    model = LoadedModel(build_model(card), card, device="cpu")
    if not channels_last:
        model.net = model.net.to(memory_format=torch.contiguous_format)
        model.device = torch.device("cpu")

        def plain(batch: np.ndarray, _m=model) -> np.ndarray:  # noqa: ANN001
            from s2mask.model import normalize

            with torch.inference_mode():
                x = normalize(torch.as_tensor(batch), _m.card.normalization)
                return torch.softmax(_m.net(x), dim=1).numpy()

        model.predict_proba = plain  # type: ignore[method-assign]
    return model


def time_calls(fn, windows: np.ndarray, batch: int, repeats: int) -> float:  # noqa: ANN001
    """Best wall time over ``repeats`` of running all ``windows`` through ``fn`` in batches."""
    fn(windows[:batch])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(windows), batch):
            fn(windows[i : i + batch])
        best = min(best, time.perf_counter() - t0)
    return best


def _one_proc(args: tuple[int, int, int, int]) -> float:
    n, batch, repeats, width = args
    torch.set_num_threads(1)
    model = make_model(width)
    return time_calls(model.predict_proba, real_windows(n), batch, repeats)


def onnx_session_fn(width: int, threads: int):  # noqa: ANN201
    import onnxruntime as ort

    from s2mask.model import normalize

    model = make_model(width, channels_last=False)
    path = Path(tempfile.mkdtemp()) / "unet.onnx"
    x = torch.zeros(1, 9, WINDOW, WINDOW)
    torch.onnx.export(
        model.net,
        (x,),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
        dynamo=False,
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])

    def fn(batch: np.ndarray) -> np.ndarray:
        x = normalize(torch.as_tensor(batch), model.card.normalization).numpy()
        logits = sess.run(None, {"x": x})[0]
        return torch.softmax(torch.from_numpy(logits), dim=1).numpy()

    return fn


def run_variant(name: str, n: int, repeats: int, threads: int) -> dict:
    batch, width, res, fn = 8, 16, 10, None
    torch.set_num_threads(threads)
    if name.startswith("batch"):
        batch = int(name[5:])
    elif name == "threads1":
        torch.set_num_threads(1)
    elif name == "width8":
        width = 8
    elif name == "res20":
        res = 20
    elif name == "contiguous":
        fn = make_model(16, channels_last=False).predict_proba
    elif name == "compile":
        model = make_model(16)
        model.net = torch.compile(model.net)
        fn = model.predict_proba
    elif name == "onnx":
        fn = onnx_session_fn(16, threads)
    if name == "procs2x1":
        with mp.get_context("spawn").Pool(2) as pool:  # both time their half concurrently; the slower counts
            seconds = max(pool.map(_one_proc, [(n // 2, batch, repeats, width)] * 2))
    else:
        fn = fn or make_model(width).predict_proba
        seconds = time_calls(fn, real_windows(n, WINDOW * 10 // res), batch, repeats)
    scene_px = n * STRIDE**2  # a window covers 2560 m of ground (256 px at 10 m, 128 px at 20 m)
    return {
        "variant": name,
        "batch": batch,
        "width": width,
        "res_m": res,
        "threads": torch.get_num_threads(),
        "windows": n,
        "seconds": seconds,
        "scene_mpx_s": scene_px / seconds / 1e6,
        "load": os.getloadavg()[0],
    }


VARIANTS = (
    "base",
    "batch1",
    "batch4",
    "batch16",
    "threads1",
    "procs2x1",
    "contiguous",
    "width8",
    "res20",
    "compile",
    "onnx",
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=",".join(VARIANTS))
    p.add_argument("--windows", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--peer-python", default="/work/benchvenv/bin/python", help="python with onnxruntime")
    p.add_argument("--json", type=Path)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.variant:
        print("RESULT " + json.dumps(run_variant(args.variant, args.windows, args.repeats, args.threads)))
        return 0
    results = []
    for name in [v.strip() for v in args.only.split(",") if v.strip()]:
        python = args.peer_python if name == "onnx" else sys.executable
        cmd = [
            python,
            __file__,
            "--variant",
            name,
            "--windows",
            str(args.windows),
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.threads),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if not lines:
            r = {"variant": name, "error": " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])}
            print(f"{name:<11} ERROR {r['error']}", flush=True)
        else:
            r = json.loads(lines[-1][7:])
            print(
                f"{name:<11} {r['scene_mpx_s']:6.3f} Mpx/s  ({r['seconds']:.2f} s for {r['windows']} windows, "
                f"batch {r['batch']}, width {r['width']}, {r['res_m']} m, threads {r['threads']}, "
                f"load {r['load']:.1f})",
                flush=True,
            )
        results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
