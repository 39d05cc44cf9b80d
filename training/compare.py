"""Band-set comparison: train one model per band set on the same data and compare test metrics.

Reproduces the seed's table (RGB vs RGB+NIR vs 9 bands) on any dataset the training
loop reads; every run uses the same configuration apart from the bands.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from s2mask.bands import resolve_bands
from training.evaluate import write_json
from training.loop import TrainConfig, train

__all__ = ["compare_bands", "format_comparison"]


def compare_bands(base: TrainConfig, band_sets: tuple[str, ...] = ("rgb", "rgbn", "s2-9")) -> dict[str, dict]:
    """Train ``base`` once per band set into ``<out_dir>/<set>``; return test (or validation) metrics.

    Writes ``<out_dir>/comparison.json`` and ``<out_dir>/comparison.md``.
    """
    out = Path(base.out_dir)
    results: dict[str, dict] = {}
    for name in band_sets:
        bands = resolve_bands(name)
        cfg = replace(
            base,
            bands=bands,
            out_dir=str(out / name.replace(",", "-")),
            name=f"compare-{name}",
            resume=None,
            init=None,
        )
        res = train(cfg)
        metrics = res.test or res.best_val
        results[name] = {
            "bands": list(bands),
            "split": "test" if res.test else "validation",
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "macro_iou": metrics["macro_iou"],
            "per_class_iou": metrics["per_class_iou"],
        }
    write_json(results, out / "comparison.json")
    tmp = out / ".comparison.md.tmp"
    tmp.write_text(format_comparison(results) + "\n")
    tmp.replace(out / "comparison.md")
    return results


def format_comparison(results: dict[str, dict]) -> str:
    """A markdown table: band set, number of bands, accuracy, macro F1, macro IoU."""
    lines = ["| bands | n | split | accuracy | macro F1 | macro IoU |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {len(r['bands'])} | {r['split']} | {r['accuracy']:.3f} | "
            f"{r['macro_f1']:.3f} | {r['macro_iou']:.3f} |"
        )
    return "\n".join(lines)
