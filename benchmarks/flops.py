"""FLOPs and bytes per pixel of the s2mask U-Net, and the GPU throughput they imply on paper.

    python benchmarks/flops.py                 # default model shape: 9 bands, width 16, 256 px windows
    python benchmarks/flops.py --width 8 --json flops.json

* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one forward pass of a window
  (convolutions and transposed convolutions, 2 FLOPs per multiply-add), per window pixel
  and per scene pixel (windows overlap by ``window // 8``, so each scene pixel is inferred
  ``(window / stride)^2`` times).
* Bytes: host -> device input (float32 reflectance, 4 B x bands), device -> host output
  (float32 probabilities, 4 B x classes) and the activation traffic inside the network
  (every layer output written once and read once, fp16 on a GPU).
* Roofline for a T4 and an A100: time per pixel = max(compute at an assumed efficiency,
  activation traffic at the device's memory bandwidth, PCIe transfer); the efficiency
  figures are assumptions (stated in the output), not measurements: no GPU here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from s2mask.model import UNet

GPUS = {
    # name: (dense fp16 tensor TFLOP/s, memory GB/s, effective PCIe GB/s host->device)
    "T4": (65.0, 320.0, 12.0),
    "A100-40GB": (312.0, 1555.0, 24.0),
}
EFFICIENCY = 0.25
"""Assumed fraction of peak tensor throughput a small-channel U-Net reaches (16..256 channels)."""


def activation_bytes(net: torch.nn.Module, x: torch.Tensor, bytes_per_value: int = 2) -> int:
    """Bytes written by every leaf module's output in one forward pass (read again once: x2)."""
    total = 0

    def hook(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * bytes_per_value

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    with torch.inference_mode():
        net(x)
    for h in handles:
        h.remove()
    return 2 * total


def measure(bands: int, classes: int, width: int, window: int) -> dict:
    net = UNet(bands, classes, width).eval()
    x = torch.zeros(1, bands, window, window)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        net(x)
    flops = counter.get_total_flops()
    px = window * window
    stride = window - window // 8
    overlap_factor = (window / stride) ** 2
    act = activation_bytes(net, x)
    per_px = {
        "flops_per_window_px": flops / px,
        "flops_per_scene_px": flops / px * overlap_factor,
        "activation_bytes_per_window_px_fp16": act / px,
        "input_bytes_per_scene_px": 4 * bands,
        "output_bytes_per_scene_px": 4 * classes,
    }
    gpus = {}
    for name, (tflops, mem_gbs, pcie_gbs) in GPUS.items():
        t_compute = per_px["flops_per_scene_px"] / (tflops * 1e12 * EFFICIENCY)
        t_memory = per_px["activation_bytes_per_window_px_fp16"] * overlap_factor / (mem_gbs * 1e9)
        t_pcie = (per_px["input_bytes_per_scene_px"] + per_px["output_bytes_per_scene_px"]) / (pcie_gbs * 1e9)
        t = max(t_compute, t_memory, t_pcie)
        bound = {t_compute: "compute", t_memory: "memory", t_pcie: "pcie"}[t]
        gpus[name] = {
            "mpx_per_s": 1e-6 / t,
            "tile_seconds": 10980**2 * t,
            "bound": bound,
            "compute_mpx_s": 1e-6 / t_compute,
            "memory_mpx_s": 1e-6 / t_memory,
            "pcie_mpx_s": 1e-6 / t_pcie,
        }
    return {
        "bands": bands,
        "classes": classes,
        "width": width,
        "window": window,
        "params": sum(p.numel() for p in net.parameters()),
        "gflops_per_window": flops / 1e9,
        "overlap_factor": overlap_factor,
        **per_px,
        "gpu_on_paper": gpus,
        "assumed_tensor_efficiency": EFFICIENCY,
    }


def cpu_gflops(
    bands: int, classes: int, width: int, window: int, batch: int, repeats: int = 3, bf16: bool = False
) -> float:
    """Achieved GFLOP/s of the forward pass on this CPU (channels-last, as the engine runs it;
    ``bf16``: under bfloat16 autocast, as ``--precision bf16`` runs it)."""
    net = UNet(bands, classes, width).eval().to(memory_format=torch.channels_last)
    x = torch.rand(batch, bands, window, window).contiguous(memory_format=torch.channels_last)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        net(x)
    best = float("inf")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        net(x)  # warm-up (oneDNN picks its kernels)
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x)
            best = min(best, time.perf_counter() - t0)
    return counter.get_total_flops() / best / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bands", type=int, default=9)
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--cpu", action="store_true", help="also time the forward pass on this CPU")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    out = measure(args.bands, args.classes, args.width, args.window)
    if args.cpu:
        for prec in ("fp32", "bf16"):
            g = cpu_gflops(args.bands, args.classes, args.width, args.window, 4, bf16=prec == "bf16")
            out[f"cpu_gflops_achieved_{prec}"] = g
            out[f"cpu_window_mpx_s_{prec}"] = g * 1e9 / out["flops_per_window_px"] / 1e6
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
