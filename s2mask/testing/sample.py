"""Build the demo product from real imagery: ``python -m s2mask.testing.sample OUTDIR``.

The s2cloudless 1.2.1 source distribution on PyPI (CC-BY-SA-4.0) carries a real
13-band Level-1C scene (``s2cloudless/TestInputs/input_arrays.npz``, key ``s2_im``,
shape ``(1, 856, 512, 13)`` top-of-atmosphere reflectance, a river delta with cumulus and
shadows).  This module downloads that sdist with pip (cached in ``OUTDIR/.cache``),
extracts that one member, crops the scene to a multiple of 6 px, attaches a UTM grid
(the scene's real location is not recorded) and writes it as an L1C SAFE product with
processing baseline 02.08 at ``OUTDIR/<SAMPLE_NAME>.SAFE``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

from s2mask.bands import BAND_NAMES
from s2mask.errors import CorruptDataError, ProductNotFoundError, S2MaskError
from s2mask.testing.products import DEFAULT_TRANSFORM, write_safe

__all__ = [
    "SAMPLE_NAME",
    "SDIST",
    "MEMBER",
    "build_sample",
    "fetch_scene",
    "extract_member",
    "load_scene",
    "main",
]

SAMPLE_NAME = "S2B_MSIL1C_20200101T000000_N0208_R000_T00XXX_20200101T000000"
"""Product name of the demo product (the Makefile relies on it)."""
SDIST = "s2cloudless==1.2.1"
"""The PyPI source distribution that carries the real scene."""
MEMBER = "s2cloudless/TestInputs/input_arrays.npz"
"""Path of the scene inside the sdist (below its top folder)."""
SAMPLE_CRS = "EPSG:32631"


def extract_member(archive: str | os.PathLike[str], member: str, dest: str | os.PathLike[str]) -> Path:
    """Copy the one regular file of ``archive`` (a ``.tar.gz``) whose path ends with ``member`` to ``dest``.

    Nothing else is extracted, links and absolute or ``..`` paths are refused, and ``dest``
    appears complete or not at all.
    """
    dest = Path(dest)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for info in tar:
                parts = PurePosixPath(info.name).parts
                if not info.name.endswith(member) or not info.isreg():
                    continue
                if info.name.startswith("/") or ".." in parts:
                    raise CorruptDataError(
                        f"{archive} holds an unsafe path {info.name!r}; refusing to extract it."
                    )
                src = tar.extractfile(info)
                if src is None:  # pragma: no cover - isreg() members always have data
                    continue
                tmp = dest.with_name(f".{dest.name}.tmp")
                with src, open(tmp, "wb") as out:
                    out.write(src.read())
                os.replace(tmp, dest)
                return dest
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CorruptDataError(
            f"Cannot read {archive} ({exc}); delete it and run again to download it anew."
        ) from exc
    raise CorruptDataError(f"{archive} has no file {member}; expected the {SDIST} source distribution.")


def fetch_scene(cache_dir: str | os.PathLike[str]) -> Path:
    """The real scene's ``.npz`` in ``cache_dir``, downloading the sdist with pip on first use."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    npz = cache / "s2cloudless_input_arrays.npz"
    if npz.is_file():
        return npz
    archives = sorted(cache.glob("s2cloudless-1.2.1.tar.gz"))
    if not archives:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            SDIST,
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            str(cache),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        archives = sorted(cache.glob("s2cloudless-1.2.1.tar.gz"))
        if proc.returncode != 0 or not archives:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ProductNotFoundError(
                f"Could not download {SDIST} from PyPI to get the demo scene (pip said: {' | '.join(tail)}). "
                "Check access to PyPI, or pass a local copy of input_arrays.npz with --npz."
            )
    return extract_member(archives[0], MEMBER, npz)


def load_scene(npz: str | os.PathLike[str]) -> np.ndarray:
    """The scene as ``(13, H, W)`` float32 reflectance, cropped to multiples of 6 px."""
    try:
        with np.load(npz) as data:
            im = np.asarray(data["s2_im"], dtype=np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise CorruptDataError(
            f"Cannot read the demo scene from {npz} ({exc}); expected an .npz with key 's2_im'. "
            "Delete it and run again to download it anew."
        ) from exc
    if im.ndim != 4 or im.shape[-1] != len(BAND_NAMES):
        raise CorruptDataError(f"{npz}: s2_im has shape {im.shape}; expected (1, H, W, 13).")
    h, w = im.shape[1] - im.shape[1] % 6, im.shape[2] - im.shape[2] % 6
    return np.ascontiguousarray(im[0, :h, :w].transpose(2, 0, 1))


def build_sample(
    out_dir: str | os.PathLike[str],
    *,
    source_npz: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the demo L1C product to ``out_dir/SAMPLE_NAME.SAFE`` and return its path.

    ``source_npz`` is a local copy of the scene (skips the download).  An existing
    product is returned as it is unless ``overwrite``.
    """
    out_dir = Path(out_dir)
    target = out_dir / f"{SAMPLE_NAME}.SAFE"
    if target.exists() and not overwrite:
        return target
    npz = Path(source_npz) if source_npz is not None else fetch_scene(out_dir / ".cache")
    if not npz.is_file():
        raise ProductNotFoundError(f"The demo scene {npz} does not exist; check the --npz path.")
    refl = load_scene(npz)
    nodata = ~np.isfinite(refl).all(axis=0) | (refl == 0).all(axis=0)
    return write_safe(
        out_dir,
        refl,
        level="L1C",
        baseline="02.08",
        crs=SAMPLE_CRS,
        transform=DEFAULT_TRANSFORM,
        nodata_mask=nodata,
        product_id=SAMPLE_NAME,
        tile_id="T00XXX",
        overwrite=overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: build the demo product and print its path."""
    parser = argparse.ArgumentParser(
        prog="python -m s2mask.testing.sample", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("outdir", help="folder to write the .SAFE product into")
    parser.add_argument(
        "--npz", help="local copy of s2cloudless TestInputs/input_arrays.npz (skips the download)"
    )
    parser.add_argument("--overwrite", action="store_true", help="rebuild the product when it exists")
    args = parser.parse_args(argv)
    try:
        path = build_sample(args.outdir, source_npz=args.npz, overwrite=args.overwrite)
    except S2MaskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
