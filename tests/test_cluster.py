"""The engine on a dask.distributed cluster: one model per worker, same mask as threads."""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr

from s2mask.bands import DEFAULT_BANDS
from s2mask.engine import predict
from s2mask.engine.cluster import ModelPlugin, ModelRef, connect, plugin_name, use_model
from s2mask.errors import InvalidParameterError
from s2mask.mask import to_mask
from s2mask.model import save_model
from s2mask.testing.models import tiny_unet


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    model = tiny_unet(window_size=32)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_model(model.net, model.card, path)
    return str(path)


def cube(h: int = 90, w: int = 110) -> xr.DataArray:
    rng = np.random.default_rng(7)
    img = (0.5 * rng.random((9, h, w), dtype=np.float32) ** 2).astype(np.float32)
    img[:, :20, :25] = np.nan
    return xr.DataArray(
        da.from_array(img, chunks=(9, 37, 41)), dims=("band", "y", "x"), coords={"band": list(DEFAULT_BANDS)}
    )


def test_model_ref_is_small_picklable_and_follows_the_protocol(weights: str) -> None:
    ref = ModelRef(weights, "cpu")
    blob = pickle.dumps(ref)
    assert len(blob) < 1000  # a path, not a network
    assert pickle.loads(blob) == ref
    assert ref.bands == DEFAULT_BANDS and ref.num_classes == 3 and ref.card.window_size == 32
    assert ref.resolve() is ModelRef(weights, "cpu").resolve()  # loaded once per process
    out = ref.predict_proba(np.zeros((2, 9, 32, 32), np.float32))
    assert out.shape == (2, 3, 32, 32)


def test_plugin_never_pickles_its_model(weights: str) -> None:
    plugin = ModelPlugin(weights, "cpu", threads=1)
    before = torch.get_num_threads()
    try:
        plugin.setup(worker=None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert plugin.model is not None and plugin.name == plugin_name(weights, "cpu")
    assert pickle.loads(pickle.dumps(plugin)).model is None


def test_connect_without_arguments_uses_local_threads() -> None:
    assert connect() is None
    with pytest.raises(InvalidParameterError, match="worker"):
        connect(workers=0)


@pytest.mark.slow
def test_local_cluster_gives_the_same_mask_as_threads(weights: str) -> None:
    data = cube()
    threaded = to_mask(predict(data, ModelRef(weights, "cpu"), window=32, overlap=4)).compute(
        scheduler="threads"
    )
    client = connect(workers=2, weights=weights, device="cpu", threads=1)
    try:
        ref = ModelRef(weights, "cpu")
        loaded = client.run(lambda dask_worker: plugin_name(weights, "cpu") in dask_worker.plugins)
        assert len(loaded) == 2 and all(loaded.values())
        probs = predict(data, ref, window=32, overlap=4, chunks=(30, 50))
        mask = to_mask(probs).compute()  # the client is the default scheduler
        # tasks used the plugin's model: no worker loaded a second copy into its process cache
        cached = client.run(lambda: len(__import__("s2mask.engine.cluster").engine.cluster._CACHE))
        assert set(cached.values()) == {0}
    finally:
        client.close()
    np.testing.assert_array_equal(mask.values, threaded.values)
    assert (mask.values[:20, :25] == 255).all()


def test_use_model_without_a_client_is_a_local_reference(weights: str) -> None:
    ref = use_model(None, weights, device="cpu")
    assert ref == ModelRef(weights, "cpu") and ref.resolve().device.type == "cpu"
