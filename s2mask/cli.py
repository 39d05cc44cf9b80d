"""The ``s2mask`` command line: a thin click shell over the public API.

Heavy imports happen inside commands so ``s2mask --help`` is instant.  Every
:class:`~s2mask.errors.S2MaskError` becomes one line on stderr and exit code 1;
usage errors exit with 2; ``--debug`` shows the traceback.  Environment
variables (``DASK_SCHEDULER_ADDRESS``) are read here and nowhere else.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from pathlib import Path

import click

from s2mask import __version__
from s2mask.errors import S2MaskError

DEBUG = {"on": False}
SIGTERM_EXIT = 143
"""Exit code after SIGTERM (128 + 15, as shells report it)."""

OPTIONAL_MODULES = {
    "tacoreader": "train",
    "duckdb": "train",
    "matplotlib": "train",
    "ukis_csmask": "teacher",
    "planetary_computer": "pc",
    "onnx": "onnx",
    "onnxruntime": "onnx",
}
"""Modules of the optional extras (pyproject.toml) -> the extra that installs them."""


class LazyGroup(click.Group):
    """A group whose subcommands from other modules are imported only when used."""

    lazy = {
        "train": "training.cli:train",
        "evaluate": "training.cli:evaluate",
        "compare-bands": "training.cli:compare_bands",
        "make-synthetic": "training.cli:make_synthetic",
        "evaluate-scenes": "training.cli:evaluate_scenes",
        "export-model": "training.cli:export",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


class ResolutionType(click.ParamType):
    name = "10|20|60"

    def convert(self, value, param, ctx):  # noqa: ANN001
        try:
            res = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a resolution; use 10, 20 or 60 (metres).", param, ctx)
        if res not in (10, 20, 60):
            self.fail(f"{res} m is not a Sentinel-2 grid; use 10, 20 or 60.", param, ctx)
        return res


class BoundsType(click.ParamType):
    """``minx,miny,maxx,maxy`` with min < max, as a tuple of four floats."""

    name = "MINX,MINY,MAXX,MAXY"

    def convert(self, value, param, ctx):  # noqa: ANN001
        if isinstance(value, tuple):
            return value
        try:
            box = tuple(float(v) for v in str(value).split(","))
        except ValueError:
            box = ()
        if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
            self.fail(f"{value!r} is not minx,miny,maxx,maxy with min < max.", param, ctx)
        return box


class BandsType(click.ParamType):
    name = "BANDS"

    def convert(self, value, param, ctx):  # noqa: ANN001
        from s2mask.bands import resolve_bands

        if isinstance(value, tuple):
            return value
        try:
            return resolve_bands(value)
        except S2MaskError as exc:
            self.fail(str(exc), param, ctx)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="s2mask")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
def cli(debug: bool) -> None:
    """Cloud and cloud-shadow masks and cloud-free composites for Sentinel-2."""
    DEBUG["on"] = debug
    # a failed remote read is reported once, as a RemoteReadError naming the URL and status;
    # odc-stac would also log each failed attempt to stderr
    logging.getLogger("odc.loader").addHandler(logging.NullHandler())


def _keep_in_meta(ctx: click.Context, param: click.Parameter, value: str) -> str:
    ctx.meta[f"s2mask.{param.name}"] = value
    return value


def model_options(f):  # noqa: ANN001, ANN201
    """Options shared by commands that run the model."""
    options = [
        click.option("--model", "model_name", default="s2-9", show_default=True,
                     help="Shipped model name (s2-9, rgbn)."),
        click.option("--weights", type=click.Path(dir_okay=False), default=None,
                     help="A weights file (.safetensors, a training checkpoint, or an int8 .onnx); overrides --model."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto",
                     show_default=True, help="Compute device; auto picks CUDA, then MPS, then CPU."),
        click.option("--threads", type=click.IntRange(1, 256), default=None,
                     help="Model threads per process (default: all available cores)."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "int8"]), default="auto",
                     show_default=True, expose_value=False, callback=_keep_in_meta,
                     help="auto: int8 (the calibrated int8 model on OpenVINO or ONNX Runtime) on CPUs with "
                          "int8 units (VNNI, AMX) when a runtime is installed, else bf16 on CPUs with bf16 "
                          "units, else fp32. Local runs; cluster workers use auto."),
        click.option("--runtime", type=click.Choice(["auto", "torch", "openvino", "onnxruntime"]), default="auto",
                     show_default=True, expose_value=False, callback=_keep_in_meta,
                     help="Where the model runs: torch (fp32/bf16, any device) or an ONNX runtime (int8, CPU)."),
        click.option("--window", type=click.IntRange(32, 4096), default=None,
                     help="Window size in px (default: the model card's)."),
        click.option("--overlap", type=click.IntRange(0, 2048), default=None, help="Window overlap in px."),
        click.option("--batch-size", type=click.IntRange(1, 1024), default=4, show_default=True,
                     help="Windows per model call."),
        click.option("--chunks", type=click.IntRange(256, 16384), default=1024, show_default=True,
                     help="Dask chunk size in px (bounds memory)."),
        click.option("--resolution", type=ResolutionType(), default=None,
                     help="Output grid in metres (default: 10 for SAFE and STAC, a GeoTIFF's own pixel size)."),
        click.option("--scheduler", default=None, envvar="DASK_SCHEDULER_ADDRESS",
                     help="Address of a dask.distributed scheduler to run on (or DASK_SCHEDULER_ADDRESS)."),
        click.option("--workers", type=click.IntRange(1, 512), default=None,
                     help="Start a local Dask cluster with this many worker processes."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
        click.option("--overwrite", is_flag=True, help="Replace existing outputs."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


resampling_option = click.option(
    "--resampling", type=click.Choice(["nearest", "bilinear"]), default="nearest", show_default=True,
    help="How 20/60 m bands reach the grid.",
)  # fmt: skip


def input_options(f):  # noqa: ANN001, ANN201
    """Options that describe the input products: the same names and meaning in every command that reads them.

    Each fills the field of the same name of :class:`s2mask.options.InputOptions` (``--bands``: ``input_bands``).
    """
    options = [
        click.option("--bands", "input_bands", type=BandsType(), default=None,
                     help="Band names of GeoTIFF inputs in file order (e.g. B02,B03,B04,B08), when the files "
                          "lack them."),
        click.option("--scale", type=float, default=None, help="GeoTIFF input: reflectance = DN*scale + offset (1e-4)."),
        click.option("--offset", type=float, default=None, help="GeoTIFF input offset (0)."),
        resampling_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _shared_options() -> dict:
    """The input and model options of this command, by field name (:mod:`s2mask.options`), as parsed."""
    from dataclasses import fields

    from s2mask.options import EngineOptions, InputOptions

    params = click.get_current_context().params
    return {f.name: params[f.name] for f in (*fields(InputOptions), *fields(EngineOptions)) if f.name in params}


def _load_model(model_name: str, weights: str | None, device: str, threads: int | None):  # noqa: ANN202
    from s2mask.model import load_model
    from s2mask.model.device import cpu_count

    meta = click.get_current_context().meta
    return load_model(
        weights or model_name,
        device=device,
        precision=meta.get("s2mask.precision", "auto"),
        runtime=meta.get("s2mask.runtime", "auto"),
        threads=threads or cpu_count(),
    )


def _model_where_it_runs(model_name: str, weights: str | None, device: str, threads: int | None,
                         scheduler: str | None, workers: int | None, *, load: bool = True):  # noqa: ANN202
    """The model for this command: loaded here, or on a dask cluster a reference each worker resolves.

    A cluster (``--scheduler``/``--workers``) is closed when the command ends; a local run gets dask's
    threaded scheduler for the command (as a function: a name still makes dask import distributed,
    0.2 s of start-up, to look for a client).
    """
    ctx = click.get_current_context()
    model = _load_model(model_name, weights, device, threads) if load else None
    if not scheduler and not workers:
        import dask
        import dask.threaded

        ctx.with_resource(dask.config.set(scheduler=dask.threaded.get))
        return model
    from s2mask.engine.cluster import ModelRef, connect

    client = connect(scheduler=scheduler, workers=workers, weights=weights or model_name, device=device,
                     threads=threads)
    ctx.call_on_close(client.close)
    return ModelRef(weights or model_name, device) if load else None  # loaded once per worker by the plugin


@cli.command()
@click.argument("products", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Mask path (one product) or output folder (several products).")
@model_options
@input_options
@click.option("--probabilities", is_flag=True, help="Also write per-class probabilities (uint8 0-100).")
@click.option("--no-quicklook", is_flag=True, help="Skip the quick-look PNG.")
@click.option("--no-stac-item", is_flag=True,
              help="Skip the STAC Item (<mask>.stac.json) and, for several products, index.geojson.")
@click.option("--resume", is_flag=True, help="Skip products whose mask already exists and validates.")
@click.option("--debug", is_flag=True, expose_value=False, callback=lambda ctx, p, v: _set_debug(v),
              help="Show the full traceback on errors (same as s2mask --debug).")
def run(products, output, model_name, weights, device, threads, window, overlap, batch_size, chunks, resolution,
        scheduler, workers, quiet, overwrite, input_bands, scale, offset, resampling, probabilities, no_quicklook,
        no_stac_item, resume) -> None:  # noqa: ANN001
    """Mask clouds and shadows in PRODUCTS (.SAFE folders, zipped .SAFE, GeoTIFF) into COGs.

    \b
    s2mask run S2B_MSIL2A_...SAFE -o mask.tif
    s2mask run data/*.SAFE -o masks/ --resume
    """
    from s2mask.run import RunOptions, check_run, mask_is_valid, run_many, run_product

    single = len(products) == 1 and output.suffix.lower() in {".tif", ".tiff"}
    if len(products) > 1 and output.suffix.lower() in {".tif", ".tiff"}:
        raise click.UsageError(
            f"{len(products)} products were given but -o {output} is a single .tif; several products "
            "need an output folder (-o masks/), where each mask is named after its product."
        )
    if single and resume and mask_is_valid(output):
        click.echo(f"skipped (exists and is valid): {output}")
        return
    overwrite = overwrite or resume  # --resume redoes an absent or invalid mask in place
    options = RunOptions(**_shared_options(), probabilities=probabilities, quicklook=not no_quicklook,
                         stac_item=not no_stac_item, overwrite=overwrite, progress=not quiet)
    if single:
        check_run(products[0], output, options)  # fail in a blink, before torch is even imported
    model = _model_where_it_runs(model_name, weights, device, threads, scheduler, workers)
    if single:
        _echo_result(run_product(products[0], output, model=model, options=options), quiet)
        return
    report = run_many(products, output, model=model, options=options, resume=resume, on_error=_report_failure)
    for result in report.done:
        _echo_result(result, quiet)
    for path in report.skipped:
        click.echo(f"skipped (exists and is valid): {path}")
    if report.index:
        click.echo(f"index: {report.index}")
    if report.failed:
        click.echo(f"{len(report.failed)} of {len(products)} products failed:", err=True)
        for product, reason in report.failed:
            click.echo(f"  {product}: {reason}", err=True)
        sys.exit(1)


@cli.command()
@click.option("--bbox", required=True, help="Area as W,S,E,N in degrees (EPSG:4326).")
@click.option("--date", "date", required=True, help="Date or range: 2024-06-01/2024-06-30, 2024-06, 2024-06-01/..")
@click.option("--collection", default="sentinel-2-l2a", show_default=True, help="STAC collection id.")
@click.option("--url", default=None, help="STAC API URL (default: Earth Search; the Planetary Computer has a preset).")
@click.option("--max-cloud", type=click.FloatRange(0, 100), default=None, help="Keep items with eo:cloud_cover <= this.")
@click.option("--limit", type=click.IntRange(1, 100000), default=None, help="Process at most N items.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: one <item id>_mask.tif (+ .json, .png, .stac.json) per item and index.geojson.")
@click.option("--whole-tile", is_flag=True, help="Mask whole tiles instead of cropping to the bbox.")
@resampling_option
@click.option("--dry-run", is_flag=True, help="Search and list what would be processed; write nothing.")
@click.option("--resume", is_flag=True, help="Skip items whose mask already exists and validates.")
@click.option("--no-stac-item", is_flag=True,
              help="Skip each mask's STAC Item (<mask>.stac.json); index.geojson is still written.")
@click.option("--allow-scheme", "schemes", multiple=True, default=("http", "https", "s3", "file"), show_default=True,
              help="URL schemes asset hrefs may use (repeat the option).")
@click.option("--timeout", type=click.FloatRange(0.1, 3600), default=30, show_default=True,
              help="Seconds per HTTP request (the search and every read of an asset).")
@click.option("--retries", type=click.IntRange(0, 20), default=3, show_default=True,
              help="Retries on timeouts, dropped connections and 429/5xx answers, with backoff (search and reads).")
@model_options
def stac(bbox, date, collection, url, max_cloud, limit, output, whole_tile, resampling, dry_run, resume,
         no_stac_item, schemes, timeout, retries, model_name, weights, device, threads, window, overlap, batch_size, chunks, resolution,
         scheduler, workers, quiet, overwrite) -> None:  # noqa: ANN001
    """Search a STAC API by place and date and write one mask COG per scene.

    \b
    s2mask stac --bbox 11.0,46.0,11.3,46.2 --date 2024-06-01/2024-06-30 --max-cloud 60 -o masks/
    """
    from s2mask.io.stac import EARTH_SEARCH_URL
    from s2mask.params import parse_bbox, parse_date_range
    from s2mask.run import RunOptions
    from s2mask.stac import describe_plan, run_stac

    try:
        box, dates = parse_bbox(bbox), parse_date_range(date)
    except S2MaskError as exc:
        raise click.BadParameter(str(exc)) from exc
    options = RunOptions(**_shared_options(), stac_item=not no_stac_item, overwrite=overwrite, progress=not quiet)
    model = _model_where_it_runs(model_name, weights, device, threads, scheduler, workers)
    result = run_stac(url=url or EARTH_SEARCH_URL, collection=collection, bbox=box, date=dates, out_dir=output,
                      model=model, options=options, max_cloud=max_cloud, limit=limit, dry_run=dry_run,
                      crop=not whole_tile, resume=resume, allowed_schemes=schemes, timeout=timeout, retries=retries,
                      on_item=None if quiet else _echo_item)
    if dry_run:
        click.echo(describe_plan(result))
        return
    for out in result.outputs:
        fr = out.fractions
        click.echo(f"{out.status:8s} {out.mask}  cloud {fr.get('cloud') or 0:.1%}  shadow {fr.get('shadow') or 0:.1%}")
    if result.index:
        click.echo(f"index: {result.index}")
    if result.failures:
        click.echo(f"{len(result.failures)} items failed:", err=True)
        for failure in result.failures:
            click.echo(f"  {failure.item_id}: {failure.error}", err=True)
        sys.exit(1)


@cli.command()
@click.argument("products", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Composite COG path (a quick-look PNG is written beside it).")
@click.option("--method", type=click.Choice(["median", "mean", "percentile", "best-pixel", "medoid", "geomedian", "first"]),
              default="median", show_default=True,
              help="How clear observations are combined: per-band statistics (median, mean, percentile), one real "
                   "observation (best-pixel: lowest cloud probability; medoid: closest to the median; first: first "
                   "clear in --order), or the multivariate geometric median (geomedian).")
@click.option("--percentile", type=click.FloatRange(0, 100), default=None,
              help="With --method percentile: q, e.g. 25 for a dark-biased composite.")
@click.option("--order", type=click.Choice(["input", "least-cloudy", "oldest", "newest", "target-date"]), default=None,
              help="Scene order: first takes the first clear scene in it, --max-observations counts in it "
                   "[default: input; target-date with --target-date].")
@click.option("--min-observations", type=click.IntRange(1, 10000), default=1, show_default=True,
              help="Pixels with fewer clear observations are nodata.")
@click.option("--max-observations", type=click.IntRange(1, 10000), default=None,
              help="Use at most N clear observations per pixel (in --order); blocks stop reading scenes once complete.")
@click.option("--mask", "masks", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Existing s2mask mask COG for each product, in the same order (repeat); else masks are computed.")
@click.option("--buffer", type=click.IntRange(0, 100), default=0, show_default=True,
              help="Grow cloud and shadow by N pixels before compositing.")
@click.option("--target-date", default=None,
              help="Scenes closest to this date first (--order target-date): first picks by it, best-pixel ties too.")
@click.option("--output-bands", "out_bands", type=BandsType(), default="s2-9", show_default=True,
              help="Output bands (preset or list); must include B04,B03,B02 for the quick-look.")
@click.option("--crs", default=None, help="Output CRS (default: the first product's), e.g. EPSG:32633.")
@click.option("--grid-resolution", type=float, default=None, help="Output pixel size in CRS units.")
@click.option("--grid-bbox", type=BoundsType(), default=None,
              help="Output bounds minx,miny,maxx,maxy in the output CRS.")
@click.option("--stac-bbox", default=None, help="Instead of PRODUCTS: search STAC over W,S,E,N (degrees).")
@click.option("--date", default=None, help="With --stac-bbox: date range, e.g. 2024-06-01/2024-08-31.")
@click.option("--collection", default="sentinel-2-l2a", show_default=True, help="With --stac-bbox: collection.")
@click.option("--url", default=None, help="With --stac-bbox: STAC API URL (default: Earth Search).")
@click.option("--max-cloud", type=click.FloatRange(0, 100), default=None, help="With --stac-bbox: max eo:cloud_cover.")
@click.option("--limit", type=click.IntRange(1, 100000), default=None, help="With --stac-bbox: at most N items.")
@model_options
@input_options
def composite(products, output, method, percentile, order, min_observations, max_observations, masks, buffer,
              target_date, out_bands, crs, grid_resolution, grid_bbox, stac_bbox, date, collection, url, max_cloud, limit, model_name, weights, device, threads, window,
              overlap, batch_size, chunks, resolution, scheduler, workers, quiet, overwrite, input_bands, scale, offset,
              resampling) -> None:  # noqa: ANN001
    """Build a cloud-free composite from PRODUCTS (or a STAC search) into one COG.

    \b
    s2mask composite a.SAFE b.SAFE c.SAFE -o composite.tif --method median --buffer 3
    s2mask composite *.SAFE -o p25.tif --method percentile --percentile 25 --min-observations 3
    s2mask composite *.SAFE -o first.tif --method first --order least-cloudy --max-observations 1
    s2mask composite --stac-bbox 11.0,46.0,11.3,46.2 --date 2024-06-01/2024-08-31 -o summer.tif
    """
    from s2mask.composite import CompositeOptions, composite_products, composite_stac

    if bool(products) == bool(stac_bbox):
        raise click.UsageError("Give either PRODUCTS or --stac-bbox with --date, not both and not neither.")
    if stac_bbox and not date:
        raise click.UsageError("--stac-bbox needs --date (e.g. 2024-06-01/2024-08-31).")
    if masks and len(masks) != len(products):
        raise click.BadParameter(f"{len(masks)} --mask files for {len(products)} products; give one per product.",
                                 param_hint="--mask")
    if (method == "percentile") != (percentile is not None):
        raise click.BadParameter("--percentile Q goes with --method percentile (and only with it).",
                                 param_hint="--percentile")
    if max_observations is not None and max_observations < min_observations:
        raise click.BadParameter(f"--max-observations {max_observations} is below --min-observations "
                                 f"{min_observations}; no pixel could be valid.", param_hint="--max-observations")
    options = CompositeOptions(**{**_shared_options(), "chunks": min(chunks, 1024)}, method=method,
                               percentile=percentile, buffer=buffer, order=order, target_date=target_date,
                               min_observations=min_observations, max_observations=max_observations, bands=out_bands,
                               crs=crs, grid_resolution=grid_resolution, bbox=grid_bbox, overwrite=overwrite,
                               progress=not quiet)
    model = _model_where_it_runs(model_name, weights, device, threads, scheduler, workers, load=not masks)
    if stac_bbox:
        from s2mask.io.stac import EARTH_SEARCH_URL

        result = composite_stac(url=url or EARTH_SEARCH_URL, collection=collection, bbox=stac_bbox, date=date,
                                out=output, model=model, max_cloud=max_cloud, limit=limit, options=options)
    else:
        result = composite_products(products, output, masks=list(masks) or None, model=model, options=options)
    click.echo(f"{result.cog}  ({len(result.scenes)} scenes, {result.seconds:.1f} s)")
    if result.quicklook:
        click.echo(f"{result.quicklook}")


def _echo_result(result, quiet: bool) -> None:  # noqa: ANN001
    fr = result.summary.get("fractions", {})
    line = f"{result.mask}"
    if fr:
        line += "  " + "  ".join(f"{k} {'n/a' if v is None else format(v, '.1%')}" for k, v in fr.items())
    click.echo(line)


def _echo_item(n: int, total: int, item_id: str) -> None:
    click.echo(f"[{n}/{total}] {item_id}", err=True)


def _set_debug(value: bool) -> None:
    if value:
        DEBUG["on"] = True


def _report_failure(product: str, exc: Exception) -> None:
    """A batch product failed: one line now (and its traceback with --debug); the run goes on."""
    if DEBUG["on"]:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    click.echo(f"failed: {product}: {exc}", err=True)


def main() -> None:
    """Console entry point: an S2MaskError becomes one line and its ``exit_code`` (1, or 2 for invalid parameters)."""
    # GDAL's block cache defaults to 5 % of RAM per process; a fixed one keeps peak memory bounded
    # whatever the machine. 512 MB holds the JPEG 2000 tiles a strip of blocks and its halos need,
    # so each tile is decoded once: a full SAFE tile took 224 CPU-s instead of 353 at 128 MB, at
    # 1.29 GiB peak instead of 0.84 (BENCHMARKS.md). Users may still set their own.
    os.environ.setdefault("GDAL_CACHEMAX", "512")
    # inputs without georeferencing get a clear S2MaskError; rasterio's own warning would only add noise
    warnings.filterwarnings("ignore", message="Dataset has no geotransform")
    from s2mask._atomic import sigterm_as_exit

    try:
        with sigterm_as_exit(SIGTERM_EXIT):  # kill / batch schedulers: unwind so temporary files are removed
            cli.main(standalone_mode=False)
    except SystemExit as exc:
        if exc.code == SIGTERM_EXIT:
            click.echo("Terminated; no partial output was left.", err=True)
        raise
    except click.exceptions.Abort:  # click turns Ctrl-C (KeyboardInterrupt) into Abort
        click.echo("Interrupted; no partial output was left.", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except S2MaskError as exc:
        if DEBUG["on"]:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        click.echo(f"Error: {message}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted; no partial output was left.", err=True)
        sys.exit(130)
    except ModuleNotFoundError as exc:
        extra = OPTIONAL_MODULES.get((exc.name or "").split(".")[0])
        if extra is None or DEBUG["on"]:
            raise
        click.echo(f"Error: this command needs {exc.name}, which is not installed; expected the '{extra}' extra. "
                   f"Install it with: pip install 's2mask[{extra}]'", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
