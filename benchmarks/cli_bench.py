"""Wall time, CPU time and peak RSS (whole process tree) of one ``s2mask`` command, as a user runs it.

    python benchmarks/cli_bench.py -- s2mask run /tmp/s2mask-bench/s2_l1c_10980.tif -o /tmp/m.tif --overwrite
    python benchmarks/cli_bench.py --json r.json -- s2mask run tile.tif -o m.tif --workers 2 --overwrite

The command runs in a subprocess; a psutil sampler sums the RSS of it and every descendant
(dask LocalCluster nanny and worker processes included) every 50 ms.  CPU seconds are the
waited-for children's user + system time.  Used for the ``--workers`` and ``--probabilities``
rows of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_rss import GIB, PeakRSS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, help="append the result to this JSON list")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the command to run after --")
    t0 = time.perf_counter()
    with PeakRSS() as mem:
        proc = subprocess.run(command, check=False)
    wall = time.perf_counter() - t0
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "command": command,
        "returncode": proc.returncode,
        "seconds": round(wall, 2),
        "cpu_seconds": round(kids.ru_utime + kids.ru_stime, 1),
        "peak_rss_gib": round(mem.peak / GIB, 3),
        "load": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"{' '.join(command)}\n  exit {proc.returncode}  wall {wall:.1f} s  cpu {result['cpu_seconds']} s  "
        f"peak RSS {mem.peak / GIB:.2f} GiB  load {result['load'][0]}"
    )
    if args.json:
        rows = json.loads(args.json.read_text()) if args.json.exists() else []
        args.json.write_text(json.dumps([*rows, result], indent=2))
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
