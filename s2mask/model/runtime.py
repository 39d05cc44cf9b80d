"""Where a model runs: torch (fp32 or bf16, any device) or an ONNX runtime (int8, CPU).

:func:`load_model` is the one entry point.  It decides, once, the *runtime* and the
*precision* (:func:`plan_inference`) and returns an object with the engine's model
protocol (``bands``, ``num_classes``, ``card``, ``predict_proba``):

* ``torch`` runs the ``.safetensors`` weights (:class:`s2mask.model.weights.LoadedModel`):
  fp32, or bf16 autocast on CPUs with bf16 units; CUDA and MPS always go here.
* ``openvino`` and ``onnxruntime`` run the model's int8 file, ``<name>.int8.onnx`` beside
  the weights: post-training static quantization (QDQ, per-channel int8 weights, uint8
  activations) calibrated on real scenes (``python -m training quantize``).  On CPUs with
  int8 dot-product units (AVX512-VNNI, AVX-VNNI, AMX) it runs 3-4x torch fp32, and on the
  real labelled scenes it moves macro IoU by at most 0.005 (training/SHIPPED_MODELS.md).

``auto`` takes int8 on a CPU-only machine whose CPU has those units when an int8 file
exists for the weights, it was made from these very weights (its metadata records their
SHA-256) and OpenVINO or ONNX Runtime is installed (OpenVINO first: it is the faster
here); otherwise torch at its own ``auto`` precision.  Nothing on the int8 path imports
torch, so a CLI run on it also starts faster.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from s2mask.errors import DeviceError, InvalidParameterError, WeightsError
from s2mask.model.card import CardModel, ModelCard
from s2mask.model.device import cpu_count, cpu_has_fast_int8, gpu_may_be_present
from s2mask.model.normalize import normalize

__all__ = [
    "RUNTIMES",
    "PRECISIONS",
    "ONNX_RUNTIMES",
    "InferencePlan",
    "OnnxModel",
    "installed_runtimes",
    "int8_path",
    "load_model",
    "plan_inference",
    "read_onnx_metadata",
    "shipped_models",
    "file_sha256",
    "compiled_cache_dir",
]

RUNTIMES = ("auto", "torch", "openvino", "onnxruntime")
PRECISIONS = ("auto", "fp32", "bf16", "int8")
ONNX_RUNTIMES = ("openvino", "onnxruntime")
"""In order of preference: OpenVINO ran the int8 model 1.6x faster than ONNX Runtime here."""

INT8_SUFFIX = ".int8.onnx"
CARD_KEY = "s2mask_card"
"""ONNX metadata: the model card as JSON."""
SOURCE_KEY = "s2mask_source_sha256"
"""ONNX metadata: SHA-256 of the ``.safetensors`` file the int8 model was made from."""
CALIBRATION_KEY = "s2mask_calibration"
"""ONNX metadata: what the activation ranges were calibrated on (JSON)."""

_MULTIPLE = 16
"""The U-Net halves the grid 4 times: ONNX inputs are padded to a multiple of 16 px."""

_INSTALL = "pip install 'openvino>=2024.0' (or 'onnxruntime>=1.17'), e.g. pip install 's2mask[fast]'"


def shipped_models() -> dict[str, Path]:
    """Names and paths of the models that ship inside the package (their ``.safetensors``)."""
    root = resources.files("s2mask") / "models"
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".safetensors")}


def int8_path(weights: str | Path) -> Path:
    """Where the int8 model of ``weights`` lives: ``<stem>.int8.onnx`` beside it."""
    weights = Path(weights)
    return weights.with_name(weights.stem + INT8_SUFFIX)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file (an int8 model records its source weights by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def installed_runtimes() -> tuple[str, ...]:
    """The ONNX runtimes importable here, in order of preference."""
    return tuple(r for r in ONNX_RUNTIMES if importlib.util.find_spec(r) is not None)


@dataclass(frozen=True)
class InferencePlan:
    """The runtime and precision a model will run at, and why."""

    runtime: str
    """``torch``, ``openvino`` or ``onnxruntime``."""
    precision: str
    """``fp32``, ``bf16`` (torch autocast) or ``int8``; ``auto`` means torch decides (fp32/bf16)."""
    reason: str
    """Why, in a few words; the run summary records it (``model.runtime_reason``)."""


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    v = str(value).lower()
    if v not in choices:
        raise InvalidParameterError(f"Unknown {what} {value!r}; expected one of {', '.join(choices)}.")
    return v


def plan_inference(
    *,
    runtime: str = "auto",
    precision: str = "auto",
    device: str = "auto",
    int8_file: Path | None = None,
    int8_current: bool = True,
    installed: tuple[str, ...] | None = None,
    fast_int8: bool | None = None,
    gpu: bool | None = None,
) -> InferencePlan:
    """Choose runtime and precision (see the module docstring); errors name the fix.

    ``int8_file`` is the model's int8 file if it exists, ``int8_current`` whether it was made
    from the weights being loaded.  ``installed``, ``fast_int8`` and ``gpu`` default to what
    this machine has (tests pass them to cover other machines).
    """
    runtime = _check_choice(runtime, RUNTIMES, "runtime")
    precision = _check_choice(precision, PRECISIONS, "precision")
    dev = str(device).lower().split(":")[0]
    installed = installed_runtimes() if installed is None else installed
    onnx_wanted = runtime in ONNX_RUNTIMES or precision == "int8"
    if onnx_wanted:
        if runtime == "torch":
            raise InvalidParameterError(
                "int8 runs on an ONNX runtime, not on torch; use --runtime auto, openvino or onnxruntime."
            )
        if precision in ("fp32", "bf16"):
            raise InvalidParameterError(
                f"--runtime {runtime} runs the int8 model; {precision} runs on torch (--runtime torch or auto)."
            )
        if dev not in ("auto", "cpu"):
            raise DeviceError(
                f"The int8 model runs on the CPU only; drop --device {device} or use --runtime torch."
            )
        if int8_file is None:
            raise WeightsError(
                "These weights have no int8 model beside them (<name>.int8.onnx); make one with "
                "`python -m training quantize --weights <file>`, or use --precision fp32."
            )
        if not int8_current:
            raise WeightsError(
                f"{int8_file} was made from other weights than the ones loaded (their SHA-256 differs); "
                "rebuild it with `python -m training quantize`, or use --precision fp32."
            )
        choice = runtime if runtime in ONNX_RUNTIMES else next(iter(installed), None)
        if choice is None:
            raise InvalidParameterError(f"int8 needs an ONNX runtime and none is installed; {_INSTALL}.")
        if choice not in installed:
            raise InvalidParameterError(f"{choice} is not installed; {_INSTALL}.")
        why = f"{runtime} asked for" if runtime in ONNX_RUNTIMES else f"int8 asked for; running on {choice}"
        return InferencePlan(choice, "int8", why)
    if runtime == "torch" or precision in ("fp32", "bf16"):
        return InferencePlan(
            "torch", precision, "torch asked for" if runtime == "torch" else f"{precision} asked for"
        )
    # runtime auto, precision auto
    if dev not in ("auto", "cpu"):
        return InferencePlan("torch", "auto", f"device {device} runs on torch")
    if dev == "auto" and (gpu_may_be_present() if gpu is None else gpu):
        return InferencePlan("torch", "auto", "a GPU may be present: torch decides the device")
    if int8_file is None:
        return InferencePlan("torch", "auto", "no int8 model for these weights")
    if not int8_current:
        warnings.warn(
            f"{int8_file} was made from other weights (SHA-256 differs) and is ignored; rebuild it with "
            "`python -m training quantize`.",
            stacklevel=3,
        )
        return InferencePlan("torch", "auto", "the int8 model is stale")
    if not (cpu_has_fast_int8() if fast_int8 is None else fast_int8):
        return InferencePlan("torch", "auto", "this CPU has no int8 dot-product units (VNNI/AMX)")
    if not installed:
        return InferencePlan("torch", "auto", "neither OpenVINO nor ONNX Runtime is installed")
    return InferencePlan(installed[0], "int8", f"CPU with int8 units and {installed[0]} installed")


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``s2mask_*`` metadata of an ONNX model file, read with whichever ONNX runtime is installed.

    Both expose the model's metadata properties; the model is read, not compiled.
    """
    path = Path(path)
    installed = installed_runtimes()
    if not installed:
        raise InvalidParameterError(f"Reading {path.name} needs an ONNX runtime; {_INSTALL}.")
    try:
        if installed[0] == "openvino":
            import openvino as ov

            model = ov.Core().read_model(str(path))
            keys = (CARD_KEY, SOURCE_KEY, CALIBRATION_KEY)
            return {
                k: model.get_rt_info(["framework", k]).astype(str)
                for k in keys
                if model.has_rt_info(["framework", k])
            }
        import onnxruntime as ort

        meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
        return {k: v for k, v in meta.custom_metadata_map.items() if k.startswith("s2mask_")}
    except Exception as exc:
        raise WeightsError(f"Cannot read the ONNX model {path} ({type(exc).__name__}: {exc}).") from exc


def compiled_cache_dir() -> Path | None:
    """Where OpenVINO keeps compiled models between runs, or ``None`` (no caching).

    A cached model compiles in 0.07 s instead of 0.19 s (BENCHMARKS.md, start-up); OpenVINO keys each
    entry by the model file, its settings and the CPU, so a new model or runtime never reuses an old
    one. ``S2MASK_CACHE_DIR`` chooses the folder (set it empty to switch caching off); the default
    is ``$XDG_CACHE_HOME/s2mask/openvino`` (``~/.cache/s2mask/openvino``). A folder that cannot be
    created or written means no caching, never an error.
    """
    chosen = os.environ.get("S2MASK_CACHE_DIR")
    if chosen is not None and not chosen.strip():
        return None
    base = Path(chosen) if chosen else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "s2mask"
    folder = base.expanduser() / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK | os.X_OK) else None


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class OnnxModel(CardModel):
    """An ONNX model (the int8 file) on OpenVINO or ONNX Runtime, with the engine's model protocol.

    ``predict_proba`` takes reflectance ``(N, C, H, W)`` float32 (NaN allowed) in the card's
    band order and returns class probabilities ``(N, K, H, W)`` float32, as
    :class:`~s2mask.model.weights.LoadedModel` does.  Calls are serialised (one request at a
    time; the runtime's own threads do the work).  Picklable: a copy reopens the file.
    """

    device = "cpu"

    def __init__(
        self,
        path: str | Path,
        *,
        runtime: str = "openvino",
        threads: int | None = None,
        card: ModelCard | None = None,
    ) -> None:
        self.path = Path(path)
        self.runtime = _check_choice(runtime, ONNX_RUNTIMES, "ONNX runtime")
        self.threads = max(1, int(threads)) if threads else cpu_count()
        meta = read_onnx_metadata(self.path) if card is None else {}
        if card is None:
            if CARD_KEY not in meta:
                raise WeightsError(
                    f"{self.path} carries no s2mask model card; export it with `python -m training quantize`."
                )
            card = ModelCard.from_dict(json.loads(meta[CARD_KEY]))
        self.card = card
        self.precision = "int8"
        self._lock = threading.Lock()
        self._run = self._open()

    def _open(self) -> Any:
        if self.runtime == "openvino":
            import openvino as ov

            # no pinning: the engine's reader threads share the cores with the model, and threads
            # pinned to a core wait for it (full SAFE tile: 116-125 s unpinned, 120-151 s pinned)
            config = {
                "INFERENCE_NUM_THREADS": self.threads,
                "PERFORMANCE_HINT": "LATENCY",
                "ENABLE_CPU_PINNING": False,
            }
            core = ov.Core()
            cache = compiled_cache_dir()
            if cache is not None:
                core.set_property({"CACHE_DIR": str(cache)})
            compiled = core.compile_model(str(self.path), "CPU", config)
            request = compiled.create_infer_request()

            def run(x: np.ndarray) -> np.ndarray:
                request.infer([x])
                return request.get_output_tensor(0).data.copy()

            return run
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = self.threads, 1
        session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(
            normalize(np.asarray(batch, dtype=np.float32), self.card.normalization), np.float32
        )
        h, w = x.shape[-2:]
        ph, pw = -h % _MULTIPLE, -w % _MULTIPLE
        if ph or pw:  # the exported graph has no shape-dependent padding: pad here, crop after
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge")
        with self._lock:
            logits = self._run(x)
        return _softmax(np.asarray(logits, dtype=np.float32)[..., :h, :w])

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "runtime": self.runtime, "threads": self.threads, "card": self.card}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], runtime=state["runtime"], threads=state["threads"], card=state["card"])

    def __repr__(self) -> str:
        return f"OnnxModel({self.path.name!r}, runtime={self.runtime!r}, threads={self.threads})"


def _resolve_weights(weights: str | Path) -> Path:
    shipped = shipped_models()
    if str(weights) in shipped:
        return shipped[str(weights)]
    path = Path(weights)
    if not path.exists():
        if path.suffix or "/" in str(weights):
            raise WeightsError(f"Weights file {weights} does not exist; check the path.")
        names = ", ".join(sorted(shipped)) or "none"
        raise WeightsError(f"Unknown model name {weights!r}; shipped models are: {names}.")
    return path


def _int8_state(path: Path) -> tuple[Path | None, bool, ModelCard | None]:
    """The int8 file beside ``path`` (or None), whether it was made from ``path``, and its card."""
    onnx = int8_path(path)
    if not onnx.exists() or not installed_runtimes():
        return (onnx if onnx.exists() else None), True, None
    meta = read_onnx_metadata(onnx)
    card = ModelCard.from_dict(json.loads(meta[CARD_KEY])) if CARD_KEY in meta else None
    return onnx, meta.get(SOURCE_KEY) == file_sha256(path), card


def load_model(
    weights: str | Path,
    *,
    device: str = "auto",
    card_overrides: dict[str, Any] | None = None,
    precision: str = "auto",
    runtime: str = "auto",
    threads: int | None = None,
) -> Any:
    """Load a shipped model by name (``"s2-9"``, ``"rgbn"``), a weights file or an ``.onnx`` file.

    ``runtime``: ``auto``, ``torch``, ``openvino`` or ``onnxruntime``; ``precision``: ``auto``,
    ``fp32``, ``bf16`` (torch) or ``int8`` (ONNX runtimes); see :func:`plan_inference`.
    ``threads``: compute threads (default: the CPUs this process may use); on torch this sets
    torch's intra-op threads for the process.  ``card_overrides`` replace card fields (torch only).
    Returns a :class:`~s2mask.model.weights.LoadedModel` or an :class:`OnnxModel`; both carry
    ``runtime`` and ``precision``.
    """
    path = _resolve_weights(weights)
    if path.suffix == ".onnx":  # an ONNX file given directly: it is what it is
        plan = plan_inference(
            runtime=runtime,
            precision="int8" if precision == "auto" else precision,
            device=device,
            int8_file=path,
        )
        return _with_reason(OnnxModel(path, runtime=plan.runtime, threads=threads), plan)
    int8_file, current, card = (None, True, None) if card_overrides else _int8_state(path)
    if card_overrides and (runtime in ONNX_RUNTIMES or precision == "int8"):
        raise InvalidParameterError(
            "card_overrides apply to the torch runtime only; drop them or use runtime='torch'."
        )
    plan = plan_inference(
        runtime=runtime, precision=precision, device=device, int8_file=int8_file, int8_current=current
    )
    if plan.runtime in ONNX_RUNTIMES:
        assert int8_file is not None
        return _with_reason(OnnxModel(int8_file, runtime=plan.runtime, threads=threads, card=card), plan)
    from s2mask.model.device import set_threads
    from s2mask.model.weights import load_torch_model

    if threads is not None:
        set_threads(threads)
    return _with_reason(
        load_torch_model(path, device=device, precision=plan.precision, card_overrides=card_overrides), plan
    )


def _with_reason(model: Any, plan: InferencePlan) -> Any:
    model.runtime_reason = plan.reason
    return model
