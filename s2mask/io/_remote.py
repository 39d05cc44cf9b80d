"""Reading rasters over HTTP(S) and S3: the one place the settings are pinned.

Without these, remote reads run on whatever GDAL's defaults of the day are (no retry,
a directory listing per open, no timeout).  :class:`RemoteReads` states what s2mask
wants and :func:`reader_driver` applies it as an odc-stac reader driver.  The driver
puts the GDAL options into the dask graph that odc-stac builds and restores them around
every read task, so the same settings reach threads and dask.distributed workers alike.
It also retries a block read that GDAL gave up on (a body cut short mid-transfer is not
one of GDAL's retried cases) and turns a read that keeps failing into one
:class:`~s2mask.errors.RemoteReadError` that names the URL and the HTTP status.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from s2mask.errors import CorruptDataError, ProductNotFoundError, RemoteReadError

__all__ = ["RemoteReads", "http_status", "public_url", "reader_driver"]

log = logging.getLogger(__name__)

RETRY_CODES = (429, 500, 502, 503, 504)
"""HTTP answers GDAL retries (it also retries timeouts and reset connections; bodies cut short are retried
by the reader driver)."""


@dataclass(frozen=True, kw_only=True)
class RemoteReads:
    """How rasters are read over the network."""

    timeout: float = 30
    """Seconds GDAL waits to connect, and for one request to finish (whole seconds, rounded up)."""
    retries: int = 3
    """Retries of a request that timed out, dropped, or was answered 429 or 5xx."""
    backoff: float = 0.5
    """Seconds before the first retry; GDAL doubles the wait (with jitter) on each further one."""
    cache_mb: int = 64
    """Size of GDAL's cache of downloaded byte ranges (shared by all remote files of a process)."""

    def gdal_options(self) -> dict[str, str]:
        """The GDAL configuration options, as strings."""
        seconds = str(max(1, math.ceil(self.timeout)))
        return {
            # a COG needs no sidecar files: never list the "directory" of a URL on open
            "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
            "GDAL_HTTP_MAX_RETRY": str(int(self.retries)),
            "GDAL_HTTP_RETRY_DELAY": f"{float(self.backoff):g}",
            "GDAL_HTTP_RETRY_CODES": ",".join(map(str, RETRY_CODES)),
            "GDAL_HTTP_TIMEOUT": seconds,
            "GDAL_HTTP_CONNECTTIMEOUT": seconds,
            # downloaded ranges stay in memory, so neighbouring window reads do not fetch them again
            "CPL_VSIL_CURL_CACHE_SIZE": str(int(self.cache_mb) * 1024 * 1024),
            "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
            # the first request of an open reads the whole COG header (IFDs and tile offsets)
            "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
        }


# ---------------------------------------------------------------- odc-stac reader driver

_HTTP_CODE = re.compile(
    r"HTTP (?:response )?code:? ?(\d{3})|\b(\d{3})\b (?:Forbidden|Not Found|Unauthorized)"
)


def public_url(uri: str) -> str:
    """``uri`` without its query string (signed URLs carry tokens that must stay out of messages)."""
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) if parts.query else uri


def http_status(uri: str, message: str, timeout: float) -> int | None:
    """The HTTP status behind a failed read: from GDAL's message, else from one 1-byte request."""
    m = _HTTP_CODE.search(message)
    if m:
        return int(m[1] or m[2])
    if urlsplit(uri).scheme not in ("http", "https"):
        return None
    import urllib.error
    import urllib.request

    req = urllib.request.Request(uri, headers={"Range": "bytes=0-0"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def _vsi_path(uri: str) -> str | None:
    """GDAL's virtual path for a remote ``uri`` (``/vsicurl/...``, ``/vsis3/...``), ``None`` for local files."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return f"/vsicurl/{uri}"
    if parts.scheme == "s3":
        return f"/vsis3/{parts.netloc}{parts.path}"
    return None


def _uncached(uri: str) -> Any:
    """An environment in which GDAL bypasses its cache of downloaded ranges for ``uri``.

    A body cut short stays in that cache, so a plain retry would read the same broken bytes.
    GDAL splits this option's value on ``:``, so for a URL the prefix that matches is
    ``/vsicurl/http``: while the option is set (in this thread, for one retry) every HTTP file
    bypasses the cache.
    """
    import rasterio.env

    vsi = _vsi_path(uri)
    return rasterio.env.Env(CPL_VSIL_CURL_NON_CACHED=vsi) if vsi else rasterio.env.Env()


def _read_with_retries(
    read: Callable[[str], Any], uri: str, reads: RemoteReads, resign: Callable[[str], str] | None
) -> Any:
    """``read(uri)``, retried ``reads.retries`` times on I/O errors; 4xx other than 429 fail at once.

    A local file is not retried: a missing one raises ProductNotFoundError, an unreadable one CorruptDataError.
    """
    import rasterio.errors

    delay, message, code = reads.backoff, "", None
    retries = reads.retries if _vsi_path(uri) is not None else 0
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(delay)
            delay *= 2
        try:
            if attempt == 0:
                return read(uri)
            with _uncached(uri):
                return read(uri)
        except rasterio.errors.RasterioIOError as exc:
            message = " ".join(str(exc).split())
            m = _HTTP_CODE.search(message)
            code = int(m[1] or m[2]) if m else None
        if code == 403 and resign is not None:
            uri = resign(uri)  # a signed URL whose token expired during a long run
        elif code is not None and 400 <= code < 500 and code != 429:
            break  # permanent: missing, refused
        log.debug("Read of %s failed (%s); retrying", public_url(uri), message)
    # raised outside the except block: no GDAL exception chained to it (dask.distributed pickles the chain)
    if _vsi_path(uri) is None:
        raise _local_error(uri, message)
    raise _read_error(uri, message, code, attempt + 1, reads.timeout)


def _local_error(uri: str, message: str) -> CorruptDataError | ProductNotFoundError:
    parts = urlsplit(uri)
    path = Path(unquote(parts.path) if parts.scheme == "file" else uri)
    if not path.exists():
        return ProductNotFoundError(f"The asset file {path} does not exist; check the item's hrefs.")
    return CorruptDataError(f"Reading the asset file {path} failed ({message}); the file may be truncated.")


def _read_error(uri: str, message: str, code: int | None, attempts: int, timeout: float) -> RemoteReadError:
    status = code if code is not None else http_status(uri, message, timeout)
    said = f"HTTP {status}" if status is not None and not 200 <= status < 300 else "an I/O error"
    return RemoteReadError(
        f"Reading {public_url(uri)} failed with {said} after {attempts} attempt(s) ({message}); check that "
        "the asset exists and is reachable, or raise --timeout/--retries."
    )


def reader_driver(reads: RemoteReads | None = None, resign: Callable[[str], str] | None = None) -> Any:
    """An odc-stac reader driver with the GDAL options of ``reads`` and block-level retries.

    ``resign(url) -> url`` (a module-level function, so it pickles to dask workers) is
    called when a read is refused with 403, and the read is retried on the new URL:
    signed hrefs (Planetary Computer) whose token expired during a long run.
    """
    from odc.loader import RioDriver, RioReader

    reads = reads or RemoteReads()

    class Reader(RioReader):
        def read(self, cfg, dst_geobox, *, dst=None, selection=None):  # noqa: ANN001, ANN202
            def attempt(uri: str) -> Any:
                src = self._src if uri == self._src.uri else _with_uri(self._src, uri)
                return RioReader(src, self._ctx).read(cfg, dst_geobox, dst=dst, selection=selection)

            return _read_with_retries(attempt, self._src.uri, reads, resign)

    class Driver(RioDriver):
        def capture_env(self) -> dict[str, Any]:
            return {**super().capture_env(), **reads.gdal_options()}

        def open(self, src, ctx):  # noqa: ANN001, ANN202
            return Reader(src, ctx)

    return Driver()


def _with_uri(src: Any, uri: str) -> Any:
    from dataclasses import replace

    return replace(src, uri=uri)
