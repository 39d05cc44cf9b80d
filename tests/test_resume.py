"""``--resume``: a batch interrupted half-way is finished by processing only what is missing.

A mask that exists and validates as a COG is kept as it is (same bytes, same mtime);
a missing, truncated or otherwise invalid one is redone in place.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from s2mask.testing.products import write_safe
from tests.reliability_helpers import cog_is_valid, files_in, run_main, save_tiny_weights, scene

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

OLD = 1_600_000_000  # an mtime in 2020: anything rewritten gets a newer one


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("batch")
    products = [
        write_safe(root, scene(48, seed=i), level="L2A", product_id=f"S2B_MSIL2A_2024060{i}T101031_N0510")
        for i in (1, 2, 3)
    ]
    return {"products": products, "weights": save_tiny_weights(root / "tiny.safetensors")}


def _run(batch: dict, out: Path, monkeypatch, capsys, *extra: object):  # noqa: ANN001, ANN202
    args = [
        "run",
        *batch["products"],
        "-o",
        out,
        "--weights",
        batch["weights"],
        "-q",
        "--no-quicklook",
        *extra,
    ]
    return run_main(args, monkeypatch, capsys)


def _mask(product: Path, out: Path) -> Path:
    return out / f"{product.name.removesuffix('.SAFE')}_mask.tif"


def _count_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import s2mask.run

    done: list[str] = []
    real = s2mask.run.run_product

    def counting(product, out, **kw):  # noqa: ANN001, ANN202
        done.append(Path(product).name)
        return real(product, out, **kw)

    monkeypatch.setattr(s2mask.run, "run_product", counting)
    return done


def test_resume_keeps_valid_masks_and_redoes_missing_and_corrupt_ones(
    batch: dict, tmp_path: Path, monkeypatch, capsys
) -> None:
    a, b, c = batch["products"]
    out = tmp_path / "masks"
    assert _run(batch, out, monkeypatch, capsys).code == 0
    masks = [_mask(p, out) for p in (a, b, c)]
    assert all(cog_is_valid(m) for m in masks)

    # A stays valid, B is truncated (a copy that was cut off), C and its summary are gone
    valid_bytes = masks[0].read_bytes()
    masks[1].write_bytes(masks[1].read_bytes()[:600])
    masks[2].unlink()
    masks[2].with_suffix(".json").unlink()
    for m in masks[:2]:
        os.utime(m, (OLD, OLD))

    ran = _count_runs(monkeypatch)
    result = _run(batch, out, monkeypatch, capsys, "--resume")
    assert result.code == 0, result
    assert ran == [b.name, c.name]
    assert f"skipped (exists and is valid): {masks[0]}" in result.out
    assert masks[0].stat().st_mtime == OLD and masks[0].read_bytes() == valid_bytes
    assert masks[1].stat().st_mtime > OLD and cog_is_valid(masks[1])
    assert cog_is_valid(masks[2]) and masks[2].with_suffix(".json").exists()
    assert [f for f in files_in(out) if f.startswith(".")] == []

    # a second resume has nothing left to do
    ran.clear()
    result = _run(batch, out, monkeypatch, capsys, "--resume")
    assert result.code == 0 and ran == []
    assert result.out.count("skipped (exists and is valid)") == 3


def test_a_batch_interrupted_by_ctrl_c_is_finished_by_resume(
    batch: dict, tmp_path: Path, monkeypatch, capsys
) -> None:
    import s2mask.run

    a, b, c = batch["products"]
    out = tmp_path / "masks"
    real = s2mask.run.run_product

    def interrupted_at_the_second(product, target, **kw):  # noqa: ANN001, ANN202
        if Path(product) == b:
            raise KeyboardInterrupt
        return real(product, target, **kw)

    monkeypatch.setattr(s2mask.run, "run_product", interrupted_at_the_second)
    result = _run(batch, out, monkeypatch, capsys)
    assert result.code == 130 and "Interrupted" in result.err
    assert files_in(out) == [
        _mask(a, out).with_suffix(".json").name,
        _mask(a, out).with_suffix(".stac.json").name,
        _mask(a, out).name,
        f"{_mask(a, out).name}.aux.xml",
    ]
    os.utime(_mask(a, out), (OLD, OLD))

    monkeypatch.setattr(s2mask.run, "run_product", real)
    ran = _count_runs(monkeypatch)
    result = _run(batch, out, monkeypatch, capsys, "--resume")
    assert result.code == 0, result
    assert ran == [b.name, c.name]
    assert _mask(a, out).stat().st_mtime == OLD
    assert all(cog_is_valid(_mask(p, out)) for p in (a, b, c))


def test_without_resume_existing_masks_are_failures_not_overwritten(
    batch: dict, tmp_path: Path, monkeypatch, capsys
) -> None:
    a, b, c = batch["products"]
    out = tmp_path / "masks"
    out.mkdir()
    _mask(a, out).write_bytes(b"someone else's file")
    result = _run(batch, out, monkeypatch, capsys)
    assert result.code == 1
    assert f"1 of 3 products failed:\n  {a}: Output {_mask(a, out)} already exists" in result.err
    assert "--resume" in result.err
    assert _mask(a, out).read_bytes() == b"someone else's file"
    assert cog_is_valid(_mask(b, out)) and cog_is_valid(_mask(c, out))


def test_resume_of_a_single_product(batch: dict, tmp_path: Path, monkeypatch, capsys) -> None:
    product, weights = batch["products"][0], batch["weights"]
    target = tmp_path / "m.tif"
    args = ["run", product, "-o", target, "--weights", weights, "-q", "--no-quicklook", "--resume"]
    assert run_main(args, monkeypatch, capsys).code == 0
    assert cog_is_valid(target)
    os.utime(target, (OLD, OLD))
    result = run_main(args, monkeypatch, capsys)
    assert result.code == 0 and "skipped (exists and is valid)" in result.out
    assert target.stat().st_mtime == OLD

    target.write_bytes(b"II*\x00 cut off")  # an invalid leftover is redone
    assert run_main(args, monkeypatch, capsys).code == 0
    assert cog_is_valid(target)


def test_stale_temp_files_of_a_killed_run_do_not_count_as_outputs(
    batch: dict, tmp_path: Path, monkeypatch, capsys
) -> None:
    a = batch["products"][0]
    out = tmp_path / "masks"
    out.mkdir()
    stale = out / f".{_mask(a, out).name}.0badf00d.tmp.tif"
    stale.write_bytes(b"II*\x00 half a GeoTIFF")
    ran = _count_runs(monkeypatch)
    result = _run(batch, out, monkeypatch, capsys, "--resume")
    assert result.code == 0
    assert ran == [p.name for p in batch["products"]]
    assert cog_is_valid(_mask(a, out))
    assert not stale.exists(), "resume (which overwrites) removes what a killed run left behind"
    assert [f for f in files_in(out) if f.startswith(".")] == []


def test_a_batch_removes_temporaries_of_runs_killed_hours_ago_and_no_others(
    batch: dict, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "masks"
    out.mkdir()
    old = out / ".other_mask.tif.0badf00d.tmp.tif"  # another product, killed by SIGKILL long ago
    old.write_bytes(b"II*\x00 half a GeoTIFF")
    os.utime(old, (OLD, OLD))
    recent = out / ".other_mask.tif.0123abcd.tmp.tif"  # maybe a run writing right now: left alone
    recent.write_bytes(b"II*\x00 being written")
    mine = out / "notes.txt"
    mine.write_text("not ours")
    assert _run(batch, out, monkeypatch, capsys).code == 0
    assert not old.exists() and recent.exists() and mine.exists()
