"""Temp-file-and-rename: outputs appear complete or not at all, old outputs survive failures."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from s2mask import _atomic
from s2mask._atomic import (
    atomic_output,
    atomic_write_bytes,
    atomic_write_text,
    check_target,
    check_targets,
    remove_stale_temps,
    sigterm_as_exit,
    temp_path_for,
)
from s2mask.errors import OutputError, OutputExistsError


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_temp_path_is_hidden_beside_target(tmp_path):
    tmp = temp_path_for(tmp_path / "mask.tif")
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(".mask.tif.") and tmp.name.endswith(".tmp.tif")
    assert temp_path_for(tmp_path / "mask.tif") != tmp  # unique per call


def test_write_creates_and_refuses_existing(tmp_path):
    target = tmp_path / "a.json"
    assert atomic_write_text(target, "one") == target
    with pytest.raises(OutputExistsError, match="--overwrite"):
        atomic_write_text(target, "two")
    assert target.read_text() == "one"
    atomic_write_text(target, "three", overwrite=True)
    assert target.read_text() == "three"
    assert _listing(tmp_path) == ["a.json"]


def test_failure_inside_block_keeps_old_output_and_removes_temps(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"), atomic_output(target, overwrite=True) as tmp:
        tmp.write_bytes(b"half")
        (tmp.parent / (tmp.name + ".ovr.tmp")).write_bytes(b"driver side file")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert _listing(tmp_path) == ["out.bin"]


def test_keyboard_interrupt_cleans_up(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(KeyboardInterrupt), atomic_output(target) as tmp:
        tmp.write_bytes(b"x")
        raise KeyboardInterrupt
    assert _listing(tmp_path) == []


def test_disk_full_becomes_output_error(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(OutputError, match="disk is full"), atomic_output(target, overwrite=True) as tmp:
        tmp.write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_bytes() == b"old"
    assert _listing(tmp_path) == ["out.bin"]


def test_block_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(OutputError, match="produced no file"), atomic_output(tmp_path / "x.bin"):
        pass
    assert _listing(tmp_path) == []


def test_target_appearing_meanwhile_is_not_clobbered(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(OutputExistsError, match="appeared"), atomic_output(target) as tmp:
        tmp.write_bytes(b"new")
        target.write_bytes(b"someone else's")
    assert target.read_bytes() == b"someone else's"
    assert _listing(tmp_path) == ["out.bin"]


def test_missing_folder(tmp_path):
    with pytest.raises(OutputError, match="mkdir -p"):
        atomic_write_bytes(tmp_path / "no" / "such" / "f.bin", b"x")


def test_parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        check_target(tmp_path / "file" / "f.bin")


def test_target_is_a_folder(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_target(tmp_path / "d", overwrite=True)


def test_unwritable_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(_atomic.os, "access", lambda *a, **k: False)
    with pytest.raises(OutputError, match="not writable"):
        atomic_write_bytes(tmp_path / "f.bin", b"x")
    assert _listing(tmp_path) == []


def test_errors_inherit_builtins(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError):
        check_target(tmp_path / "f")
    with pytest.raises(OSError):
        check_target(tmp_path / "missing" / "f")


def test_relative_path_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = atomic_write_text("rel.txt", "x")
    assert out.is_absolute() and out == tmp_path / "rel.txt"
    assert os.path.exists(tmp_path / "rel.txt")


def test_check_targets_all_before_work(tmp_path):
    (tmp_path / "b.json").write_text("x")
    ok = check_targets([tmp_path / "a.tif", None, tmp_path / "c.png"])
    assert ok == [tmp_path / "a.tif", tmp_path / "c.png"]
    with pytest.raises(OutputExistsError, match="b.json"):
        check_targets([tmp_path / "a.tif", tmp_path / "b.json"])
    with pytest.raises(OutputError, match="distinct"):
        check_targets([tmp_path / "a.tif", tmp_path / "." / "a.tif"])


def test_remove_stale_temps_only_old_own_names(tmp_path):
    old_tmp = temp_path_for(tmp_path / "mask.tif")
    side = old_tmp.with_name(old_tmp.name + ".ovr.tmp")
    fresh_tmp = temp_path_for(tmp_path / "other.tif")
    keep = [tmp_path / "mask.tif", tmp_path / ".hidden.tmp.tif", tmp_path / "x.1234abcd.tmp.tif"]
    for p in [old_tmp, side, fresh_tmp, *keep]:
        p.write_bytes(b"x")
    for p in [old_tmp, side, *keep]:
        os.utime(p, (1, 1))
    assert remove_stale_temps(tmp_path, older_than_s=60) == sorted([old_tmp, side])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh_tmp.name, *(p.name for p in keep)])
    assert remove_stale_temps(tmp_path / "missing") == []


def test_sigterm_unwinds_and_cleans_up(tmp_path):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    target = tmp_path / "out.bin"
    with pytest.raises(SystemExit) as info, sigterm_as_exit(), atomic_output(target) as tmp:
        tmp.write_bytes(b"partial")
        os.kill(os.getpid(), signal.SIGTERM)
    assert info.value.code == 143
    assert _listing(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is before


def test_output_transaction_publishes_side_files_and_last_in_order(tmp_path):
    from s2mask._atomic import OutputTransaction

    targets = {"mask": tmp_path / "m.tif", "summary": tmp_path / "m.json", "png": tmp_path / "m.png"}
    with OutputTransaction(targets, last="mask") as tx:
        tx.staged["mask"].write_bytes(b"mask")
        Path(f"{tx.staged['mask']}.aux.xml").write_text("<PAMDataset/>")
        tx.staged["summary"].write_text("{}")  # no quick-look: nothing staged, nothing published
        assert all(p.parent == tmp_path and p.name.startswith(".") for p in tx.staged.values())
        tx.publish()
    assert [p.name for p in tx.published] == ["m.json", "m.tif.aux.xml", "m.tif"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.tif", "m.tif.aux.xml"]


def test_output_transaction_failure_leaves_nothing_and_names_the_target(tmp_path):
    from s2mask._atomic import OutputTransaction

    old = tmp_path / "m.json"
    old.write_text("older")
    transaction = OutputTransaction({"mask": tmp_path / "m.tif", "summary": old}, last="mask")
    with pytest.raises(OutputError, match=r"^Writing .*/m\.tif failed") as err, transaction as tx:
        tx.staged["summary"].write_text("{}")
        Path(f"{tx.staged['mask']}.aux.xml").write_text("side file of an unfinished mask")
        raise OutputError(f"Writing {tx.staged['mask']} failed: disk full")
    assert ".tmp" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"] and old.read_text() == "older"


def test_output_transaction_refuses_a_target_that_appeared_and_keeps_it(tmp_path):
    from s2mask._atomic import OutputTransaction

    transaction = OutputTransaction({"mask": tmp_path / "m.tif"}, last="mask")
    with pytest.raises(OutputExistsError, match="appeared while s2mask was writing"), transaction as tx:
        tx.staged["mask"].write_bytes(b"new")
        (tmp_path / "m.tif").write_bytes(b"someone else's")
        tx.publish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif"]
    assert (tmp_path / "m.tif").read_bytes() == b"someone else's"
