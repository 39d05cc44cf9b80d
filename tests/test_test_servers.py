"""The local servers the tests rely on answer as they claim: ranges, faults, and ports no one else holds."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests import stac_server
from tests.range_server import Faults, RangeServer
from tests.stac_server import RustacServer, rustac_command


def _get(url: str, byte_range: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, headers={"Range": byte_range} if byte_range else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, b"", dict(err.headers)


def test_range_server_answers_ranges_and_counts_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(bytes(range(256)) * 4)
    with RangeServer(tmp_path) as server:
        status, body, headers = _get(f"{server.url}/a.bin", "bytes=10-19")
        assert status == 206 and body == bytes(range(10, 20))
        assert headers["Content-Range"] == "bytes 10-19/1024" and headers["Accept-Ranges"] == "bytes"
        assert _get(f"{server.url}/a.bin")[:2] == (200, bytes(range(256)) * 4)
        assert _get(f"{server.url}/nothing.bin")[0] == 404
        assert _get(f"{server.url}/../etc/passwd")[0] == 404
    assert server.bytes_sent["a.bin"] == 10 + 1024


def test_range_server_faults_come_on_the_reads_they_are_set_for(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"x" * 1000)
    (tmp_path / "b.bin").write_bytes(b"y" * 10)
    with RangeServer(tmp_path, Faults(transient=True, later=4, missing={"b.bin"})) as server:
        outcomes = []
        for _ in range(6):
            try:
                outcomes.append(_get(f"{server.url}/a.bin", "bytes=0-999")[0])
            except (urllib.error.URLError, ConnectionError, http_incomplete()) as exc:
                outcomes.append(type(exc).__name__)
        assert outcomes[0] == 503 and outcomes[3] == 503 and outcomes[2] == outcomes[5] == 206
        assert (
            outcomes[1] == outcomes[4] == "IncompleteRead"
        )  # half the promised body, then the connection drops
        assert _get(f"{server.url}/b.bin")[0] == 404
    assert server.statuses("a.bin") == [503, 206, 206, 503, 206, 206]


def http_incomplete() -> type[Exception]:
    import http.client

    return http.client.IncompleteRead


@pytest.mark.skipif(rustac_command() is None, reason="rustac is not installed")
def test_rustac_server_moves_on_when_its_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """free_port() can hand out a port another process takes before rustac binds it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        ports = iter([taken.getsockname()[1], stac_server.free_port()])
        monkeypatch.setattr(stac_server, "free_port", lambda: next(ports))
        with RustacServer([], tmp_path) as server:
            assert not server.url.endswith(f":{taken.getsockname()[1]}")
            assert _get(server.url + "/")[0] == 200
