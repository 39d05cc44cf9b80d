"""Does the pipeline's memory follow the graph rather than the model? A model that only sleeps.

    python benchmarks/readahead_memory.py /tmp/s2mask-bench/s2_l1c_5490.tif --chunks 2048
    python benchmarks/readahead_memory.py /tmp/s2mask-bench/s2_l1c_5490.tif --chunks 2048 --num-workers 1

Runs open_product -> predict -> to_mask -> write_cog with a stand-in model that sleeps
``--sleep`` seconds per window and returns "clear" (no arithmetic, little CPU), and prints the
wall time and the peak RSS of the process (psutil sampler).  If peak RSS grows with the scene
here too, the growth comes from how blocks are scheduled and kept, not from the network.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import dask
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_rss import GIB, PeakRSS  # noqa: E402

from s2mask.bands import DEFAULT_BANDS  # noqa: E402


class SleepModel:
    """The engine's model protocol; ``predict_proba`` sleeps and answers "clear" everywhere."""

    bands, num_classes = DEFAULT_BANDS, 3

    def __init__(self, sleep: float) -> None:
        self.sleep = sleep

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        time.sleep(self.sleep * len(batch))
        probs = np.zeros((len(batch), 3, *batch.shape[2:]), np.float32)
        probs[:, 0] = 1.0
        return probs


def main(argv: list[str] | None = None) -> int:
    from s2mask.engine import predict
    from s2mask.io import open_product
    from s2mask.mask import to_mask
    from s2mask.writers import write_cog  # the engine's compute, as s2mask run

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("product")
    p.add_argument("--chunks", type=int, default=2048)
    p.add_argument("--num-workers", type=int, help="dask threads (default: one per CPU)")
    p.add_argument("--sleep", type=float, default=0.02, help="seconds per window")
    args = p.parse_args(argv)
    if args.num_workers:
        dask.config.set(num_workers=args.num_workers)
    cube = open_product(args.product, bands=DEFAULT_BANDS, chunks=args.chunks)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with PeakRSS() as rss:
            write_cog(
                to_mask(predict(cube, SleepModel(args.sleep))),
                Path(tmp) / "m.tif",
                nodata=255,
                progress=False,
            )
    print(
        f"{Path(args.product).name} chunks={args.chunks} num_workers={args.num_workers or 'default'}: "
        f"{time.perf_counter() - t0:.0f} s, peak RSS {rss.peak / GIB:.2f} GiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
