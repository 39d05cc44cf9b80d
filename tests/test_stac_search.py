"""STAC search against a real STAC API (rustac serve) on 127.0.0.1, and against broken ones."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rasterio.transform import from_origin

from s2mask.errors import EmptySearchError, InvalidParameterError, StacError
from s2mask.io.stac import _server_filter, search_items
from tests.stac_server import (
    FaultServer,
    RustacServer,
    block_internet,  # noqa: F401 - fixture
    shaped_item,
    shared_item,
    to_dn,
    write_band_cogs,
)

pytestmark = [
    pytest.mark.usefixtures("block_internet"),
    pytest.mark.filterwarnings("ignore:Could not parse bucket:UserWarning"),  # pystac storage-ext migration
]

CRS = "EPSG:32633"
HERE = from_origin(500000, 5080000, 10, 10)  # near 15.0E 45.9N
THERE = from_origin(600000, 5180000, 10, 10)  # ~140 km away
SIZE = 32
C1 = "sentinel-2-c1-l2a"


def bbox_of(item: dict[str, Any], shrink: float = 0.001) -> tuple[float, float, float, float]:
    w, s, e, n = item["bbox"]
    return (w + shrink, s + shrink, e - shrink, n - shrink)


@pytest.fixture(scope="module")
def api(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Six items in two collections, two places and June/July 2024, served by rustac."""
    tmp = tmp_path_factory.mktemp("stac_api")
    dn = {b: to_dn(np.full((SIZE, SIZE), 0.1, np.float32), offset_dn=1000) for b in ("B02", "B03", "B04")}
    shapes = {b: (SIZE, SIZE) for b in dn}
    specs = [  # id, template, collection override, date, cloud, place
        ("A", "c1-l2a", None, "2024-06-10T10:00:00Z", 20.0, HERE),
        ("B", "c1-l2a", None, "2024-06-20T10:00:00Z", 70.0, HERE),
        ("C", "c1-l2a", None, "2024-07-05T10:00:00Z", 10.0, HERE),
        ("D", "c1-l2a", None, "2024-06-15T10:00:00Z", 5.0, THERE),
        ("E", "es-l2a", None, "2024-06-12T10:00:00Z", 30.0, HERE),
        ("F", "c1-l2a", None, "2024-06-25T10:00:00Z", None, HERE),
    ]
    items = {}
    for item_id, template, _, when, cloud, place in specs:
        hrefs = write_band_cogs(tmp / item_id, dn, transform=place, crs=CRS)
        items[item_id] = shaped_item(
            shared_item(shared_data, template), item_id=item_id, when=when, cloud_cover=cloud,
            hrefs=hrefs, transform=place, shapes=shapes, crs=CRS,
        )  # fmt: skip
    with RustacServer(list(items.values()), tmp / "server") as server:
        yield {"url": server.url, "items": items, "here": bbox_of(items["A"]), "there": bbox_of(items["D"])}


def ids(found: list[Any]) -> list[str]:
    return [it.id for it in found]


def test_search_by_bbox_date_and_cloud(api: dict[str, Any]) -> None:
    found = search_items(url=api["url"], collection=C1, bbox=api["here"], date="2024-06", max_cloud=60)
    assert ids(found) == ["A"]
    assert found[0].properties["eo:cloud_cover"] == 20.0
    assert found[0].assets["blue"].href.startswith("file://")


def test_without_cloud_limit_every_item_in_range_comes_back_in_time_order(api: dict[str, Any]) -> None:
    found = search_items(url=api["url"], collection=C1, bbox=api["here"], date="2024-06-01/2024-06-30")
    assert ids(found) == ["A", "B", "F"]  # F has no eo:cloud_cover: kept when no limit is asked


def test_date_range_and_place_select(api: dict[str, Any]) -> None:
    url = api["url"]
    assert ids(
        search_items(url=url, collection=C1, bbox=api["here"], date="2024-06/2024-07", max_cloud=60)
    ) == [
        "A",
        "C",
    ]
    assert ids(search_items(url=url, collection=C1, bbox=api["there"], date="2024")) == ["D"]
    assert ids(search_items(url=url, collection="sentinel-2-l2a", bbox=api["here"], date="2024-06")) == ["E"]


def test_paging_follows_next_links_and_limit_caps(api: dict[str, Any]) -> None:
    url, here = api["url"], api["here"]
    paged = search_items(url=url, collection=C1, bbox=here, date="2024", page_size=1)
    assert ids(paged) == ["A", "B", "F", "C"]
    assert len(search_items(url=url, collection=C1, bbox=here, date="2024", limit=2)) == 2
    # the cloud filter is applied before the limit counts
    assert ids(search_items(url=url, collection=C1, bbox=here, date="2024", max_cloud=25, limit=5)) == [
        "A",
        "C",
    ]


def test_empty_search_is_a_clear_error(api: dict[str, Any]) -> None:
    with pytest.raises(
        EmptySearchError, match=r"No items in collection 'sentinel-2-c1-l2a' at http://127\.0\.0\.1"
    ):
        search_items(url=api["url"], collection=C1, bbox=api["here"], date="2023-06")
    with pytest.raises(EmptySearchError, match="eo:cloud_cover <= 1%"):
        search_items(url=api["url"], collection=C1, bbox=api["here"], date="2024-06", max_cloud=1)
    with pytest.raises(EmptySearchError):
        search_items(url=api["url"], collection="no-such-collection", bbox=api["here"], date="2024")


def test_retries_ride_out_transient_5xx(api: dict[str, Any]) -> None:
    with FaultServer("flaky", status=503, failures=2, upstream=api["url"]) as flaky:
        found = search_items(
            url=flaky.url, collection=C1, bbox=api["here"], date="2024-06", retries=3, backoff=0.01
        )
    assert ids(found) == ["A", "B", "F"]
    assert len(flaky.requests) >= 3 and flaky.requests[0] == flaky.requests[1]


def test_persistent_500_is_a_stac_error_naming_the_url() -> None:
    with FaultServer("status", status=500) as bad:
        with pytest.raises(StacError, match=rf"at {bad.url} failed \(HTTP 500.*retried up to 2 times") as err:
            search_items(
                url=bad.url, collection=C1, bbox="15,45.8,15.1,45.9", date="2024-06", retries=2, backoff=0.01
            )
        assert len(bad.requests) == 3  # the first try and two retries
    assert "HTTP 500" in str(err.value)


def test_timeout_is_a_stac_error() -> None:
    with FaultServer("timeout", delay=3.0) as slow:
        t0 = time.monotonic()
        with pytest.raises(StacError, match=slow.url):
            search_items(url=slow.url, collection=C1, bbox="15,45.8,15.1,45.9", date="2024-06", timeout=0.3, retries=1, backoff=0.01)  # fmt: skip
        assert time.monotonic() - t0 < 3.0
        assert len(slow.requests) == 2


def test_invalid_json_is_a_stac_error() -> None:
    with FaultServer("invalid-json") as bad, pytest.raises(StacError, match=bad.url):
        search_items(url=bad.url, collection=C1, bbox="15,45.8,15.1,45.9", date="2024-06", retries=0)


def test_unreachable_api_is_a_stac_error() -> None:
    with FaultServer("status") as gone:
        url = gone.url
    with pytest.raises(StacError, match=url):
        search_items(
            url=url, collection=C1, bbox="15,45.8,15.1,45.9", date="2024-06", retries=1, backoff=0.01
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bbox": "15.1,45.8,15,45.9"}, "west 15.1 is greater than east 15"),
        ({"bbox": "15,45.8,15,45.9"}, "zero area"),
        ({"bbox": "15,95,16,96"}, "outside -90..90"),
        ({"date": "2024-06-30/2024-06-01"}, "before it starts"),
        ({"date": "2024-02-31"}, "not a valid date"),
        ({"max_cloud": 150}, "outside 0..100"),
        ({"limit": 0}, "at least 1"),
    ],
)
def test_bad_parameters_fail_before_any_request(kwargs: dict[str, Any], match: str) -> None:
    args = {"collection": C1, "bbox": "15,45.8,15.1,45.9", "date": "2024-06", **kwargs}
    with FaultServer("status") as server:
        with pytest.raises(InvalidParameterError, match=match):
            search_items(url=server.url, **args)
        assert server.requests == []


def test_bad_url_scheme_is_invalid_parameter() -> None:
    with pytest.raises(InvalidParameterError, match="http:// or https://"):
        search_items(
            url="ftp://example.invalid/stac", collection=C1, bbox="15,45.8,15.1,45.9", date="2024-06"
        )


class _Conforms:
    def __init__(self, *classes: str) -> None:
        self.classes = classes

    def conforms_to(self, cls: Any) -> bool:
        return cls.name in self.classes


def test_cloud_cover_goes_to_the_server_only_when_it_conforms() -> None:
    assert _server_filter(_Conforms("QUERY"), 40.0) == {"query": {"eo:cloud_cover": {"lte": 40.0}}}
    cql = _server_filter(_Conforms("FILTER"), 40.0)
    assert cql["filter_lang"] == "cql2-json"
    assert cql["filter"] == {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 40.0]}
    assert _server_filter(_Conforms(), 40.0) == {}
