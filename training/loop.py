"""The training loop: U-Net from ``s2mask.model``, AdamW, cross-entropy ignoring 255.

Outputs in ``out_dir``: ``checkpoints/best_model.pth`` (best validation macro IoU),
``checkpoints/last.pth`` (every epoch, for ``--resume``), ``final_model_weights.pth``,
``metrics.csv`` and ``metrics.json`` (one row per epoch), ``training_curve.png``,
``test_metrics.json`` and ``samples/{input,gt,pred}_<i>.png``.  Every checkpoint is a
plain dict (``model``, ``card``, ...) that ``s2mask.model.load_model`` reads with
``weights_only=True``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from s2mask.bands import resolve_bands
from s2mask.errors import InvalidParameterError, TrainingDataError
from s2mask.model import CLASSES, ModelCard, build_model, load_model, normalize, resolve_device, set_threads
from training.augment import Augment
from training.data import PatchDataset, open_source
from training.labels import IGNORE
from training.metrics import Metrics, confusion_matrix, metrics_from_confusion
from training.samples import plot_curve, save_samples

__all__ = ["TrainConfig", "TrainResult", "train", "evaluate_net", "SoftCrossEntropy", "hard_labels"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on."""

    data: str
    """Dataset path (taco file, GeoTIFF pairs folder or synthetic shard folder)."""
    out_dir: str
    """Folder for checkpoints, logs, curve and samples."""
    bands: tuple[str, ...] = resolve_bands("s2-9")
    """Input bands in model order."""
    epochs: int = 10
    """Total number of epochs (a resumed run continues up to this number)."""
    batch_size: int = 8
    """Samples per step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (linear warm-up, cosine decay)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    width: int = 16
    """U-Net first-level width."""
    crop: int = 256
    """Training crop size in pixels."""
    window_size: int | None = None
    """Window size written into the card (default: ``crop``)."""
    aug: Augment = field(default_factory=Augment)
    """Flips and rotations."""
    seed: int = 0
    """Seed of torch and numpy."""
    class_weights: tuple[float, ...] | None = None
    """Cross-entropy class weights (default: equal)."""
    max_steps: int | None = None
    """Stop each epoch after this many steps (quick runs and tests)."""
    resume: str | None = None
    """Checkpoint (``checkpoints/last.pth``) to continue from."""
    init: str | None = None
    """Shipped model name or weights to fine-tune; its bands and classes are used."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda`` or ``mps``."""
    threads: int | None = None
    """Torch threads (default: all CPUs this process may use)."""
    name: str = "s2mask-unet"
    """Model name written into the card."""
    training_data: str = ""
    """Description of the data for the card (default: the dataset path)."""
    command: str = ""
    """The command line that started the run (for the card)."""
    filters: object = None
    """Source-specific filters (``training.data.taco.TacoFilter``)."""
    n_samples: int = 20
    """Number of sample prediction images to write."""
    log_every: int = 50
    """Print the running loss every this many steps."""
    amp: bool = False
    """Train under bfloat16 autocast (CUDA, or a CPU with bf16 units: about 2x faster on AMX)."""


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    out_dir: Path
    best_checkpoint: Path
    final_weights: Path
    history: list[dict]
    best_val: dict
    test: dict | None


def _card(
    cfg: TrainConfig, bands: tuple[str, ...], classes: tuple[str, ...], metrics: dict | None = None
) -> ModelCard:
    return ModelCard(
        name=cfg.name,
        bands=bands,
        classes=classes,
        width=cfg.width,
        window_size=cfg.window_size or cfg.crop,
        resolution=10,
        training_data=cfg.training_data or str(cfg.data),
        command=cfg.command,
        metrics=metrics or {},
    )


def _atomic_save(obj: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
    return path


def _lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t))

    return f


class SoftCrossEntropy(torch.nn.Module):
    """Cross-entropy against hard labels (``(N, H, W)``, 255 ignored) or soft ones (``(N, K, H, W)``).

    Soft targets are class probabilities (a teacher's), all zero where ignored; for
    one-hot targets the loss equals ``CrossEntropyLoss(weight, ignore_index=255)``:
    the per-pixel weight is ``sum_k t_k w_k`` and the mean is taken over those weights.
    """

    def __init__(self, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = weight
        self.hard = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == logits.ndim - 1:
            return self.hard(logits, target)
        logp = torch.log_softmax(logits, dim=1)
        t = target if self.weight is None else target * self.weight.view(1, -1, 1, 1)
        return -(t * logp).sum() / t.sum().clamp_min(1e-6)


def hard_labels(y: torch.Tensor) -> torch.Tensor:
    """Hard ``(N, H, W)`` labels of soft or hard targets (argmax; 255 where a soft target is all zero)."""
    if y.ndim == 3:
        return y
    return torch.where(y.sum(1) > 0, y.argmax(1), torch.full_like(y[:, 0], IGNORE, dtype=torch.long))


def evaluate_net(
    net: torch.nn.Module, loader, num_classes: int, device: torch.device, loss_fn=None
) -> tuple[np.ndarray, float]:
    """Confusion matrix and mean loss of ``net`` over ``loader`` (reflectance batches)."""
    net.eval()
    cm = np.zeros((num_classes, num_classes), np.int64)
    total, n = 0.0, 0
    with torch.inference_mode():
        for x, y in loader:
            x, y = normalize(x.to(device)), y.to(device)
            logits = net(x)
            if loss_fn is not None and (hard_labels(y) != IGNORE).any():
                total += float(loss_fn(logits, y)) * len(x)
                n += len(x)
            cm += confusion_matrix(hard_labels(y).cpu().numpy(), logits.argmax(1).cpu().numpy(), num_classes)
    return cm, (total / n if n else float("nan"))


def _write_logs(history: list[dict], out: Path) -> None:
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(history, indent=2))
    tmp.replace(out / "metrics.json")
    keys = [k for k in history[0] if not isinstance(history[0][k], (dict, list))]
    tmp = out / ".metrics.csv.tmp"
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(history)
    tmp.replace(out / "metrics.csv")
    plot_curve(history, out / "training_curve.png")


def _resolve_init(cfg: TrainConfig) -> tuple[TrainConfig, dict | None, tuple[str, ...]]:
    """Carry bands, classes and width over from ``--init``; return its state dict."""
    if not cfg.init:
        return cfg, None, CLASSES
    loaded = load_model(cfg.init, device="cpu")
    card = loaded.card
    if cfg.bands != card.bands:
        print(f"--init {cfg.init}: using its bands {','.join(card.bands)} (not {','.join(cfg.bands)})")
    cfg = replace(cfg, bands=card.bands, width=card.width)
    return cfg, {k: v.clone() for k, v in loaded.net.state_dict().items()}, tuple(card.classes)


def train(cfg: TrainConfig) -> TrainResult:
    """Train (or resume, or fine-tune) a U-Net as ``cfg`` says; see the module docstring for outputs."""
    # setup
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    out = Path(cfg.out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    cfg, init_state, classes = _resolve_init(cfg)
    ckpt = None
    if cfg.resume:
        rp = Path(cfg.resume)
        if not rp.exists():
            raise TrainingDataError(
                f"Checkpoint {rp} to resume from does not exist; give checkpoints/last.pth."
            )
        ckpt = torch.load(rp, map_location="cpu", weights_only=True)
        card = ModelCard.from_dict(ckpt["card"])
        cfg = replace(cfg, bands=card.bands, width=card.width)
        classes = tuple(card.classes)
    k = len(classes)

    # data
    train_src = open_source(cfg.data, split="train", bands=cfg.bands, filters=cfg.filters)
    val_src = open_source(cfg.data, split="validation", bands=cfg.bands, filters=cfg.filters)
    try:
        test_src = open_source(cfg.data, split="test", bands=cfg.bands, filters=cfg.filters)
    except TrainingDataError:
        test_src = None
    gen = torch.Generator().manual_seed(cfg.seed)
    train_dl = torch.utils.data.DataLoader(
        PatchDataset(train_src, crop=cfg.crop, train=True, aug=cfg.aug, seed=cfg.seed),
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(train_src) > cfg.batch_size,
        generator=gen,
    )
    val_dl = torch.utils.data.DataLoader(
        PatchDataset(val_src, crop=cfg.crop, train=False), batch_size=cfg.batch_size
    )

    # model, optimiser, schedule
    net = build_model(_card(cfg, cfg.bands, classes)).to(device)
    if init_state is not None:
        net.load_state_dict(init_state)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = min(len(train_dl), cfg.max_steps or len(train_dl))
    total = max(1, steps_per_epoch * cfg.epochs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, min(100, total // 10 + 1)))
    weight = (
        torch.tensor(cfg.class_weights, dtype=torch.float32, device=device) if cfg.class_weights else None
    )
    if weight is not None and len(weight) != k:
        raise InvalidParameterError(f"{len(weight)} class weights given for {k} classes; give one per class.")
    loss_fn = SoftCrossEntropy(weight)
    history: list[dict] = []
    best_iou, start = -1.0, 1
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        history, best_iou, start = list(ckpt["history"]), float(ckpt["best_iou"]), int(ckpt["epoch"]) + 1
        torch.set_rng_state(ckpt["torch_rng"])
        gen.manual_seed(cfg.seed + 1000 * start)  # a resumed run does not replay epoch 1's order
        print(f"resuming from {cfg.resume} after epoch {start - 1} (best val macro IoU {best_iou:.4f})")

    # epochs
    for epoch in range(start, cfg.epochs + 1):
        net.train()
        t0, run, n = time.time(), 0.0, 0
        for step, (x, y) in enumerate(train_dl):
            if step >= steps_per_epoch:
                break
            x, y = normalize(x.to(device)), y.to(device)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                logits = net(x)
            loss = loss_fn(logits.float(), y)
            if torch.isfinite(loss):
                loss.backward()
                opt.step()
                run, n = run + float(loss.detach()), n + 1
            sched.step()
            if cfg.log_every and (step + 1) % cfg.log_every == 0:
                print(
                    f"epoch {epoch} step {step + 1}/{steps_per_epoch} loss {run / max(n, 1):.4f} "
                    f"({time.time() - t0:.0f}s)",
                    flush=True,
                )
        cm, val_loss = evaluate_net(net, val_dl, k, device, loss_fn)
        m = metrics_from_confusion(cm, classes)
        row = {
            "epoch": epoch,
            "train_loss": run / max(n, 1),
            "val_loss": val_loss,
            "val_accuracy": m.accuracy,
            "val_macro_f1": m.macro_f1,
            "val_macro_iou": m.macro_iou,
            **{f"val_iou_{c}": v for c, v in m.per_class_iou.items()},
            "lr": opt.param_groups[0]["lr"],
            "seconds": round(time.time() - t0, 1),
        }
        history.append(row)
        print(
            " ".join(f"{a}={b:.4f}" if isinstance(b, float) else f"{a}={b}" for a, b in row.items()),
            flush=True,
        )
        improved = m.macro_iou > best_iou
        if improved:
            best_iou = m.macro_iou
            card = _card(cfg, cfg.bands, classes, {"validation": m.to_dict(), "epoch": epoch})
            _atomic_save(
                {"model": net.state_dict(), "card": card.to_dict(), "epoch": epoch, "metrics": m.to_dict()},
                out / "checkpoints" / "best_model.pth",
            )
        _atomic_save(
            {
                "model": net.state_dict(),
                "card": _card(cfg, cfg.bands, classes).to_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch,
                "best_iou": best_iou,
                "history": history,
                "torch_rng": torch.get_rng_state(),
                "config": _plain_config(cfg),
            },
            out / "checkpoints" / "last.pth",
        )
        _write_logs(history, out)

    # final weights, test metrics and samples (with the best checkpoint)
    final = _atomic_save(
        {"model": net.state_dict(), "card": _card(cfg, cfg.bands, classes).to_dict(), "epoch": cfg.epochs},
        out / "final_model_weights.pth",
    )
    best_path = out / "checkpoints" / "best_model.pth"
    best = torch.load(best_path, map_location="cpu", weights_only=True)
    net.load_state_dict(best["model"])
    test = None
    eval_src = test_src if test_src is not None else val_src
    if test_src is not None:
        test_dl = torch.utils.data.DataLoader(
            PatchDataset(test_src, crop=cfg.crop, train=False), batch_size=cfg.batch_size
        )
        cm, test_loss = evaluate_net(net, test_dl, k, device, loss_fn)
        test = {**metrics_from_confusion(cm, classes).to_dict(), "loss": test_loss, "checkpoint": "best"}
        tmp = out / ".test_metrics.json.tmp"
        tmp.write_text(json.dumps(test, indent=2))
        tmp.replace(out / "test_metrics.json")
    _write_samples(net, eval_src, cfg, device, out / "samples")
    return TrainResult(out, best_path, final, history, best.get("metrics", {}), test)


def _plain_config(cfg: TrainConfig) -> dict:
    d = asdict(cfg)
    d["filters"] = None if cfg.filters is None else str(cfg.filters)
    d["bands"] = list(cfg.bands)
    d["class_weights"] = list(cfg.class_weights) if cfg.class_weights else None
    return d


def _write_samples(net, source, cfg: TrainConfig, device, out: Path) -> None:
    ds = PatchDataset(source, crop=cfg.crop, train=False)
    idx = np.linspace(0, len(ds) - 1, min(cfg.n_samples, len(ds))).round().astype(int)
    images, labels, preds = [], [], []
    net.eval()
    with torch.inference_mode():
        for i in idx:
            x, y = ds[int(i)]
            p = net(normalize(x[None].to(device))).argmax(1)[0].cpu().numpy().astype(np.uint8)
            images.append(x.numpy()), labels.append(hard_labels(y[None])[0].numpy()), preds.append(p)
    save_samples(out, images, labels, preds, cfg.bands)


def metrics_of(cm: np.ndarray, classes=CLASSES) -> Metrics:
    """Shorthand used by the CLI."""
    return metrics_from_confusion(cm, classes)
