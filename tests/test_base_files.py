"""Crash-safe files and JSON Lines: atomic writes, retried reads, torn lines."""

import errno
import os
import stat

import pytest

from evo.base import files
from evo.base.files import atomic_write
from popkit import put


def test_writes_and_replaces(tmp_path):
    p = tmp_path / "f.bin"
    atomic_write(p, lambda f: f.write(b"one"))
    atomic_write(p, lambda f: f.write(b"two"))
    assert p.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "f.bin"
    atomic_write(p, lambda f: f.write(b"old"))

    def boom(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(p, boom)
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_mode_follows_the_umask_not_owner_only(tmp_path):
    p = atomic_write(tmp_path / "f.bin", lambda f: f.write(b"x"))
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask


def test_estale_reads_are_retried(tmp_path, monkeypatch):
    p = tmp_path / "f.json"
    p.write_text('{"a": 1}')
    real = files._read_bytes_once
    calls = []

    def flaky(path):
        if path != str(p):  # another thread's read (a soft lock's heartbeat left by an earlier test)
            return real(path)
        calls.append(path)
        if len(calls) < 3:
            raise OSError(errno.ESTALE, "Stale file handle")
        return real(path)

    monkeypatch.setattr(files, "_read_bytes_once", flaky)
    assert files.load_json(str(p)) == {"a": 1} and len(calls) == 3


def test_atomic_write_files_replaces_all_or_leaves_the_old_files(tmp_path, monkeypatch):
    a, b = str(tmp_path / "a.json"), str(tmp_path / "b.json")
    put(a, b"old a")
    put(b, b"old b")
    files.atomic_write_files({a: b"new a", b: b"new b"})
    assert open(a, "rb").read() == b"new a" and open(b, "rb").read() == b"new b"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.json"]
    real_fsync = os.fsync
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.EIO, "I/O error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        files.atomic_write_files({a: b"newer a", b: b"newer b"})
    assert open(a, "rb").read() == b"new a" and open(b, "rb").read() == b"new b"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.json"]  # no temporary left behind


def test_jsonl_appends_start_on_a_fresh_line_and_readers_skip_torn_lines(tmp_path):
    p = tmp_path / "log.jsonl"
    files.append_jsonl(p, [{"a": 1}])
    with open(p, "ab") as f:
        f.write(b'{"torn": ')          # an append cut by a crash
    assert files.read_jsonl(p) == [{"a": 1}]
    files.append_jsonl(p, [{"b": 2}, {"c": 3}])
    warned = []
    assert files.read_jsonl(p, warn=warned.append) == [{"a": 1}, {"b": 2}, {"c": 3}]
    assert len(warned) == 1 and "line 2" in warned[0]
    parsed = files.parse_jsonl(p.read_bytes() + b'{"d"')
    assert parsed.torn_tail and parsed.bad_lines == [2]
    assert files.read_jsonl(tmp_path / "missing.jsonl") == []


def test_place_file_moves_or_writes_atomically(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"moved")
    files.place_file(str(src), tmp_path / "dst.bin")
    assert (tmp_path / "dst.bin").read_bytes() == b"moved" and not src.exists()
    files.place_file(lambda path: open(path, "wb").write(b"written"), tmp_path / "dst.bin")
    assert (tmp_path / "dst.bin").read_bytes() == b"written"
    with pytest.raises(FileNotFoundError):
        files.place_file(lambda path: None, tmp_path / "dst.bin")  # a writer that wrote nothing
    assert (tmp_path / "dst.bin").read_bytes() == b"written"
    assert sorted(os.listdir(tmp_path)) == ["dst.bin"]
