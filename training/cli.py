"""Click commands for training: ``train``, ``evaluate``, ``compare-bands``, ``make-synthetic``.

The lead mounts :data:`train_cli`'s commands under ``s2mask``; ``python -m training``
runs the group directly.  Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
import shlex
import sys

import click

from s2mask.errors import S2MaskError

__all__ = ["train_cli"]


class _BandsType(click.ParamType):
    name = "BANDS"

    def convert(self, value, param, ctx):
        from s2mask.bands import resolve_bands

        try:
            return resolve_bands(value)
        except S2MaskError as exc:
            self.fail(str(exc), param, ctx)


def _floats(value: str | None) -> tuple[float, ...] | None:
    return tuple(float(v) for v in value.split(",")) if value else None


def _run(fn):
    try:
        return fn()
    except S2MaskError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)


def _taco_filter(label_type, bbox, region, cloud_cover, level):
    if not any((label_type, bbox, region, cloud_cover, level)):
        return None
    from training.data.taco import TacoFilter

    return TacoFilter.from_options(
        label_type=label_type, bbox=bbox, region=region, cloud_cover=cloud_cover, level=level
    )


_filter_options = [
    click.option(
        "--label-type",
        type=click.Choice(["high", "scribble", "nolabel"]),
        default=None,
        help="CloudSEN12 label type to keep.",
    ),
    click.option("--bbox", default=None, help="minx,miny,maxx,maxy in degrees (WGS84)."),
    click.option("--region", default=None, help="Named region (e.g. mexico) or country bbox."),
    click.option("--cloud-cover", default=None, help="min,max cloud cover in percent, e.g. 0,60."),
    click.option("--level", type=click.Choice(["L1C", "L2A"]), default=None, help="Processing level."),
]


def _with_filters(f):
    for opt in reversed(_filter_options):
        f = opt(f)
    return f


@click.group(name="training")
def train_cli() -> None:
    """Train, evaluate and compare s2mask U-Nets."""


@train_cli.command()
@click.option(
    "--data",
    "data",
    required=True,
    help="CloudSEN12 .tacozip/.tacocat/.taco, GeoTIFF pairs, shards or a teacher dataset; "
    "mix several with commas, repeat one with *N (runs/syn,runs/teacher*3).",
)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--bands", type=_BandsType(), default="s2-9", show_default=True, help="Preset or list.")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True)
@click.option("--width", type=click.IntRange(2), default=16, show_default=True, help="U-Net width.")
@click.option("--crop", type=click.IntRange(16), default=256, show_default=True, help="Crop size (px).")
@click.option("--window-size", type=click.IntRange(16), default=None, help="Card window size (default crop).")
@click.option("--flips/--no-flips", default=True, show_default=True)
@click.option("--rotations/--no-rotations", default=True, show_default=True)
@click.option(
    "--nodata-edges",
    type=click.FloatRange(0, 1),
    default=0.15,
    show_default=True,
    help="Share of training samples given a nodata corner or swath edge.",
)
@click.option(
    "--missing-bands",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of samples whose red-edge/B12 bands are replaced by the approximation used for "
    "products that lack them.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--class-weights", default=None, help="Comma list, one per class (e.g. 1,1,2).")
@click.option("--max-steps", type=click.IntRange(1), default=None, help="Steps per epoch cap.")
@click.option(
    "--log-every", type=click.IntRange(0), default=50, show_default=True, help="Print loss every N steps."
)
@click.option(
    "--resume", type=click.Path(dir_okay=False), default=None, help="checkpoints/last.pth to continue."
)
@click.option("--init", default=None, help="Shipped model name or weights to fine-tune.")
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None)
@click.option("--amp/--no-amp", default=False, show_default=True, help="bfloat16 autocast (CUDA, AMX CPUs).")
@click.option("--name", default="s2mask-unet", show_default=True, help="Model name in the card.")
@click.option("--training-data", default="", help="Description of the data for the card.")
@click.option(
    "--export",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the best model as .safetensors here.",
)
@_with_filters
def train(
    data,
    out_dir,
    bands,
    epochs,
    batch_size,
    lr,
    width,
    crop,
    window_size,
    flips,
    rotations,
    nodata_edges,
    missing_bands,
    seed,
    class_weights,
    max_steps,
    log_every,
    resume,
    init,
    device,
    threads,
    amp,
    name,
    training_data,
    export,
    label_type,
    bbox,
    region,
    cloud_cover,
    level,
) -> None:
    """Train a U-Net; writes checkpoints, metrics log, curve and sample predictions."""
    from training.augment import Augment
    from training.loop import TrainConfig
    from training.loop import train as run_train

    cfg = TrainConfig(
        data=data,
        out_dir=out_dir,
        bands=bands,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        width=width,
        crop=crop,
        window_size=window_size,
        aug=Augment(flips=flips, rotations=rotations, nodata=nodata_edges, missing_bands=missing_bands),
        seed=seed,
        class_weights=_floats(class_weights),
        max_steps=max_steps,
        log_every=log_every,
        resume=resume,
        init=init,
        device=device,
        threads=threads,
        amp=amp,
        name=name,
        training_data=training_data,
        command=" ".join(shlex.quote(a) for a in ["s2mask", "train", *sys.argv[2:]])
        if len(sys.argv) > 1
        else "",
        filters=_taco_filter(label_type, bbox, region, cloud_cover, level),
    )

    def go():
        res = run_train(cfg)
        click.echo(f"best checkpoint: {res.best_checkpoint}\nfinal weights: {res.final_weights}")
        if res.test:
            click.echo(
                f"test: accuracy {res.test['accuracy']} macro F1 {res.test['macro_f1']} "
                f"macro IoU {res.test['macro_iou']}"
            )
        if export:
            from training.export import export_weights

            click.echo(f"exported: {export_weights(res.best_checkpoint, export)}")

    _run(go)


@train_cli.command("make-synthetic")
@click.option("--shared-data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--train", "n_train", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--validation", "n_val", type=click.IntRange(1), default=200, show_default=True)
@click.option("--test", "n_test", type=click.IntRange(0), default=200, show_default=True)
@click.option("--size", type=click.IntRange(32), default=128, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--teacher",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Teacher dataset (make-teacher) whose real clouds are pasted onto the backgrounds.",
)
def make_synthetic(shared_data, out_dir, n_train, n_val, n_test, size, seed, teacher) -> None:
    """Write a synthetic cloud/shadow dataset over real clear backgrounds (npz shards)."""
    from training.synthetic import SyntheticConfig, write_synthetic_dataset

    counts = {"train": n_train, "validation": n_val, **({"test": n_test} if n_test else {})}
    _run(
        lambda: click.echo(
            write_synthetic_dataset(
                out_dir,
                shared_data,
                counts=counts,
                seed=seed,
                cfg=SyntheticConfig(size=size),
                progress=True,
                teacher=teacher,
            )
        )
    )


@train_cli.command("make-teacher")
@click.option("--shared-data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option(
    "--tta", type=click.IntRange(1, 8), default=8, show_default=True, help="Flips/rotations averaged."
)
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True, help="onnxruntime threads.")
def make_teacher(shared_data, out_dir, tta, threads) -> None:
    """Label the real scenes of SHARED_DATA with ukis-csmask (needs the `teacher` extra)."""
    from training.teacher import build_teacher_dataset

    _run(
        lambda: click.echo(
            build_teacher_dataset(shared_data, out_dir, tta=tta, threads=threads, progress=True)
        )
    )


@train_cli.command()
@click.option("--weights", required=True, help="Shipped model name, .safetensors or checkpoint.")
@click.option("--data", required=True, help="Labelled dataset (taco, GeoTIFF pairs or shards).")
@click.option(
    "--split", type=click.Choice(["train", "validation", "test"]), default="test", show_default=True
)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write metrics here.")
@click.option("--device", default="auto", show_default=True)
@click.option("--limit", type=click.IntRange(1), default=None, help="Evaluate only the first N samples.")
@_with_filters
def evaluate(
    weights, data, split, json_out, device, limit, label_type, bbox, region, cloud_cover, level
) -> None:
    """Pixel accuracy, macro F1 / IoU, per-class IoU and confusion matrix of WEIGHTS on DATA."""
    from training.evaluate import evaluate as run_eval
    from training.evaluate import write_json
    from training.metrics import format_table

    def go():
        m = run_eval(
            weights,
            data,
            split=split,
            device=device,
            limit=limit,
            filters=_taco_filter(label_type, bbox, region, cloud_cover, level),
        )
        click.echo(format_table(m, list(m.per_class_iou)))
        if json_out:
            write_json(m.to_dict(), json_out)
        else:
            click.echo(json.dumps(m.to_dict()))

    _run(go)


@train_cli.command("evaluate-scenes")
@click.option(
    "--weights",
    required=True,
    multiple=True,
    help="Shipped model name, .safetensors or checkpoint (repeat to compare models).",
)
@click.option("--shared-data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None)
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "int8", "auto"]), default="fp32", show_default=True)
@click.option("--runtime", type=click.Choice(["auto", "torch", "openvino", "onnxruntime"]), default="auto",
              show_default=True, help="Where the model runs (int8 needs openvino or onnxruntime).")
@click.option("--peer/--no-peer", default=True, show_default=True, help="ukis-csmask on the same arrays.")
def evaluate_scenes(weights, shared_data, json_out, device, precision, runtime, peer) -> None:
    """Accuracy on every real labelled scene here (ukis mask, Sen2Cor SCL, s2cloudless mask), beside ukis-csmask.

    Prints the JSON, then a markdown table (the README's)."""
    from s2mask.model import load_model
    from training.evaluate import write_json
    from training.real_scenes import evaluate_real_scenes, format_scene_table

    def go():
        res = {}
        for i, w in enumerate(weights):
            model = load_model(w, device=device, precision=precision, runtime=runtime)
            res[w] = evaluate_real_scenes(model, shared_data, peer=peer and i == 0)
        out = res[weights[0]] if len(weights) == 1 else res
        click.echo(json.dumps(out, indent=2))
        click.echo(format_scene_table(res))
        if json_out:
            write_json(out, json_out)

    _run(go)


@train_cli.command("quantize")
@click.option("--weights", required=True, help="Shipped model name or .safetensors file.")
@click.option("--shared-data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Real scenes to calibrate on (../shared/data; scoring scenes are never used).")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Output .onnx (default: <weights stem>.int8.onnx beside the weights).")
@click.option("--tiles-per-scene", type=click.IntRange(1), default=2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def quantize(weights, shared_data, out_path, tiles_per_scene, seed) -> None:
    """Write the int8 model of WEIGHTS (static quantization calibrated on real scenes; training/quantize.py)."""
    from training.quantize import quantize_weights

    def go():
        path, calibration = quantize_weights(
            weights, shared_data, out=out_path, tiles_per_scene=tiles_per_scene, seed=seed
        )
        click.echo(json.dumps(calibration, indent=2))
        click.echo(f"wrote {path}")

    _run(go)


@train_cli.command("compare-bands")
@click.option("--data", required=True, help="Labelled dataset (taco, GeoTIFF pairs or shards).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option(
    "--sets",
    default="rgb;rgbn;s2-9",
    show_default=True,
    help="Band sets separated by ';' (presets or comma lists).",
)
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True)
@click.option("--width", type=click.IntRange(2), default=16, show_default=True)
@click.option("--crop", type=click.IntRange(16), default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-steps", type=click.IntRange(1), default=None)
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None)
@_with_filters
def compare_bands(
    data,
    out_dir,
    sets,
    epochs,
    batch_size,
    lr,
    width,
    crop,
    seed,
    max_steps,
    device,
    threads,
    label_type,
    bbox,
    region,
    cloud_cover,
    level,
) -> None:
    """Train one model per band set with identical settings; print the seed-style comparison table."""
    from training.compare import compare_bands as run_compare
    from training.compare import format_comparison
    from training.loop import TrainConfig

    base = TrainConfig(
        data=data,
        out_dir=out_dir,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        width=width,
        crop=crop,
        seed=seed,
        max_steps=max_steps,
        device=device,
        threads=threads,
        filters=_taco_filter(label_type, bbox, region, cloud_cover, level),
        log_every=0,
    )
    band_sets = tuple(s.strip() for s in sets.split(";") if s.strip())
    _run(lambda: click.echo(format_comparison(run_compare(base, band_sets))))


@train_cli.command("calibrate")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", required=True, help="Datasets whose validation split calibrates (as for train).")
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Calibrated checkpoint."
)
def calibrate(checkpoint, data, out_path) -> None:
    """Fit one shadow-logit offset on the validation split and fold it into the weights."""
    from training.calibrate import calibrate_shadow

    def go():
        res = calibrate_shadow(checkpoint, data, out_path)
        for s in res["sweep"]:
            click.echo(
                f"offset {s['offset']:+.2f}: macro IoU {s['macro_iou']:.4f} shadow IoU {s['shadow_iou']:.3f} "
                f"shadow area {s['area']:.2f}"
            )
        click.echo(f"chosen offset {res['shadow_logit_offset']:+.2f} -> {out_path}")

    _run(go)


@train_cli.command("export")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out", "out_path", required=True, type=click.Path(dir_okay=False), help="Target .safetensors."
)
@click.option(
    "--shared-data",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Measure the real labelled scenes here and write the figures into the card.",
)
@click.option("--command", "command", default=None, help="The command that produced the checkpoint (card).")
@click.option(
    "--test-metrics", type=click.Path(dir_okay=False), default=None, help="The run's test_metrics.json."
)
@click.option("--note", default="", help="Free text added to the card's metrics.")
def export(checkpoint, out_path, shared_data, command, test_metrics, note) -> None:
    """Write a checkpoint as a .safetensors model (optionally measured on the real scenes)."""
    from training.export import export_weights, ship_model

    def go():
        if shared_data:
            path, metrics = ship_model(
                checkpoint,
                out_path,
                shared_data=shared_data,
                command=command or "",
                test_metrics=test_metrics,
                note=note,
            )
            click.echo(json.dumps(metrics["real_scenes"], indent=2))
        else:
            path = export_weights(checkpoint, out_path, **({"command": command} if command else {}))
        click.echo(f"wrote {path}")

    _run(go)
