"""Pixels over HTTP: ``s2mask stac`` reading COGs from a range-request server on 127.0.0.1.

The items sit in a real STAC API (rustac) and their band assets on :class:`RangeServer`,
which can answer 503, cut a body short, answer 404 for one band, or answer too slowly.
The masks must equal those from ``file://`` assets; transient faults must be survived;
a permanent one fails its item alone, with one line naming the URL and the status.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from s2mask.bands import DEFAULT_BANDS
from s2mask.cli import cli
from s2mask.errors import RemoteReadError
from s2mask.io._remote import RemoteReads, public_url
from s2mask.io.stac import open_stac_item
from tests.range_server import Faults, RangeServer
from tests.stac_server import (
    RustacServer,
    block_internet,  # noqa: F401 - fixture
    rustac_command,
    write_cog,
)
from tests.test_stac_run import make_item

pytestmark = [
    pytest.mark.usefixtures("block_internet"),
    pytest.mark.filterwarnings("ignore:Could not parse bucket:UserWarning"),
]
needs_rustac = pytest.mark.skipif(rustac_command() is None, reason="rustac is not installed")

IDS = ("S2B_T33TWL_20240610_L2A", "S2A_T33TWL_20240615_L2A", "S2A_T33TWL_20240620_L2A")


@pytest.fixture(scope="module")
def scenes(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three items' COGs on disk, their file:// items, and the masks ``s2mask stac`` makes of them."""
    root = tmp_path_factory.mktemp("remote")
    items = [
        make_item(shared_data, root, "c1-l2a", item_id, seed=seed, when=f"2024-06-{day}T10:00:00Z")[0]
        for item_id, seed, day in zip(IDS, (2, 3, 5), (10, 15, 20), strict=True)
    ]
    scenes = {"root": root, "items": items, "bbox": ",".join(map(str, items[0]["bbox"]))}
    with RustacServer(items, root / "api_file") as api:
        result = CliRunner().invoke(cli, stac_args(api.url, scenes["bbox"], root / "from_file"))
    assert result.exit_code == 0, result.output
    scenes["reference"] = {i: read_mask(root / "from_file" / f"{i}_mask.tif") for i in IDS}
    return scenes


def stac_args(url: str, bbox: str, out: Path, *extra: str) -> list[str]:
    return ["stac", "--url", url, "--collection", "sentinel-2-c1-l2a", "--bbox", bbox, "--date", "2024-06",
            "--whole-tile", "-q", "-o", str(out), *extra]  # fmt: skip


def read_mask(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def over_http(items: list[dict], server: RangeServer) -> list[dict]:
    """The items with every file:// band href re-pointed at ``server``."""
    out = copy.deepcopy(items)
    for item in out:
        for asset in item["assets"].values():
            if asset["href"].startswith("file://"):
                asset["href"] = server.href(Path(asset["href"].removeprefix("file://")))
    return out


def run_over_http(scenes: dict, faults: Faults, out: Path, *extra: str) -> tuple[Any, RangeServer]:
    with (
        RangeServer(scenes["root"], faults) as cogs,
        RustacServer(over_http(scenes["items"], cogs), out.parent / f"api_{out.name}") as api,
    ):
        result = CliRunner().invoke(cli, stac_args(api.url, scenes["bbox"], out, *extra))
    return result, cogs


def test_the_reference_masks_hold_cloud_shadow_and_clear(scenes: dict) -> None:
    for mask in scenes["reference"].values():
        counts = np.bincount(mask.ravel(), minlength=3)
        assert counts[0] > 0 and counts[1] > 0, (
            counts
        )  # a mask of one class would make equality below trivial


@needs_rustac
def test_masks_over_http_equal_masks_from_files(scenes: dict, tmp_path: Path) -> None:
    result, cogs = run_over_http(scenes, Faults(), tmp_path / "out")
    assert result.exit_code == 0, result.output
    for item_id in IDS:
        np.testing.assert_array_equal(
            read_mask(tmp_path / "out" / f"{item_id}_mask.tif"), scenes["reference"][item_id]
        )
    assert {status for _, _, status in cogs.log} <= {200, 206} and sum(cogs.bytes_sent.values()) > 0
    # no directory listing and no sidecar probes (.aux.xml, .ovr, .msk): only the band COGs were asked for
    assert {path for _, path, _ in cogs.log} == {f"{i}/{b}.tif" for i in IDS for b in DEFAULT_BANDS}


@needs_rustac
def test_503_and_cut_bodies_on_first_and_later_reads_are_survived(scenes: dict, tmp_path: Path) -> None:
    faults = Faults(transient=True, later=4)
    result, cogs = run_over_http(scenes, faults, tmp_path / "out", "--retries", "3", "--limit", "1")
    assert result.exit_code == 0, result.output
    for item_id in IDS[:1]:  # one item: each retry waits (backoff), and nine files show it as well as 27
        np.testing.assert_array_equal(
            read_mask(tmp_path / "out" / f"{item_id}_mask.tif"), scenes["reference"][item_id]
        )
    for path, n in cogs.reads.items():  # every file met a 503 and a cut body, and later ones too
        assert n >= 5 and cogs.statuses(path).count(503) >= 2, (path, cogs.statuses(path))


@needs_rustac
def test_a_missing_band_fails_its_item_with_one_line_and_the_others_finish(
    scenes: dict, tmp_path: Path
) -> None:
    """In a real process, as a user sees it: stderr names the URL and the status, nothing else repeats it."""
    missing = f"{IDS[1]}/B03.tif"
    out = tmp_path / "out"
    with (
        RangeServer(scenes["root"], Faults(missing={missing})) as cogs,
        RustacServer(over_http(scenes["items"], cogs), tmp_path / "api") as api,
    ):
        args = stac_args(api.url, scenes["bbox"], out)
        proc = subprocess.run(
            [sys.executable, "-m", "s2mask.cli", *args], capture_output=True, text=True, timeout=300
        )
    assert proc.returncode == 1, proc.stderr
    url = f"{cogs.url}/{missing}"
    lines = [line for line in proc.stderr.splitlines() if url in line]
    # the failure as it happens (a log line) and/or in the closing summary; odc-stac's per-attempt lines are silenced
    assert len(lines) in (1, 2) and all("HTTP 404" in line for line in lines), proc.stderr
    assert lines[-1].strip().startswith(f"{IDS[1]}: ") and "Failed to load" not in proc.stderr, proc.stderr
    for item_id in (IDS[0], IDS[2]):
        np.testing.assert_array_equal(read_mask(out / f"{item_id}_mask.tif"), scenes["reference"][item_id])
    assert not list(out.glob(f"{IDS[1]}*")) and not list(out.glob(".*"))  # nothing partial of the failed item
    index = json.loads((out / "index.geojson").read_text())
    assert [f["id"] for f in index["features"]] == [IDS[0], IDS[2]]
    assert [f["item_id"] for f in index["s2mask:failures"]] == [IDS[1]]


@needs_rustac
def test_an_answer_slower_than_the_timeout_fails_its_item(scenes: dict, tmp_path: Path) -> None:
    slow = f"{IDS[0]}/B04.tif"
    faults = Faults(slow={slow}, delay=2.5)
    result, cogs = run_over_http(scenes, faults, tmp_path / "out", "--timeout", "1", "--retries", "0")
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if f"{cogs.url}/{slow}" in line]
    assert lines and all("timed out" in line for line in lines), result.output
    assert (tmp_path / "out" / f"{IDS[1]}_mask.tif").exists() and not (
        tmp_path / "out" / f"{IDS[0]}_mask.tif"
    ).exists()


@needs_rustac
@pytest.mark.parametrize("resolution", [20, 60])
def test_stac_resolution_sets_the_grid_over_http(scenes: dict, tmp_path: Path, resolution: int) -> None:
    result, _ = run_over_http(
        scenes, Faults(), tmp_path / "out", "--resolution", str(resolution), "--limit", "1"
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "out" / f"{IDS[0]}_mask.tif"
    with rasterio.open(path) as src, rasterio.open(scenes["root"] / "from_file" / path.name) as ref:
        mask = src.read(1)
        assert src.res == (resolution, resolution) and src.shape == (960 // resolution, 960 // resolution)
        assert (src.bounds.left, src.bounds.top) == (ref.bounds.left, ref.bounds.top)
    assert len(np.unique(mask)) >= 2  # clouds found at the coarser grid too


# ---------------------------------------------------------------- reads below the CLI


def test_a_bbox_crop_reads_a_small_share_of_the_file(tmp_path: Path) -> None:
    """A 2048 px COG (256 px tiles); a crop of 1/16 of its area must not fetch the whole file."""
    size = 2048
    yy, xx = np.mgrid[0:size, 0:size]
    dn = (1500 + 800 * np.sin(xx / 13.0) * np.cos(yy / 17.0)).astype(np.uint16)
    dn += np.random.default_rng(0).integers(0, 300, dn.shape, dtype=np.uint16)
    (tmp_path / "cogs").mkdir()
    cog = write_cog(tmp_path / "cogs" / "B04.tif", dn, from_origin(500000, 5080000, 10, 10), "EPSG:32633")
    item = _one_band_item(tmp_path, cog, size)
    w, s, e, n = item.bbox
    crop = (w + (e - w) * 0.375, s + (n - s) * 0.375, w + (e - w) * 0.625, s + (n - s) * 0.625)
    shares = {}
    for name, box in (("crop", crop), ("whole", None)):
        with RangeServer(tmp_path / "cogs") as server:
            item.assets["red"].href = server.href(cog)
            cube = open_stac_item(item, bands=("B04",), bbox=box, chunks=256)
            assert np.isfinite(cube.values).all()
        shares[name] = server.bytes_sent["B04.tif"] / cog.stat().st_size
        if box is not None:
            area = cube.sizes["x"] * cube.sizes["y"] / size**2
    print(
        f"bbox crop of {area:.1%} of the area read {shares['crop']:.1%} of the file (whole tile {shares['whole']:.0%})"
    )
    assert 0.05 < area < 0.08 and shares["whole"] > 0.7  # the full-resolution tiles (the rest is overviews)
    # the 256 px tiles the crop touches: 4 x 4 of 8 x 8 with the resampling margin, a quarter of the whole read
    assert 0 < shares["crop"] < 0.3 * shares["whole"] + 0.02


def _one_band_item(tmp_path: Path, cog: Path, size: int) -> pystac.Item:
    from tests.conftest import SHARED_DATA
    from tests.stac_server import shaped_item, shared_item

    raw = shaped_item(
        shared_item(SHARED_DATA, "c1-l2a"), item_id="one", when="2024-06-10T10:00:00Z", cloud_cover=10.0,
        hrefs={"B04": cog}, transform=from_origin(500000, 5080000, 10, 10), shapes={"B04": (size, size)},
        crs="EPSG:32633",
    )  # fmt: skip
    return pystac.Item.from_dict(raw)


def _http_item(scenes: dict, server: RangeServer, index: int = 0) -> pystac.Item:
    return pystac.Item.from_dict(over_http(scenes["items"], server)[index])


@pytest.mark.slow  # starts a worker process
def test_settings_reach_dask_worker_processes(scenes: dict) -> None:
    """A worker process reads with the timeout and retries the caller asked for.

    GDAL's own default has no timeout, so only a timeout carried by the graph fails the slow read.
    """
    distributed = pytest.importorskip("distributed")
    slow = f"{IDS[0]}/B04.tif"
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None
        ) as lc,
        distributed.Client(lc) as client,
    ):
        with RangeServer(scenes["root"], Faults(slow={slow}, delay=2.5)) as server:
            cube = open_stac_item(_http_item(scenes, server), bands=DEFAULT_BANDS,
                                  remote=RemoteReads(timeout=1, retries=0))  # fmt: skip
            with pytest.raises(RemoteReadError, match=rf"Reading {server.url}/{slow} failed .*timed out"):
                client.compute(cube.data).result()
        with RangeServer(scenes["root"], Faults(transient=True)) as server:
            cube = open_stac_item(
                _http_item(scenes, server),
                bands=DEFAULT_BANDS,
                remote=RemoteReads(retries=3, backoff=0.05),
            )
            values = client.compute(cube.data).result()
    with RangeServer(scenes["root"]) as server:
        np.testing.assert_array_equal(
            values, open_stac_item(_http_item(scenes, server), bands=DEFAULT_BANDS).values
        )


def test_gdal_options_follow_timeout_and_retries() -> None:
    options = RemoteReads(timeout=1.2, retries=5, backoff=0.25).gdal_options()
    assert (
        options["GDAL_HTTP_TIMEOUT"] == options["GDAL_HTTP_CONNECTTIMEOUT"] == "2"
    )  # whole seconds, rounded up
    assert options["GDAL_HTTP_MAX_RETRY"] == "5" and options["GDAL_HTTP_RETRY_DELAY"] == "0.25"
    assert (
        options["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR" and "503" in options["GDAL_HTTP_RETRY_CODES"]
    )


def test_signed_urls_lose_their_token_in_messages() -> None:
    url = "https://x.blob.core.windows.net/c/B02.tif?st=2024&sig=SECRET"
    assert public_url(url) == "https://x.blob.core.windows.net/c/B02.tif"


def test_a_403_re_signs_the_url_and_a_404_fails_at_once() -> None:
    from rasterio.errors import RasterioIOError

    from s2mask.io._remote import _read_with_retries

    seen: list[str] = []

    def read(uri: str) -> str:
        seen.append(uri)
        if "sig=old" in uri:
            raise RasterioIOError("HTTP response code: 403")
        return "pixels"

    reads = RemoteReads(retries=2, backoff=0.0)
    resign = lambda url: public_url(url) + "?sig=new"  # noqa: E731
    assert (
        _read_with_retries(read, "https://x.blob.core.windows.net/c/B02.tif?sig=old", reads, resign)
        == "pixels"
    )
    assert seen == [
        "https://x.blob.core.windows.net/c/B02.tif?sig=old",
        "https://x.blob.core.windows.net/c/B02.tif?sig=new",
    ]

    seen.clear()

    def missing(uri: str) -> str:
        seen.append(uri)
        raise RasterioIOError("HTTP response code: 404")

    with pytest.raises(
        RemoteReadError, match=r"Reading https://h/B02\.tif failed with HTTP 404 after 1 attempt"
    ):
        _read_with_retries(missing, "https://h/B02.tif?token=SECRET", reads, None)
    assert len(seen) == 1  # a permanent answer is not retried


@needs_rustac
@pytest.mark.slow  # 27 files, each with two rounds of faults and backoff: about 40 s
def test_composite_over_http_survives_faults_and_equals_the_file_composite(
    scenes: dict, tmp_path: Path
) -> None:
    def composite(url: str, out: Path) -> np.ndarray:
        args = ["composite", "--stac-bbox", scenes["bbox"], "--date", "2024-06", "--url", url,
                "--collection", "sentinel-2-c1-l2a", "-o", str(out), "-q"]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        with rasterio.open(out) as src:
            return src.read()

    with RustacServer(scenes["items"], tmp_path / "api_file") as api:
        expected = composite(api.url, tmp_path / "file.tif")
    with (
        RangeServer(
            scenes["root"], Faults(transient=True, later=3)
        ) as cogs,  # composite reads each file 3 times
        RustacServer(over_http(scenes["items"], cogs), tmp_path / "api_http") as api,
    ):
        got = composite(api.url, tmp_path / "http.tif")
    np.testing.assert_array_equal(got, expected)
    assert got[-1].max() >= 2  # the count layer: several clear observations were combined
    assert all(cogs.statuses(path).count(503) >= 2 for path in cogs.reads)  # faults met on every file read
