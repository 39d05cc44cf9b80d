"""Running the engine on a dask.distributed cluster.

A model is loaded once per worker process, never pickled into tasks:

* :class:`ModelPlugin` is a ``distributed.WorkerPlugin`` that loads the weights
  when a worker starts and sets torch's thread count;
* :class:`ModelRef` is the small picklable stand-in the task graph carries.  It
  follows the engine's model protocol and, when a task calls it, resolves to the
  plugin's model on a worker, else to a process-local cache (threaded scheduler,
  or a worker without the plugin).

Typical use::

    client = connect(workers=4)                 # or connect("tcp://scheduler:8786")
    model = use_model(client, "s2-9")           # registers the plugin, returns a ModelRef
    mask = to_mask(predict(cube, model)).compute()
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from distributed import Client, WorkerPlugin, get_worker

from s2mask.engine.predict import Model
from s2mask.errors import InvalidParameterError
from s2mask.model import load_model
from s2mask.model.device import cpu_count

__all__ = ["ModelPlugin", "ModelRef", "connect", "use_model", "plugin_name"]

_CACHE: dict[tuple[str, str], Model] = {}
_CACHE_LOCK = threading.Lock()


def _weights_key(weights: str | Path) -> str:
    """An existing weights file as an absolute path (workers may run elsewhere); a model name as is."""
    path = Path(weights).expanduser()
    return str(path.resolve()) if path.exists() else str(weights)


def plugin_name(weights: str | Path, device: str = "auto") -> str:
    """The key under which a :class:`ModelPlugin` for these weights sits in ``worker.plugins``."""
    return f"s2mask-model:{_weights_key(weights)}:{device}"


def _local_model(weights: str, device: str) -> Model:
    """Load ``weights`` once per process (thread-safe)."""
    key = (weights, device)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_model(weights, device=device)
        return _CACHE[key]


@dataclass(frozen=True)
class ModelRef:
    """A picklable handle to a model, resolved where the task runs.

    Implements the engine's model protocol (``bands``, ``num_classes``, ``card``,
    ``predict_proba``), so it can be passed to :func:`s2mask.engine.predict` directly.
    """

    weights: str
    """Shipped model name or absolute path to a weights file readable by every worker."""
    device: str = "auto"
    """Device each process loads the model on (``auto``, ``cpu``, ``cuda``, ``cuda:N``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", _weights_key(self.weights))

    def resolve(self) -> Model:
        """The worker plugin's model when running on a worker that has one, else a process-local load."""
        try:
            worker = get_worker()
        except ValueError:
            worker = None
        if worker is not None:
            plugin = worker.plugins.get(plugin_name(self.weights, self.device))
            if isinstance(plugin, ModelPlugin) and plugin.model is not None:
                return plugin.model
        return _local_model(self.weights, self.device)

    @property
    def card(self) -> Any:
        """The model card (loads the model in this process once)."""
        return self.resolve().card

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self.card.bands)

    @property
    def num_classes(self) -> int:
        return len(self.card.classes)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities from the resolved model."""
        return self.resolve().predict_proba(batch)


class ModelPlugin(WorkerPlugin):
    """Loads a model once per worker and sets torch's thread count.

    Args:
        weights: shipped model name or weights path (made absolute here).
        device: device to load on in each worker.
        threads: torch intra-op threads per worker; default: the worker's CPUs
            divided by ``workers_per_host``.
        workers_per_host: how many workers share a machine (used for the default threads).
    """

    def __init__(
        self,
        weights: str | Path,
        device: str = "auto",
        threads: int | None = None,
        *,
        workers_per_host: int = 1,
    ) -> None:
        self.weights = _weights_key(weights)
        self.device = str(device)
        self.threads = threads
        self.workers_per_host = max(1, int(workers_per_host))
        self.model: Model | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return plugin_name(self.weights, self.device)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["model"] = None  # never ship a loaded network
        return state

    def setup(self, worker: Any) -> None:
        threads = self.threads or max(1, cpu_count() // self.workers_per_host)
        self.model = load_model(self.weights, device=self.device, threads=threads)

    def teardown(self, worker: Any) -> None:
        self.model = None


def connect(
    scheduler: str | None = None,
    workers: int | None = None,
    *,
    weights: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
) -> Client | None:
    """A dask client: to ``scheduler`` (an address) or a new local cluster of ``workers`` processes.

    Local clusters get one thread per worker process (torch does the intra-op
    parallelism) and no dashboard; ``client.close()`` also shuts them down.  With
    ``weights``, a :class:`ModelPlugin` is registered so every worker loads the model
    once; pass ``ModelRef(weights, device)`` to ``predict``.  Returns None when
    neither ``scheduler`` nor ``workers`` is given: the engine then uses dask's
    threaded scheduler.
    """
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise InvalidParameterError(
                f"Cannot reach the dask scheduler at {scheduler!r} ({exc}); expected an address like "
                "tcp://host:8786 of a running scheduler. Start one with `dask scheduler` or use --workers N."
            ) from exc
    elif workers is None:
        return None
    elif int(workers) < 1:
        raise InvalidParameterError(f"workers is {workers}; expected a positive number of worker processes.")
    else:
        client = Client(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None)
    if weights is not None:
        use_model(client, weights, device=device, threads=threads)
    return client


def use_model(
    client: Client | None, weights: str | Path, *, device: str = "auto", threads: int | None = None
) -> ModelRef:
    """Register a :class:`ModelPlugin` on ``client``'s workers and return the matching :class:`ModelRef`.

    With ``client=None`` nothing is registered; the reference loads the model in this process.
    """
    if client is not None:
        hosts = [w.get("host") for w in client.scheduler_info().get("workers", {}).values()]
        per_host = max((hosts.count(h) for h in set(hosts)), default=1)
        client.register_plugin(ModelPlugin(weights, device, threads, workers_per_host=per_host))
    return ModelRef(str(weights), device)
