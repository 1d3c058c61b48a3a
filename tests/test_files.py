"""Atomic writes: the target appears whole or not at all, readable by others, stale temps cleared."""

from __future__ import annotations

import logging
import os

import pytest

from trainhub.files import atomic_write, remove_run_files, remove_stale_temps, write_text_atomic


def test_write_text_atomic_replaces_the_file_whole(tmp_path):
    target = tmp_path / "sub" / "meta.json"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text(encoding="utf-8") == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["meta.json"]


def test_a_failed_write_leaves_no_temp_and_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    write_text_atomic(target, "kept")

    def broken(tmp):
        open(tmp, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_files_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "x.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_stale_temps_of_a_killed_writer_are_removed(tmp_path):
    target = tmp_path / "w.safetensors"
    stale = tmp_path / f".w.safetensors.{os.getpid()}.ab12cd34.tmp"
    stale.write_bytes(b"partial")
    other = tmp_path / ".other.123.ab12cd34.tmp"
    other.write_bytes(b"not ours")
    assert remove_stale_temps(target) == [stale]
    assert not stale.exists() and other.exists()
    assert remove_stale_temps(tmp_path / "missing" / "x") == []


def test_remove_run_files_deletes_files_and_folders_and_names_them(tmp_path, caplog):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "w.bin").write_bytes(b"w")
    (tmp_path / "last.ckpt").write_bytes(b"s")
    with caplog.at_level(logging.WARNING, logger="trainhub.files"):
        removed = remove_run_files([tmp_path / "best", tmp_path / "last.ckpt", tmp_path / "absent"], tmp_path)
    assert removed == [tmp_path / "best", tmp_path / "last.ckpt"]
    assert list(tmp_path.iterdir()) == []
    assert "best, last.ckpt" in caplog.text


def test_the_old_import_path_still_works():
    from trainhub.engine import checkpoint

    assert checkpoint.atomic_write is atomic_write and checkpoint.write_text_atomic is write_text_atomic


def test_a_live_writer_s_temporary_file_is_left_alone(tmp_path):
    # another process (e.g. a second torchrun rank) is writing the same target right now
    import subprocess
    import sys

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = tmp_path / f".w.json.{other.pid}.ab12cd34.tmp"
        live.write_bytes(b"being written")
        write_text_atomic(tmp_path / "w.json", "{}")
        assert live.exists() and (tmp_path / "w.json").read_text() == "{}"
    finally:
        other.kill()
        other.wait()
    assert remove_stale_temps(tmp_path / "w.json") == [live]


def test_a_full_disk_is_an_oserror_naming_the_file(tmp_path):
    import errno

    from trainhub.cli import error_line

    def torch_like_short_write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:659] . unexpected pos 64704 vs 64600")

    target = tmp_path / "last.ckpt"
    with pytest.raises(OSError) as err:
        atomic_write(target, torch_like_short_write)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert error_line(err.value).startswith(f"no space left on the device writing {target}")
    assert not list(tmp_path.iterdir())  # the temporary file is gone, nothing half-written stays
    with pytest.raises(RuntimeError, match="something else"):  # other errors pass through unchanged
        atomic_write(target, lambda tmp: (_ for _ in ()).throw(RuntimeError("something else")))
