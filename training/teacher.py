"""Teacher labels: ukis-csmask's CloudSEN12+-trained U-Nets run over the real scenes.

ukis-csmask 1.0 (DLR, Apache-2.0) ships ONNX U-Nets (EfficientNet-B4 encoders) trained
on CloudSEN12+ human labels, for 4 bands (B02,B03,B04,B08) and 6 bands (+B11,B12), at
Level-1C and Level-2A.  :class:`Teacher` wraps one of them in the engine's model
protocol, so its windows are cut and blended by :func:`s2mask.engine.predict.predict_array`
exactly as s2mask's own models are; each window is averaged over the 8 flips/rotations.

:func:`build_teacher_dataset` labels every scene of :func:`training.real_data.real_scenes`
with the teacher of its level (6-band where B11 and B12 exist) and writes a training data
source: one npz per scene (reflectance as uint16 DN, the teacher's class probabilities as
uint8, 0-250) and a ``manifest.json`` with the provenance (teacher file and its sha256,
level, bands, source file and its sha256, split).  The same command rebuilds it bit for bit.

ukis-csmask is a training-time dependency only (``pip install 's2mask[teacher]'``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2mask.errors import TrainingDataError

__all__ = ["Teacher", "teacher_probabilities", "build_teacher_dataset", "TEACHER_BANDS", "PROB_SCALE"]

TEACHER_BANDS = {
    "6b": ("B02", "B03", "B04", "B08", "B11", "B12"),
    "4b": ("B02", "B03", "B04", "B08"),
}
"""Bands of ukis-csmask's models, in their order (blue, green, red, nir, swir16, swir22)."""
PROB_SCALE = 250.0
"""Teacher probabilities are stored as ``round(p * PROB_SCALE)`` in uint8."""
_FORMAT = "s2mask-teacher/1"


def _ukis_dir() -> Path:
    try:
        import onnxruntime  # noqa: F401
        import ukis_csmask
    except ImportError as exc:
        raise TrainingDataError(
            f"The teacher needs ukis-csmask and onnxruntime ({exc}); "
            "install them with: pip install 's2mask[teacher]'"
        ) from exc
    return Path(ukis_csmask.__file__).parent


def _dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 flips/rotations of the last two axes."""
    x = np.rot90(x, k % 4, axes=(-2, -1))
    return x[..., ::-1] if k >= 4 else x


def _undo_dihedral(x: np.ndarray, k: int) -> np.ndarray:
    x = x[..., ::-1] if k >= 4 else x
    return np.rot90(x, -(k % 4), axes=(-2, -1))


@dataclass(frozen=True)
class _TeacherCard:
    window_size: int = 256
    """ukis-csmask's models take 256 x 256 windows."""
    classes: tuple[str, ...] = ("clear", "cloud", "shadow")
    """ukis-csmask's background, clouds, cloud shadows."""


class Teacher:
    """One ukis-csmask ONNX model behind the engine's model protocol.

    Args:
        level: ``"L1C"`` or ``"L2A"``.
        variant: ``"6b"`` or ``"4b"``.
        tta: number of flips/rotations averaged per window (1-8).
        threads: onnxruntime intra-op threads (0: its default).
    """

    num_classes = 3

    def __init__(self, level: str, variant: str = "6b", *, tta: int = 8, threads: int = 0) -> None:
        import onnxruntime

        level = level.upper()
        if level not in ("L1C", "L2A") or variant not in TEACHER_BANDS:
            raise TrainingDataError(
                f"No ukis-csmask model for level {level!r} and variant {variant!r}; "
                "expected L1C or L2A and 6b or 4b."
            )
        self.level, self.variant, self.tta = level, variant, max(1, min(8, tta))
        self.bands = TEACHER_BANDS[variant]
        self.path = _ukis_dir() / f"model_{variant}_{level.lower()}.onnx"
        meta = json.loads(self.path.with_suffix(".json").read_text())
        mean, std = meta["data"]["dataset_statistics"]["img"]
        self.mean = np.asarray(mean, np.float32)[:, None, None]
        self.std = np.asarray(std, np.float32)[:, None, None]
        self.version = meta["model"]["version"]
        so = onnxruntime.SessionOptions()
        so.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            str(self.path), sess_options=so, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    @property
    def card(self) -> _TeacherCard:
        """What the engine reads from a model card: window size and class names."""
        return _TeacherCard()

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        from scipy.special import softmax

        from s2mask.model.normalize import fill_nodata

        x = (np.clip(fill_nodata(batch), 0.0, 1.0) - self.mean) / self.std
        acc = np.zeros((x.shape[0], 3) + x.shape[2:], np.float32)
        for k in range(self.tta):
            xi = np.ascontiguousarray(_dihedral(x, k), dtype=np.float32)
            logits = self.session.run(None, {self.input_name: xi})[0]
            acc += _undo_dihedral(softmax(logits, axis=1), k)
        return acc / self.tta


def choose_variant(bands: dict[str, np.ndarray]) -> str:
    """``6b`` when the scene has B11 and B12, else ``4b`` (B02,B03,B04,B08 are required)."""
    if all(b in bands for b in TEACHER_BANDS["6b"]):
        return "6b"
    if all(b in bands for b in TEACHER_BANDS["4b"]):
        return "4b"
    raise TrainingDataError(f"The teacher needs at least B02,B03,B04,B08; the scene has {','.join(bands)}.")


def teacher_probabilities(
    teacher: Teacher, bands: dict[str, np.ndarray], *, batch_size: int = 4
) -> np.ndarray:
    """(3, H, W) float32 teacher probabilities of a scene, NaN where every band is nodata."""
    from s2mask.engine.predict import predict_array

    x = np.stack([bands[b] for b in teacher.bands]).astype(np.float32)
    return predict_array(x, teacher, window=256, overlap=64, batch_size=batch_size)


def build_teacher_dataset(
    shared_data: str | Path,
    out_dir: str | Path,
    *,
    tta: int = 8,
    only: tuple[str, ...] | None = None,
    threads: int = 0,
    progress: bool = False,
) -> Path:
    """Label the real scenes of ``shared_data`` with the teacher and write them to ``out_dir``.

    Returns ``out_dir``; its ``manifest.json`` lists each scene with its provenance.
    """
    from s2mask import __version__
    from training.real_data import EXCLUDED, real_scenes

    root, out = Path(shared_data), Path(out_dir)
    scenes = real_scenes(root, only=only)
    if not scenes:
        raise TrainingDataError(f"No real scenes found under {root}; pass the shared data folder.")
    out.mkdir(parents=True, exist_ok=True)
    teachers: dict[tuple[str, str], Teacher] = {}
    hashes: dict[str, str] = {}
    entries = []
    for sc in scenes:
        names = list(sc.bands)
        x = np.stack([sc.bands[b] for b in names])
        if sc.clear:  # documented cloud-free: exact labels, no teacher
            probs = np.zeros((3,) + sc.shape, np.float32)
            probs[0] = 1.0
            entries.append(_entry(sc, names, probs, None, hashes, root))
            _save(out, sc, x, names, probs)
            continue
        variant = choose_variant(sc.bands)
        key = (sc.level, variant)
        if key not in teachers:
            teachers[key] = Teacher(sc.level, variant, tta=tta, threads=threads)
        t = teachers[key]
        probs = teacher_probabilities(t, sc.bands)
        entries.append(_entry(sc, names, probs, t, hashes, root))
        _save(out, sc, x, names, probs)
        if progress:
            e = entries[-1]
            print(
                f"{sc.name}: {sc.level} {variant} {sc.shape[0]}x{sc.shape[1]} "
                f"cloud {e['cloud_share']:.3f} shadow {e['shadow_share']:.3f}",
                flush=True,
            )
    manifest = {
        "format": _FORMAT,
        "generator": "training.teacher.build_teacher_dataset",
        "s2mask_version": __version__,
        "teacher": "ukis-csmask 1.0 (DLR, Apache-2.0), ONNX U-Nets trained on CloudSEN12+ human labels",
        "tta": tta,
        "prob_scale": PROB_SCALE,
        "classes": ["clear", "cloud", "shadow"],
        "excluded": list(EXCLUDED),
        "scenes": entries,
    }
    tmp = out / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(out / "manifest.json")
    return out


def _save(out: Path, sc, x: np.ndarray, names: list[str], probs: np.ndarray) -> None:
    dn = np.where(np.isnan(x), 0, np.round(np.nan_to_num(x) * 10000)).astype(np.uint16)
    p8 = np.round(np.nan_to_num(probs) * PROB_SCALE).astype(np.uint8)
    fname = _file_name(sc)
    tmp = out / f".{fname}.tmp.npz"
    np.savez_compressed(tmp, x=dn, bands=np.array(names), probs=p8, valid=~np.isnan(x).all(axis=0))
    tmp.replace(out / fname)


def _file_name(sc) -> str:
    return sc.name.replace("/", "__") + ".npz"


def _entry(sc, names, probs, teacher, hashes: dict, root: Path) -> dict:
    from training.real_data import file_sha256

    if sc.source not in hashes:
        hashes[sc.source] = file_sha256(root / sc.source)
    label = "documented clear (exact)" if teacher is None else "teacher probabilities"
    if teacher is not None and teacher.path.name not in hashes:
        hashes[teacher.path.name] = file_sha256(teacher.path)
    cls = np.nan_to_num(probs).argmax(0)
    return {
        "file": _file_name(sc),
        "name": sc.name,
        "level": sc.level,
        "split": sc.split,
        "bands": names,
        "shape": list(sc.shape),
        "source": sc.source,
        "source_sha256": hashes[sc.source],
        "label": label,
        "teacher": None if teacher is None else teacher.path.name,
        "teacher_version": None if teacher is None else teacher.version,
        "teacher_sha256": None if teacher is None else hashes[teacher.path.name],
        "tta": None if teacher is None else teacher.tta,
        "cloud_share": round(float((cls == 1).mean()), 4),
        "shadow_share": round(float((cls == 2).mean()), 4),
        "note": sc.note,
    }


def is_teacher_dataset(path: Path) -> bool:
    m = path / "manifest.json"
    return path.is_dir() and m.is_file() and json.loads(m.read_text()).get("format") == _FORMAT
