"""Accuracy of a model on the real labelled scenes in ``../shared/data``.

* **ukis**: ``ukis_testscene/sentinel2.npz``, reflectance in B02,B03,B04,B08,B11,B12 with
  a reference mask (0 shadow, 1-3 clear types, 4 cloud -> project {0:2, 1:0, 2:0, 3:0, 4:1}).
  Bands the scene lacks are approximated (:func:`approximate_bands`: B05/B06/B07
  linearly interpolated by wavelength between B04 and B08) and the report says so.
* **s2cloudless**: ``s2cloudless_testscene/input_arrays.npz``, all 13 L1C bands with
  the s2cloudless cloud mask (machine labels, cloud only): cloud IoU over the whole
  scene and over rows 428: (never used as synthetic backgrounds), plus where the
  predicted shadows sit (next to predicted clouds? on water?).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from s2mask.bands import BANDS
from s2mask.errors import BandMismatchError, TrainingDataError
from training.labels import remap_labels
from training.metrics import confusion_matrix, metrics_from_confusion
from training.real_data import S2CLOUDLESS_HELDOUT_ROW

__all__ = [
    "approximate_bands",
    "predict_array",
    "ukis_scene",
    "evaluate_ukis",
    "evaluate_s2cloudless",
    "evaluate_real_scenes",
    "evaluate_accra",
    "evaluate_peer",
    "evaluate_nodata_edges",
    "nodata_edge_shares",
    "format_scene_table",
    "UKIS_TO_PROJECT",
    "S2CLOUDLESS_HELDOUT_ROW",
]

UKIS_TO_PROJECT = {0: 2, 1: 0, 2: 0, 3: 0, 4: 1}
"""ukis-csmask reference classes -> project classes."""
UKIS_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
_S2C_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def approximate_bands(have: dict[str, np.ndarray], want: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Stack ``want`` from ``have``; missing red-edge/NIR bands are interpolated by wavelength.

    A missing band between two present bands is interpolated linearly in wavelength
    (B05, B06, B07 from B04 and B08); a band outside the present range copies the
    nearest present band.  Returns the (C, H, W) stack and the names approximated.
    """
    present = sorted(have, key=lambda b: BANDS[b].wavelength_nm)
    waves = np.array([BANDS[b].wavelength_nm for b in present], float)
    out, approx = [], []
    for b in want:
        if b in have:
            out.append(have[b])
            continue
        if not present:
            raise BandMismatchError(f"No band to approximate {b} from.")
        w = BANDS[b].wavelength_nm
        hi = int(np.searchsorted(waves, w))
        if hi == 0 or hi == len(present):
            out.append(have[present[min(hi, len(present) - 1)]])
        else:
            lo_b, hi_b = present[hi - 1], present[hi]
            t = (w - waves[hi - 1]) / (waves[hi] - waves[hi - 1])
            out.append((1 - t) * have[lo_b] + t * have[hi_b])
        approx.append(b)
    return np.stack(out).astype(np.float32), approx


def predict_array(model, image: np.ndarray, *, tile: int = 512) -> np.ndarray:
    """Class map (H, W) uint8 of reflectance ``image`` (C, H, W) with a loaded model.

    Tiles of ``tile`` px with a 32 px overlap margin, so large scenes fit in memory.
    """
    c, h, w = image.shape
    m = 32
    out = np.zeros((h, w), np.uint8)
    for r in range(0, h, tile):
        for col in range(0, w, tile):
            r0, c0 = max(0, r - m), max(0, col - m)
            r1, c1 = min(h, r + tile + m), min(w, col + tile + m)
            probs = model.predict_proba(image[None, :, r0:r1, c0:c1])[0]
            cls = probs.argmax(0).astype(np.uint8)
            rr, cc = min(h, r + tile), min(w, col + tile)
            out[r:rr, col:cc] = cls[r - r0 : rr - r0, col - c0 : cc - c0]
    return out


def ukis_scene(shared_data: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The ukis scene as ``{band: (H, W) reflectance}`` and its project-class reference mask."""
    path = Path(shared_data) / "ukis_testscene" / "sentinel2.npz"
    if not path.exists():
        raise TrainingDataError(f"{path} is absent; pass the folder that holds ukis_testscene/.")
    with np.load(path) as d:
        img, msk = d["img"], d["msk"][..., 0]
    bands = {b: np.ascontiguousarray(img[..., i], dtype=np.float32) for i, b in enumerate(UKIS_BANDS)}
    return bands, remap_labels(msk, UKIS_TO_PROJECT)


def _water(green: np.ndarray, nir: np.ndarray) -> np.ndarray:
    return (green - nir) / np.maximum(green + nir, 1e-6) > 0.05


def _shadow_placement(pred: np.ndarray, water: np.ndarray, reach: int = 60) -> dict:
    """Share of predicted shadow pixels within ``reach`` px of a predicted cloud, and on water."""
    shadow = pred == 2
    n = int(shadow.sum())
    if not n:
        return {"shadow_pixels": 0, "shadow_near_cloud": None, "shadow_on_water": None}
    near = ndimage.binary_dilation(pred == 1, iterations=reach)
    return {
        "shadow_pixels": n,
        "shadow_near_cloud": round(float((shadow & near).sum() / n), 4),
        "shadow_on_water": round(float((shadow & water).sum() / n), 4),
    }


def evaluate_ukis(model, shared_data: str | Path) -> dict:
    """3-class metrics on the ukis scene (missing bands approximated and listed)."""
    have, ref = ukis_scene(shared_data)
    x, approx = approximate_bands(have, tuple(model.bands))
    pred = predict_array(model, x)
    return {
        **_three_class(ref, pred),
        "approximated_bands": approx,
        **_shadow_placement(pred, _water(have["B03"], have["B08"])),
    }


def s2cloudless_scene(shared_data: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The s2cloudless scene as ``{band: (H, W) reflectance}`` and its cloud mask (bool)."""
    path = Path(shared_data) / "s2cloudless_testscene" / "input_arrays.npz"
    if not path.exists():
        raise TrainingDataError(f"{path} is absent; pass the folder that holds s2cloudless_testscene/.")
    with np.load(path) as d:
        img, ref = d["s2_im"][0], d["cl_mask"][0] > 0
    return {b: np.ascontiguousarray(img[..., i]) for i, b in enumerate(_S2C_BANDS)}, ref


def _cloud_ious(cloud: np.ndarray, ref: np.ndarray) -> dict:
    r = S2CLOUDLESS_HELDOUT_ROW
    return {"cloud_iou": _iou(cloud, ref), "cloud_iou_heldout_rows": _iou(cloud[r:], ref[r:])}


def _three_class(ref: np.ndarray, pred: np.ndarray) -> dict:
    """Accuracy, macro F1/IoU, per-class figures, recall and predicted area of 3-class ``pred``."""
    m = metrics_from_confusion(confusion_matrix(ref, pred, 3), ("clear", "cloud", "shadow"))
    return {**m.to_dict(), **_recall_and_area(ref, pred)}


def evaluate_s2cloudless(model, shared_data: str | Path) -> dict:
    """Cloud IoU against the s2cloudless mask (whole scene and held-out rows) and shadow placement."""
    have, ref = s2cloudless_scene(shared_data)
    x, approx = approximate_bands(have, tuple(model.bands))
    pred = predict_array(model, x)
    cloud = pred == 1
    return {
        **_cloud_ious(cloud, ref),
        "cloud_fraction_pred": round(float(cloud.mean()), 4),
        "cloud_fraction_s2cloudless": round(float(ref.mean()), 4),
        "approximated_bands": approx,
        **_shadow_placement(pred, _water(have["B03"], have["B08"])),
    }


SCL_TO_PROJECT = {3: 2, 4: 0, 5: 0, 6: 0, 8: 1, 9: 1, 10: 1, 11: 0}
"""Sen2Cor scene classes -> project classes: shadow; vegetation, bare, water, snow clear;
cloud medium/high probability and thin cirrus cloud.  No data, defective, dark area and
unclassified pixels are ignored."""
ACCRA_BANDS = ("B02", "B03", "B04", "B06", "B08", "B11")


def accra_scene(shared_data: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The Accra L2A chip as ``{band: reflectance}`` and its Sen2Cor SCL in project classes."""
    import json

    import rasterio

    path = Path(shared_data) / "mdebris_l2a_scl" / "accra.tif"
    if not path.exists():
        raise TrainingDataError(f"{path} is absent; pass the folder that holds mdebris_l2a_scl/.")
    meta = json.loads(path.with_suffix(".json").read_text())
    with rasterio.open(path) as src:
        arr, names = src.read(), list(src.descriptions)
    scale, offset = meta["reflectance_scale"], meta["reflectance_offset"]
    bands = {
        b: np.clip(arr[i].astype(np.float32) * scale + offset, 0, 1)
        for i, b in enumerate(names)
        if b != "SCL"
    }
    return bands, remap_labels(arr[names.index("SCL")], SCL_TO_PROJECT)


def evaluate_accra(model, shared_data: str | Path) -> dict:
    """3-class agreement with Sen2Cor's SCL on the Accra L2A chip (a third opinion, not truth)."""
    have, ref = accra_scene(shared_data)
    x, approx = approximate_bands(have, tuple(model.bands))
    pred = predict_array(model, x)
    return {**_three_class(ref, pred), "approximated_bands": approx}


def _recall_and_area(ref: np.ndarray, pred: np.ndarray) -> dict:
    """Cloud and shadow recall, and predicted area over reference area, on labelled pixels."""
    known = ref != 255
    out = {}
    for k, name in ((1, "cloud"), (2, "shadow")):
        r = (ref == k) & known
        p = (pred == k) & known
        out[f"{name}_recall"] = round(float((r & p).sum() / max(1, r.sum())), 4)
        out[f"{name}_area_ratio"] = round(float(p.sum() / max(1, r.sum())), 4)
    return out


# --------------------------------------------------------------------------- the peer


class UkisPeer:
    """ukis-csmask as installed, run on the same arrays (``CSmask(...).csm``), when it is importable."""

    def __init__(self, level: str, bands: tuple[str, ...]) -> None:
        from ukis_csmask.mask import CSmask

        self.CSmask, self.level, self.bands = CSmask, level.lower(), bands
        names = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir16", "B12": "swir22"}
        self.order = [names[b] for b in bands]
        self.name = f"ukis-csmask {'6b' if len(bands) == 6 else '4b'}-{level.upper()}"

    def classes(self, have: dict[str, np.ndarray]) -> np.ndarray:
        import warnings

        img = np.stack([have[b] for b in self.bands], axis=-1).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.CSmask(img, band_order=self.order, product_level=self.level).csm[..., 0]


def _peer(level: str, bands: tuple[str, ...]) -> UkisPeer | None:
    try:
        return UkisPeer(level, bands)
    except ImportError:
        return None


def evaluate_peer(shared_data: str | Path) -> dict:
    """ukis-csmask on the same real labelled arrays; empty when it is not installed."""
    out: dict = {}
    p6 = _peer("L1C", UKIS_BANDS)
    if p6 is None:
        return {"note": "ukis-csmask is not installed (pip install 's2mask[teacher]')"}
    have, ref = ukis_scene(shared_data)
    out["ukis"] = {"peer": p6.name, **_three_class(ref, p6.classes(have))}
    have, ref = s2cloudless_scene(shared_data)
    out["s2cloudless"] = {"peer": p6.name, **_cloud_ious(p6.classes(have) == 1, ref)}
    p4 = _peer("L2A", ("B02", "B03", "B04", "B08"))
    have, ref = accra_scene(shared_data)
    out["accra_scl"] = {"peer": p4.name, **_three_class(ref, p4.classes(have))}
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return round(float((a & b).sum() / max(1, (a | b).sum())), 4)


# --------------------------------------------------------------------------- nodata edges


def nodata_edge_shares(model, image: np.ndarray, nodata: np.ndarray, *, near: int = 8, far: int = 40) -> dict:
    """Class shares of valid pixels within ``near`` px of nodata and beyond ``far`` px of it.

    ``image`` is run through the engine (:func:`s2mask.engine.predict.predict_array`, the
    path ``s2mask run`` takes) with ``nodata`` set to NaN.
    """
    from s2mask.engine.predict import predict_array as engine_predict

    x = image.astype(np.float32).copy()
    x[:, nodata] = np.nan
    probs = engine_predict(x, model, batch_size=4)
    pred = np.nan_to_num(probs, nan=-1).argmax(0)
    dist = ndimage.distance_transform_edt(~nodata)
    out = {}
    for name, sel in (("near", (dist > 0) & (dist <= near)), ("far", dist > far)):
        n = max(1, int(sel.sum()))
        out[name] = {
            c: round(float(((pred == k) & sel).sum() / n), 4)
            for k, c in enumerate(("clear", "cloud", "shadow"))
        }
    return out


def evaluate_nodata_edges(model, shared_data: str | Path) -> dict:
    """:func:`nodata_edge_shares` on documented-clear real scenes (L1C and L2A) with a nodata corner."""
    from training.real_data import real_scenes

    out = {}
    for sc in real_scenes(shared_data, only=("dsen2_l1c", "rsgislib_aberystwyth")):
        if "T49JGM" in sc.name:
            continue
        x, _ = approximate_bands(sc.bands, tuple(model.bands))
        h, w = x.shape[1:]
        yy, xx = np.mgrid[0:h, 0:w]
        corner = (yy / h + xx / w) < 0.45  # a swath-edge-like diagonal corner
        out[f"{sc.name} ({sc.level})"] = nodata_edge_shares(model, x, corner | np.isnan(x).any(axis=0))
    return out


def _ious(d: dict) -> str:
    return " / ".join(f"{v:.3f}" for v in d["per_class_iou"].values())


def format_scene_table(results: dict[str, dict]) -> str:
    """A markdown table of :func:`evaluate_real_scenes` results by model name, with the peer's rows."""
    head = (
        "| model | ukis scene macro IoU (IoU clear / cloud / shadow) | ukis shadow recall | "
        "s2cloudless scene, L1C: cloud IoU all / held-out rows | Accra L2A vs Sen2Cor SCL: macro IoU "
        "(clear / cloud / shadow) | Accra cloud / shadow recall | nodata edge: shadow share near / far |\n"
        "|---|---|---|---|---|---|---|"
    )
    rows, peer = [head], None
    for name, r in results.items():
        u, s2, a = r["ukis"], r["s2cloudless"], r["accra_scl"]
        edges = r.get("nodata_edges", {})
        near = max((e["near"]["shadow"] for e in edges.values()), default=float("nan"))
        far = max((e["far"]["shadow"] for e in edges.values()), default=float("nan"))
        approx = ", ".join(
            sorted(set(u.get("approximated_bands", [])) | set(a.get("approximated_bands", [])))
        )
        rows.append(
            f"| `{name}`{f' ({approx} approximated where absent)' if approx else ''} | "
            f"{u['macro_iou']:.3f} ({_ious(u)}) | {u['shadow_recall']:.3f} | "
            f"{s2['cloud_iou']:.3f} / {s2['cloud_iou_heldout_rows']:.3f} | {a['macro_iou']:.3f} ({_ious(a)}) | "
            f"{a['cloud_recall']:.3f} / {a['shadow_recall']:.3f} | {near:.3f} / {far:.3f} |"
        )
        peer = r.get("peer") or peer
    if peer and "ukis" in peer:
        u, s2, a = peer["ukis"], peer["s2cloudless"], peer["accra_scl"]
        rows.append(
            f"| {u['peer']} (L1C model) / {a['peer']} (Accra), same arrays | {u['macro_iou']:.3f} ({_ious(u)}) | "
            f"{u['shadow_recall']:.3f} | "
            f"{s2['cloud_iou']:.3f} / {s2['cloud_iou_heldout_rows']:.3f} | {a['macro_iou']:.3f} ({_ious(a)}) | "
            f"{a['cloud_recall']:.3f} / {a['shadow_recall']:.3f} | |"
        )
    return "\n".join(rows)


def evaluate_real_scenes(model, shared_data: str | Path, *, peer: bool = True) -> dict:
    """Every real labelled check here, keyed by scene (with ``level``), and the peer on the same arrays."""
    res = {
        "ukis": {"level": "unknown (ukis-csmask test scene)", **evaluate_ukis(model, shared_data)},
        "s2cloudless": {"level": "L1C", **evaluate_s2cloudless(model, shared_data)},
        "accra_scl": {"level": "L2A", **evaluate_accra(model, shared_data)},
        "nodata_edges": evaluate_nodata_edges(model, shared_data),
    }
    if peer:
        res["peer"] = evaluate_peer(shared_data)
    return res
