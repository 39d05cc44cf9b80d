"""Write-to-temp-then-rename helpers: an output either appears complete or not at all.

Every file s2mask writes (COGs, quick-looks, JSON summaries) goes through
:func:`atomic_output`:

1. :func:`check_target` runs *before* any computation: it refuses an existing target
   unless ``overwrite`` is set and checks that the folder exists and is writable.
2. The caller writes into a temporary file beside the target whose name starts with
   ``"."`` (hidden) and ends in ``".tmp<suffix>"``, e.g. ``.mask.tif.3f9a1c.tmp.tif``.
3. On success the temporary file is flushed to disk and renamed onto the target in one
   step (``os.link`` when overwriting is not allowed, so a file that appeared meanwhile
   is never clobbered; ``os.replace`` otherwise).  On any failure, including
   ``KeyboardInterrupt``, the temporary files are removed and an older output at the
   target stays untouched.

Operating-system failures while writing (disk full, permission denied, ...) become
:class:`~s2mask.errors.OutputError`; other exceptions propagate unchanged.

The several outputs of one product (mask, probabilities, summary, quick-look; a composite
and its quick-look) are one :class:`OutputTransaction`: staged beside their targets, then
published in order, the one ``--resume`` checks last, or removed together.  SIGTERM becomes
``SystemExit`` in the CLI (:func:`sigterm_as_exit`) so these clean-ups run; what a SIGKILL
leaves behind is removed by the next batch into the folder (:func:`remove_stale_temps`).

Output folders follow one rule: writers (:func:`check_target`, hence ``write_cog``,
``write_summary``...) refuse a missing folder, and the orchestrators that produce a product's
outputs (``run_product``, ``run_many``, ``run_stac``, ``composite_products``, ``composite_stac``,
hence every command) create it first with :func:`ensure_folder`.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from s2mask.errors import OutputError, OutputExistsError, S2MaskError

__all__ = [
    "TEMP_MARKER",
    "OutputTransaction",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_target",
    "check_targets",
    "describe_os_error",
    "ensure_folder",
    "remove_stale_temps",
    "remove_temps",
    "sigterm_as_exit",
    "temp_path_for",
]

TEMP_MARKER = ".tmp"
"""Every temporary file name starts with ``"."`` and contains ``".tmp"`` before its suffix."""


def temp_path_for(target: str | os.PathLike[str], suffix: str | None = None) -> Path:
    """A fresh hidden temporary path beside ``target``: ``.<name>.<random>.tmp<suffix>``.

    ``suffix`` defaults to the target's own suffix so drivers that look at extensions
    (GDAL, Pillow) pick the right format.
    """
    target = Path(target)
    suffix = target.suffix if suffix is None else suffix
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMP_MARKER}{suffix}")


def check_target(target: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Check that ``target`` can be written; return it as an absolute :class:`Path`.

    Raises:
        OutputExistsError: ``target`` exists and ``overwrite`` is false.
        OutputError: ``target`` is a folder, its parent is missing, is not a folder or
            is not writable.
    """
    target = Path(target).expanduser().absolute()
    parent = target.parent
    if target.is_dir():
        raise OutputError(
            f"The output path {target} is a folder; expected a file path. Give a file name inside it."
        )
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"The output {target} already exists; s2mask does not replace files unless asked. "
            "Pass overwrite=True (CLI: --overwrite) or choose another path."
        )
    if not parent.exists():
        raise OutputError(
            f"The output folder {parent} does not exist; expected an existing folder. "
            f"Create it first (mkdir -p {parent}) or choose another output path."
        )
    if not parent.is_dir():
        raise OutputError(
            f"The output folder {parent} is not a folder (it is a file); expected a folder. "
            "Choose an output path inside a folder."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(
            f"The output folder {parent} is not writable by this user; expected write permission. "
            "Fix its permissions (chmod u+w) or choose another output folder."
        )
    return target


def ensure_folder(folder: str | os.PathLike[str]) -> Path:
    """Create the output folder ``folder`` (and its parents) if missing; return it, absolute.

    Raises:
        OutputError: ``folder`` is a file, cannot be created, or is not writable.
    """
    folder = Path(folder).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise OutputError(
            f"Output folder {folder} is a file; expected a folder. Choose another -o path inside a folder."
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"Cannot create the output folder {folder} ({exc.strerror or exc}); expected a folder s2mask can "
            "create. Choose another -o path or create the folder first."
        ) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(
            f"Output folder {folder} is not writable by this user; expected write permission. "
            "Choose another -o path or fix its permissions (chmod u+w)."
        )
    return folder


def check_targets(targets: Iterable[str | os.PathLike[str] | None], *, overwrite: bool = False) -> list[Path]:
    """:func:`check_target` for every output of a run (``None`` entries skipped), before any work.

    All outputs are checked first so a run never computes for minutes and then stops at
    its second output.  Two outputs at the same path are refused too.
    """
    checked = [check_target(t, overwrite=overwrite) for t in targets if t is not None]
    seen: set[Path] = set()
    for path in checked:
        if path in seen:
            raise OutputError(
                f"Two outputs of the same run would be written to {path}; expected distinct paths. "
                "Give each output its own file name."
            )
        seen.add(path)
    return checked


def describe_os_error(exc: BaseException, target: Path) -> str:
    """A one-line message for an operating-system failure while writing ``target``."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code == errno.ENOSPC or "No space left" in text or "free disk space" in text.lower():
        return (
            f"Writing {target} failed: the disk is full ({text}). Nothing was written and any "
            "earlier output is untouched; free some space or choose another output folder."
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Writing {target} failed: permission denied ({text}). Choose a writable output folder."
    return (
        f"Writing {target} failed: {text or type(exc).__name__}. Nothing was written and any earlier "
        "output is untouched; check the output folder and try again."
    )


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # pragma: no cover - nothing more can be done
        pass


def remove_temps(tmp: Path) -> None:
    """Remove ``tmp`` and anything a driver created beside it (``tmp.ovr.tmp``, ``tmp.aux.xml``)."""
    _remove_quietly(tmp)
    for extra in tmp.parent.glob(f"{tmp.name}*"):
        _remove_quietly(extra)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _publish(tmp: Path, target: Path, *, overwrite: bool) -> None:
    """Move ``tmp`` onto ``target`` in one step; never clobber when ``overwrite`` is false."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic and fails if the target appeared meanwhile
    except FileExistsError:
        raise OutputExistsError(
            f"The output {target} appeared while s2mask was writing it; it was left untouched. "
            "Pass overwrite=True (CLI: --overwrite) or choose another path."
        ) from None
    except OSError:  # filesystem without hard links: check, then rename
        if target.exists():
            raise OutputExistsError(
                f"The output {target} appeared while s2mask was writing it; it was left untouched. "
                "Pass overwrite=True (CLI: --overwrite) or choose another path."
            ) from None
        os.replace(tmp, target)
        return
    tmp.unlink()


@contextmanager
def atomic_output(
    target: str | os.PathLike[str], *, overwrite: bool = False, suffix: str | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` when the block succeeds.

    The target is checked on entry (see :func:`check_target`).  The block must create the
    temporary file.  On any exception the temporary file (and driver side files starting
    with its name) are removed and an existing target is left as it was.  ``OSError``
    raised inside the block or while renaming becomes :class:`OutputError`, other
    exceptions propagate unchanged.
    """
    target = check_target(target, overwrite=overwrite)
    tmp = temp_path_for(target, suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(
                f"Writing {target} produced no file at {tmp}; expected the writer to create it. "
                "This is a bug in s2mask; please report it."
            )
        _fsync_file(tmp)
        _publish(tmp, target, overwrite=overwrite)
        _fsync_dir(target.parent)
    except S2MaskError:
        remove_temps(tmp)
        raise
    except OSError as exc:
        remove_temps(tmp)
        raise OutputError(describe_os_error(exc, target)) from exc
    except BaseException:
        remove_temps(tmp)
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``target`` atomically; return the absolute target path."""
    with atomic_output(target, overwrite=overwrite) as tmp, open(tmp, "xb") as fh:
        fh.write(data)
    return Path(target).expanduser().absolute()


def atomic_write_text(
    target: str | os.PathLike[str], text: str, *, overwrite: bool = False, encoding: str = "utf-8"
) -> Path:
    """Write ``text`` to ``target`` atomically; return the absolute target path."""
    return atomic_write_bytes(target, text.encode(encoding), overwrite=overwrite)


SIDE_FILES = (".aux.xml",)
"""Files GDAL writes beside a raster (``<raster>.aux.xml``: category names, attribute table)."""


class OutputTransaction:
    """The outputs of one product, staged beside their targets and published in order, or not at all.

    ::

        with OutputTransaction({"mask": mask_tif, "summary": json}, last="mask") as tx:
            write_cog(mask, tx.staged["mask"])          # writers write plain (staged) paths
            write_summary(tx.staged["summary"], ...)
            tx.publish()                                 # summary first, the mask last

    Each target gets a hidden staging path (``.<name>.<random>.tmp<suffix>``).  :meth:`publish`
    renames every staged file that exists onto its target (``overwrite`` decides whether an
    existing target may be replaced), a side file a writer left beside it (``.aux.xml``) just
    before it, and the ``last`` key last: a process killed at any moment leaves the ``last``
    output absent or complete with everything else.  Leaving the block by any exception
    (including ``KeyboardInterrupt`` and SIGTERM's ``SystemExit``) removes every staged file;
    an :class:`~s2mask.errors.S2MaskError` is raised again naming the targets, not the staged files.
    """

    def __init__(
        self,
        targets: Mapping[str, str | os.PathLike[str]],
        *,
        overwrite: bool = False,
        last: str | None = None,
    ) -> None:
        self.targets = {key: Path(p) for key, p in targets.items()}
        self.overwrite, self.last = overwrite, last
        self.staged = {key: temp_path_for(p) for key, p in self.targets.items()}
        """Where each output is written before it is published."""
        self.published: list[Path] = []
        """Targets published so far, in order (side files included)."""

    def __enter__(self) -> OutputTransaction:
        return self

    def publish(self) -> None:
        """Rename the staged outputs onto their targets, side files first and ``last`` last."""
        for key in sorted(self.staged, key=lambda k: k == self.last):
            tmp, target = self.staged[key], self.targets[key]
            if not tmp.exists():
                continue
            for side in SIDE_FILES:
                if Path(f"{tmp}{side}").exists():
                    self._publish(Path(f"{tmp}{side}"), Path(f"{target}{side}"))
            _fsync_file(tmp)
            self._publish(tmp, target)
        for folder in {t.parent for t in self.published}:
            _fsync_dir(folder)

    def _publish(self, tmp: Path, target: Path) -> None:
        try:
            _publish(tmp, target, overwrite=self.overwrite)
        except S2MaskError:
            raise
        except OSError as exc:
            raise OutputError(describe_os_error(exc, target)) from exc
        self.published.append(target)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for tmp in self.staged.values():
            remove_temps(tmp)
        if isinstance(exc, S2MaskError):
            named = self._name_targets(exc)
            if named is not exc:
                raise named from exc

    def _name_targets(self, exc: S2MaskError) -> S2MaskError:
        """The same error, naming the output the user asked for rather than its staged file."""
        message = str(exc)
        for key, tmp in self.staged.items():
            for form in (str(tmp.absolute()), str(tmp)):
                message = message.replace(form, str(self.targets[key]))
        if message == str(exc):
            return exc
        try:
            return type(exc)(message)
        except TypeError:  # pragma: no cover - a subclass with another signature
            return exc


_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp(\.[^/]*)?$")


def remove_stale_temps(
    folder: str | os.PathLike[str],
    *,
    older_than_s: float = 6 * 3600,
    targets: Iterable[str | os.PathLike[str]] | None = None,
) -> list[Path]:
    """Remove temporary files left by killed runs in ``folder``; return what was removed.

    Only names s2mask creates (``.<name>.<8 hex>.tmp<suffix>``, the temporaries of those,
    and driver side files starting with them) that were last modified more than
    ``older_than_s`` seconds ago are touched, so a run writing into the same folder right
    now is not disturbed.  ``targets`` limits it to the temporaries of these outputs
    (a run replacing its own outputs removes theirs whatever their age).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    limit = time.time() - older_than_s
    prefixes = (
        None if targets is None else tuple(f"{dots}{Path(t).name}." for t in targets for dots in (".", ".."))
    )
    removed = []
    for p in folder.iterdir():
        if not (_TEMP_NAME.match(p.name) and p.is_file()):
            continue
        if prefixes is not None and not p.name.startswith(prefixes):
            continue
        try:
            if p.stat().st_mtime < limit:
                p.unlink()
                removed.append(p)
        except OSError:  # vanished meanwhile or not ours to remove
            continue
    return sorted(removed)


@contextmanager
def sigterm_as_exit(code: int = 143) -> Iterator[None]:
    """Inside the block, SIGTERM raises ``SystemExit(code)`` so ``finally`` clauses remove temp files.

    Python's default SIGTERM action ends the process without unwinding; batch schedulers
    and ``kill`` send SIGTERM.  Only the main thread can install handlers: elsewhere this
    does nothing.  The previous handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(code)

    previous = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
