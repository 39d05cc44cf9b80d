"""A real STAC API on 127.0.0.1 for tests, serving items shaped like real ones with local COGs.

* :class:`RustacServer` runs ``rustac serve`` (the Rust STAC API server, in-memory
  backend) as a subprocess on a free local port, loaded with the given items.
* :class:`FaultServer` is a stdlib HTTP server that answers like a broken API (HTTP 500,
  no answer within the client's timeout, invalid JSON) or, in ``flaky`` mode, fails the
  first requests and then forwards to a real server, so retries can be shown to work.
* :func:`shaped_item` copies a real item from ``../shared/data/stac_items`` and rewrites
  its id, time, footprint, cloud cover and band assets to point at local COGs that
  :func:`write_band_cogs` writes from synthetic DN.

Nothing here reaches the internet.
"""

from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rasterio.warp import transform_bounds

from tests.local_http import LocalHTTPServer

ES_KEYS = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
    "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B10": "cirrus", "B11": "swir16", "B12": "swir22",
}  # fmt: skip

TEMPLATES = {
    # Earth Search Collection 1: raster:bands scale 1e-4 offset -0.1, common-name keys
    "c1-l2a": "pystac-client/sentinel-2-c1-l2a__S2B_T24MUV_20250731T130245_L2A.json",
    # Earth Search sentinel-2-l2a, earthsearch:boa_offset_applied true (pixels already shifted)
    "es-l2a": "pystac-client/sentinel-2-l2a__S2B_24MUV_20250731_0_L2A.json",
    # Planetary Computer: ESA keys, no raster:bands, s2:processing_baseline 02.12
    "pc-l2a": "pystac-client/sentinel-2-l2a__S2A_MSIL2A_20190101T000001_R116_T59VPC_20201007T214653.json",
}


def rustac_command() -> list[str] | None:
    """How to start the rustac CLI here, or ``None`` when the rustac package is absent."""
    exe = shutil.which("rustac")
    if exe:
        return [exe]
    try:
        import rustac  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-c", "import sys, rustac; sys.exit(rustac.main())"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- items and COGs


def write_cog(
    path: Path,
    data: np.ndarray,
    transform: Affine,
    crs: str,
    nodata: float | None = 0,
    descriptions: Sequence[str] | None = None,
) -> Path:
    """Write a single-band (or ``(bands, y, x)``) Cloud-Optimised GeoTIFF."""
    data = data if data.ndim == 3 else data[None]
    profile = {
        "driver": "COG", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0],
        "dtype": data.dtype, "crs": crs, "transform": transform, "nodata": nodata,
        "blocksize": 256, "compress": "deflate",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = tuple(descriptions)
    return path


def write_band_cogs(
    folder: Path, dn: Mapping[str, np.ndarray], *, transform: Affine, crs: str
) -> dict[str, Path]:
    """One COG per band (``<folder>/<band>.tif``); 20 m bands may be given at half size."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for band, arr in dn.items():
        factor = dn_size(dn) // arr.shape[0]
        tr = transform @ Affine.scale(factor)
        out[band] = write_cog(folder / f"{band}.tif", arr, tr, crs)
    return out


def dn_size(dn: Mapping[str, np.ndarray]) -> int:
    return max(a.shape[0] for a in dn.values())


def shared_item(shared_data: Path, template: str) -> dict[str, Any]:
    path = shared_data / "stac_items" / TEMPLATES.get(template, template)
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return json.loads(path.read_text())


def shaped_item(
    template: dict[str, Any],
    *,
    item_id: str,
    when: str,
    cloud_cover: float | None,
    hrefs: Mapping[str, Path | str],
    transform: Affine,
    shapes: Mapping[str, tuple[int, int]],
    crs: str,
) -> dict[str, Any]:
    """A copy of a real item re-pointed at local COGs: new id, time, footprint and cloud cover.

    ``hrefs``/``shapes`` are by ESA band; the asset key is whatever the template uses
    for that band (ESA or Earth Search name).  Assets of other bands are dropped; the
    template's metadata assets are kept (they are never read).
    """
    item = copy.deepcopy(template)
    item["id"] = item_id
    item["links"] = []
    props = item["properties"]
    props["datetime"] = when
    for key in ("created", "updated", "start_datetime", "end_datetime"):
        props.pop(key, None)
    if cloud_cover is None:
        props.pop("eo:cloud_cover", None)
    else:
        props["eo:cloud_cover"] = cloud_cover
    epsg = int(crs.split(":")[1])
    props.pop("proj:code", None)
    props["proj:epsg"] = epsg
    size = max(s[0] for s in shapes.values())
    left, top = transform.c, transform.f
    right, bottom = left + size * transform.a, top + size * transform.e
    w, s, e, n = transform_bounds(crs, "EPSG:4326", left, bottom, right, top)
    item["bbox"] = [w, s, e, n]
    item["geometry"] = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    band_keys = {b: k for b, es in ES_KEYS.items() for k in (b, es) if k in item["assets"]}
    for band, key in band_keys.items():
        if band not in hrefs:
            item["assets"].pop(key)
            continue
        asset = item["assets"][key]
        href = hrefs[band]
        asset["href"] = href.resolve().as_uri() if isinstance(href, Path) else str(href)
        rows, cols = shapes[band]
        res = transform.a * size / rows
        asset["proj:shape"] = [rows, cols]
        asset["proj:transform"] = [res, 0.0, left, 0.0, -res, top]
        asset.pop("proj:bbox", None)
        asset.pop("file:checksum", None)
        asset.pop("file:size", None)
    for key in [k for k in item["assets"] if k.endswith("-jp2")]:
        item["assets"].pop(key)
    return item


def synthetic_reflectance(size: int, seed: int) -> np.ndarray:
    """A scene of clear land (0.05-0.2), bright clouds (0.5-0.8) and dark shadows (<0.03)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.08 + 0.1 * (0.5 + 0.5 * np.sin(6 * xx + 3 * yy))
    refl = np.repeat(base[None], 13, axis=0) * rng.uniform(0.8, 1.2, (13, 1, 1))
    for _ in range(3):
        cy, cx, r = rng.uniform(0.15, 0.85, 2).tolist() + [rng.uniform(0.06, 0.14)]
        cloud = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        refl[:, cloud] = rng.uniform(0.55, 0.8)
        shadow = ((yy - cy - 0.12) ** 2 + (xx - cx - 0.1) ** 2 < (0.7 * r) ** 2) & ~cloud
        refl[:, shadow] = 0.015
    return refl.astype(np.float32)


def to_dn(refl: np.ndarray, *, offset_dn: int) -> np.ndarray:
    """Reflectance to uint16 DN at quantification 10000 plus ``offset_dn`` (1000 from baseline 04.00)."""
    dn = np.round(refl * 10000 + offset_dn)
    return np.clip(dn, 1, 65535).astype(np.uint16)


# ---------------------------------------------------------------- servers


class RustacServer:
    """``rustac serve`` on 127.0.0.1 with an in-memory backend holding ``items``."""

    def __init__(self, items: Sequence[Mapping[str, Any]], workdir: Path) -> None:
        self.items, self.workdir = list(items), workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> RustacServer:
        cmd = rustac_command()
        if cmd is None:
            pytest.skip("rustac is not installed (pip install rustac) so no local STAC API can run")
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "items.json"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": self.items}))
        # rustac writes its address into every link, so it cannot bind port 0; a port found free may be
        # taken before rustac binds it, and then rustac exits: try another one
        for _ in range(5):
            if self._start(cmd, path, free_port()):
                return self
        raise RuntimeError(f"rustac serve did not start: {(self.workdir / 'rustac.log').read_text()}")

    def _start(self, cmd: list[str], path: Path, port: int) -> bool:
        """Start rustac on ``port``; True once it answers as a STAC API, False if it exited."""
        self.url = f"http://127.0.0.1:{port}"
        log = (self.workdir / "rustac.log").open("wb")
        self.proc = subprocess.Popen(
            [*cmd, "serve", "--create-collections", "-a", f"127.0.0.1:{port}", str(path)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1) as resp:
                    if resp.status == 200 and b"conformsTo" in resp.read():
                        return True
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("rustac serve did not answer within 30 s")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class FaultServer(LocalHTTPServer):
    """A local HTTP server that fails like a broken STAC API.

    Modes: ``"status"`` answers every request with ``status``; ``"timeout"`` waits
    ``delay`` seconds before answering; ``"invalid-json"`` answers 200 with a body that is
    not JSON; ``"flaky"`` answers ``status`` to the first ``failures`` requests, then
    forwards to ``upstream`` (rewriting its URLs in the answers to this server's).
    """

    def __init__(
        self, mode: str, *, status: int = 500, delay: float = 2.0, failures: int = 2, upstream: str = ""
    ) -> None:
        self.mode, self.status, self.delay, self.failures, self.upstream = (
            mode,
            status,
            delay,
            failures,
            upstream,
        )
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._listen()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fault = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _answer(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with fault._lock:
                    fault.requests.append(f"{self.command} {self.path}")
                    n = len(fault.requests)
                if fault.mode == "status" or (fault.mode == "flaky" and n <= fault.failures):
                    self._answer(fault.status, b'{"code": "ServerError", "description": "simulated"}')
                elif fault.mode == "timeout":
                    time.sleep(fault.delay)
                    self._answer(200, b"{}")
                elif fault.mode == "invalid-json":
                    self._answer(200, b'{"type": "Catalog", "links": [ this is not json')
                else:
                    self._forward(body)

            def _forward(self, body: bytes | None) -> None:
                req = urllib.request.Request(fault.upstream + self.path, data=body, method=self.command)
                if body:
                    req.add_header("Content-Type", self.headers.get("Content-Type", "application/json"))
                try:
                    with urllib.request.urlopen(req, timeout=10) as resp:
                        status, data = resp.status, resp.read()
                        ctype = resp.headers.get("Content-Type", "application/json")
                except urllib.error.HTTPError as err:
                    status, data, ctype = err.code, err.read(), "application/json"
                self._answer(status, data.replace(fault.upstream.encode(), fault.url.encode()), ctype)

            do_GET = do_POST = _handle

        return Handler


QUERY_CONFORMANCE = (
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0/item-search#filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
)
_QUERY_OPS = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_COMPARE = {
    "=": lambda a, b: a == b, "<>": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}  # fmt: skip


def matches(
    properties: Mapping[str, Any], query: Mapping[str, Any] | None, cql: Mapping[str, Any] | None
) -> bool:
    """Whether an item's properties pass a STAC ``query`` and a CQL2-JSON ``filter`` (comparisons, ``and``)."""

    def compare(op: str, name: str, value: Any) -> bool:
        have = properties.get(name)
        return have is not None and _COMPARE[op](have, value)

    def cql2(node: Mapping[str, Any]) -> bool:
        if node["op"] == "and":
            return all(cql2(arg) for arg in node["args"])
        prop, value = node["args"]
        return compare(node["op"], prop["property"], value)

    wanted = [(_QUERY_OPS[op], name, v) for name, ops in (query or {}).items() for op, v in ops.items()]
    return all(compare(*w) for w in wanted) and (cql is None or cql2(cql))


class FilteringProxy(LocalHTTPServer):
    """A local STAC API that adds the ``query`` and ``filter`` (CQL2-JSON) extensions to a ``rustac serve``.

    rustac's in-memory backend neither filters on properties nor says it could; this proxy forwards
    every request, announces the two conformance classes, takes ``query``/``filter`` out of a search
    (GET or POST) and keeps only the features that pass them (:func:`matches`).
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._listen()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                from urllib.parse import parse_qsl, urlencode, urlsplit

                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                split = urlsplit(self.path)
                params = dict(parse_qsl(split.query))
                query = cql = None
                if split.path.rstrip("/").endswith("/search"):
                    source = body if body is not None else params
                    query, cql = source.pop("query", None), source.pop("filter", None)
                    source.pop("filter-lang", None)
                    query = json.loads(query) if isinstance(query, str) else query
                    cql = json.loads(cql) if isinstance(cql, str) else cql
                path = split.path + (f"?{urlencode(params)}" if params else "")
                status, doc = self._forward(path, body)
                if isinstance(doc, dict) and "conformsTo" in doc:
                    doc["conformsTo"] = [*doc["conformsTo"], *QUERY_CONFORMANCE]
                if isinstance(doc, dict) and (query or cql) and "features" in doc:
                    doc["features"] = [
                        f for f in doc["features"] if matches(f.get("properties", {}), query, cql)
                    ]
                data = json.dumps(doc).replace(proxy.upstream, proxy.url).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, path: str, body: Any) -> tuple[int, Any]:
                data = None if body is None else json.dumps(body).encode()
                req = urllib.request.Request(proxy.upstream + path, data=data, method=self.command)
                if data:
                    req.add_header("Content-Type", "application/json")
                try:
                    with urllib.request.urlopen(req, timeout=10) as resp:
                        return resp.status, json.loads(resp.read())
                except urllib.error.HTTPError as err:
                    return err.code, json.loads(err.read() or b"{}")

            do_GET = do_POST = _handle

        return Handler


@contextmanager
def rustac_server(items: Sequence[Mapping[str, Any]], workdir: Path) -> Iterator[str]:
    """Context manager yielding the URL of a ``rustac serve`` API holding ``items``."""
    with RustacServer(items, workdir) as server:
        yield server.url


@pytest.fixture
def block_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection to a host that is not this machine (no test may reach the internet)."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None and host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"test tried to reach {address!r}; tests must stay offline")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
