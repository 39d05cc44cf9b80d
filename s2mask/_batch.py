"""One loop over the products of a batch, for every command that writes one mask per product.

``s2mask run`` with several products and ``s2mask stac`` both take their products in order
through :func:`run_batch`:

* a product whose output path another product of the batch already claimed fails;
* ``skip(target)`` (``--resume``: the mask exists and validates) skips a product;
* any exception but ``KeyboardInterrupt``, ``MemoryError`` and ``SystemExit`` fails only that
  product, with a one-line reason (:func:`failure_reason`), and the batch goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s2mask.errors import OutputExistsError, S2MaskError

__all__ = ["Outcome", "failure_reason", "run_batch"]


@dataclass(frozen=True)
class Outcome:
    """What became of one product of a batch."""

    name: str
    """The product as the user named it (a path, an item id)."""
    target: Path
    """Its output path."""
    status: str
    """``done``, ``skipped`` or ``failed``."""
    value: Any = None
    """What ``work`` returned (``done``)."""
    reason: str = ""
    """One line saying why it failed (``failed``)."""


def failure_reason(exc: BaseException) -> str:
    """The one-line reason a product failed: an S2MaskError's own message, else a pointer to a bug."""
    if isinstance(exc, S2MaskError):
        return str(exc)
    return (
        f"unexpected {type(exc).__name__}: {exc} (this may be a bug in s2mask; rerun with --debug "
        "for the traceback and report it)"
    )


def run_batch(
    jobs: Sequence[tuple[str, Path]],
    work: Callable[[int, str, Path], Any],
    *,
    skip: Callable[[Path], bool] | None = None,
    on_start: Callable[[int, int, str], None] | None = None,
    on_error: Callable[[str, Exception], None] | None = None,
) -> list[Outcome]:
    """Run ``work(index, name, target)`` for each ``(name, target)`` job in order; one outcome per job.

    ``on_start(n, total, name)`` is called before each product, ``on_error(name, exc)`` as a
    product fails.
    """
    outcomes: list[Outcome] = []
    claimed: dict[Path, str] = {}
    for n, (name, target) in enumerate(jobs, start=1):
        if on_start:
            on_start(n, len(jobs), name)
        if target in claimed:
            exc: Exception = OutputExistsError(
                f"{name} would write {target}, like {claimed[target]} before it; expected one product per "
                "output name. Pass each product once, or run products with the same name into different folders."
            )
            outcomes.append(_failed(name, target, exc, on_error))
            continue
        claimed[target] = name
        if skip is not None and skip(target):
            outcomes.append(Outcome(name, target, "skipped"))
            continue
        try:
            outcomes.append(Outcome(name, target, "done", work(n - 1, name, target)))
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - one bad product must not stop the batch
            outcomes.append(_failed(name, target, exc, on_error))
    return outcomes


def _failed(
    name: str, target: Path, exc: Exception, on_error: Callable[[str, Exception], None] | None
) -> Outcome:
    if on_error:
        on_error(name, exc)
    return Outcome(name, target, "failed", reason=failure_reason(exc))
