"""Crash-safe files and JSON Lines (pure Python): the one way every layer writes and reads them.

A file that others may read is replaced atomically: written to a hidden temporary name in the
same directory (``.<name>.tmp-<hex>``), fsynced, and renamed into place, so a reader sees the
old file or the new one, never a torn one, on local and shared file systems alike; the directory
is fsynced too so that the rename itself survives a crash.  Reads retry the transient errors of
network file systems (ESTALE, EIO).  A JSON Lines file is appended with one ``write`` per batch
of lines; its readers skip a torn last line (an append in progress, or cut by a crash) silently
and a torn line elsewhere with a warning.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Union

__all__ = [
    "CorruptFileError",
    "JsonLines",
    "append_jsonl",
    "append_to_fd",
    "atomic_write",
    "atomic_write_files",
    "atomic_write_json",
    "dumps_json",
    "fsync_dir",
    "free_bytes",
    "fsync_file",
    "is_tmp_name",
    "jsonl_bytes",
    "listdir_quiet",
    "load_json",
    "padded",
    "parse_jsonl",
    "place_file",
    "pwrite_all",
    "read_bytes",
    "read_jsonl",
    "rmtree_quiet",
    "tmp_name",
    "unlink_quiet",
    "write_new",
]

PathLike = Union[str, "os.PathLike[str]"]

#: errors of network file systems that a second try usually cures
_RETRY_ERRNOS = frozenset({errno.ESTALE, errno.EIO})
_IO_ATTEMPTS = 4
#: files are created readable (and writable) as the umask allows: a population, a data cache or an
#: exported model on a shared file system is then usable by the group (os.open applies the umask)
_MODE = 0o666


class CorruptFileError(ValueError):
    """A file is torn, empty or not valid JSON (the message names it)."""


# ----------------------------------------------------------------------------------------- small helpers
def tmp_name(path: PathLike) -> str:
    """A fresh hidden temporary name beside ``path``: ``.<name>.tmp-<hex>``."""
    d, b = os.path.split(os.fspath(path))
    return os.path.join(d, f".{b}.tmp-{secrets.token_hex(4)}")


def is_tmp_name(name: str) -> bool:
    """Whether a file name is one of :func:`tmp_name`'s (left behind by an interrupted write)."""
    return name.startswith(".") and ".tmp-" in name


def unlink_quiet(path: PathLike) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def rmtree_quiet(path: PathLike) -> None:
    shutil.rmtree(path, ignore_errors=True)


def listdir_quiet(d: PathLike) -> list[str]:
    try:
        return os.listdir(d)
    except OSError:
        return []


def fsync_dir(path: PathLike) -> None:
    """Flush a directory's entries (best effort: some file systems refuse it)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def free_bytes(path: PathLike) -> int:
    """Bytes free for this user on the file system of ``path`` (a large number if unknown)."""
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):
        return 1 << 62
    return st.f_bavail * st.f_frsize


def fsync_file(path: PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pwrite_all(fd: int, data: bytes, offset: int = 0) -> None:
    """Write all of ``data`` at ``offset`` of the open file ``fd``."""
    view = memoryview(data)
    off = 0
    while off < len(data):
        off += os.pwrite(fd, view[off:], offset + off)


def padded(data: bytes, size: int) -> bytes:
    """A JSON line padded with spaces to ``size`` bytes, so that rewriting a file of that size in
    place leaves no tail of the old content."""
    return data if len(data) >= size else data[:-1] + b" " * (size - len(data)) + b"\n"


def dumps_json(obj: Any, indent: int | None = None, *, default: Callable[[Any], Any] | None = None) -> bytes:
    """``obj`` as JSON text with sorted keys and a final newline (NaN refused: it is not JSON);
    ``default`` turns what JSON cannot hold into what it can (``str``, say)."""
    return (json.dumps(obj, indent=indent, sort_keys=True, allow_nan=False, default=default) + "\n").encode()


# ----------------------------------------------------------------------------------------- atomic writes
def _replace_via_tmp(path: str, fill: Callable[[str, int], None], *, fsync: bool, sync_dir: bool,
                     create: bool = True) -> None:
    """The one temporary-then-rename: create a temporary beside ``path`` (``create=False``: leave
    that to ``fill``, which then gets no descriptor), let ``fill(tmp, fd)`` write it, fsync it,
    rename it onto ``path``; on any failure remove the temporary."""
    tmp = tmp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _MODE) if create else -1
        try:
            fill(tmp, fd)
            if fsync:
                if fd >= 0:
                    os.fsync(fd)
                else:
                    fsync_file(tmp)
        finally:
            if fd >= 0:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise
    if sync_dir:
        fsync_dir(os.path.dirname(path) or ".")


def atomic_write(path: PathLike, data: bytes | Callable[[BinaryIO], object], *, fsync: bool = True,
                 sync_dir: bool = True) -> Path:
    """Replace ``path`` atomically with ``data`` (bytes) or with what ``data(file)`` writes into a
    binary file object (``lambda f: torch.save(state, f)``)."""
    path = os.fspath(path)

    def fill(tmp: str, fd: int) -> None:
        if callable(data):
            with os.fdopen(os.dup(fd), "wb") as f:
                data(f)
                f.flush()
        else:
            pwrite_all(fd, data)

    _replace_via_tmp(path, fill, fsync=fsync, sync_dir=sync_dir)
    return Path(path)


def atomic_write_json(path: PathLike, obj: Any, *, fsync: bool = True, sync_dir: bool = True,
                      indent: int | None = None) -> None:
    """Replace ``path`` atomically with ``obj`` as JSON (:func:`dumps_json`)."""
    atomic_write(path, dumps_json(obj, indent), fsync=fsync, sync_dir=sync_dir)


def atomic_write_files(files: dict[str, bytes]) -> None:
    """Replace several files atomically, each as :func:`atomic_write` does; all are written before
    any is fsynced, so that a journaling file system commits them in one go."""
    tmps: list[tuple[str, str]] = []
    try:
        for path, data in files.items():
            tmp = tmp_name(path)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _MODE)
            tmps.append((tmp, path))
            try:
                pwrite_all(fd, data)
            finally:
                os.close(fd)
        for tmp, _ in tmps:
            fsync_file(tmp)
        for tmp, path in tmps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in tmps:
            unlink_quiet(tmp)
        raise


def write_new(path: PathLike, data: bytes) -> bool:
    """Write a file in a directory that nobody else writes to: in place if it is new (no temporary,
    no rename; True: the caller fsyncs it), else replaced atomically and fsynced (False)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _MODE)
    except FileExistsError:
        atomic_write(path, data, sync_dir=False)
        return False
    try:
        pwrite_all(fd, data)
    except BaseException:
        os.close(fd)
        unlink_quiet(path)
        raise
    os.close(fd)
    return True


def place_file(source: PathLike | Callable[[str], Any], dst: PathLike) -> None:
    """Put a file at ``dst`` atomically and durably.

    ``source`` is a callable ``write(path)`` that writes the file (it gets a temporary path beside
    ``dst``), or the path of an existing file, which is moved (renamed) into place when it is on the
    same file system and copied otherwise.
    """
    dst = os.fspath(dst)
    if not callable(source) and os.path.abspath(source) == os.path.abspath(dst):
        fsync_file(dst)
        return

    def fill(tmp: str, fd: int) -> None:
        if callable(source):
            source(tmp)
            if not os.path.exists(tmp):
                raise FileNotFoundError(errno.ENOENT, "the writer did not create the file", tmp)
            return
        try:
            os.rename(source, tmp)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            shutil.copyfile(source, tmp)

    _replace_via_tmp(dst, fill, fsync=True, sync_dir=False, create=False)


# ----------------------------------------------------------------------------------------- reads
def _retry(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)``, retrying a few times on ESTALE / EIO (NFS)."""
    for attempt in range(_IO_ATTEMPTS):
        try:
            return fn(*args)
        except OSError as e:
            if e.errno not in _RETRY_ERRNOS or attempt == _IO_ATTEMPTS - 1:
                raise
            time.sleep(0.02 * (2**attempt))
    raise AssertionError("unreachable")


def _read_bytes_once(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_bytes(path: PathLike) -> bytes:
    """Read a whole file, retrying ESTALE/EIO."""
    return _retry(_read_bytes_once, os.fspath(path))


def load_json(path: PathLike) -> dict:
    """Load a JSON object.  Raises FileNotFoundError if missing, :class:`CorruptFileError` if torn."""
    data = read_bytes(path)
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{os.fspath(path)}: torn or corrupt JSON ({len(data)} bytes: {e})") from None
    if not isinstance(obj, dict):
        raise CorruptFileError(f"{os.fspath(path)}: expected a JSON object, found {type(obj).__name__}")
    return obj


# ----------------------------------------------------------------------------------------- JSON Lines
@dataclass
class JsonLines:
    """The objects of a JSON Lines file, and what could not be read."""

    records: list[Any] = field(default_factory=list)
    #: 1-based numbers of undecodable lines before the last one (damage, not an append in progress)
    bad_lines: list[int] = field(default_factory=list)
    #: the last line is undecodable (an append in progress, or cut by a crash)
    torn_tail: bool = False


def parse_jsonl(data: bytes, *, types: tuple[type, ...] = (dict,)) -> JsonLines:
    """Split ``data`` into JSON values, one per line; blank lines and values not of ``types`` (by
    default: objects) are skipped."""
    out = JsonLines()
    lines = data.split(b"\n")
    last = len(lines) - 1
    while last >= 0 and not lines[last].strip():
        last -= 1
    body = [line for line in lines[: last + 1] if line.strip()]
    try:  # one parse for the whole file; line by line only when a line is torn
        values = json.loads(b"[" + b",".join(body) + b"]")
    except (ValueError, UnicodeDecodeError):
        values = None
    if values is not None and len(values) == len(body):
        out.records = [v for v in values if isinstance(v, types)]
        return out
    for n, line in enumerate(lines[: last + 1]):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            if n == last:
                out.torn_tail = True
            else:
                out.bad_lines.append(n + 1)
            continue
        if isinstance(obj, types):
            out.records.append(obj)
    return out


def read_jsonl(path: PathLike, *, warn: Callable[[str], None] | None = None) -> list[dict]:
    """The objects of the JSON Lines file ``path`` ([] when it does not exist).  A torn last line is
    skipped silently; each undecodable line elsewhere is skipped and, with ``warn``, reported."""
    try:
        data = read_bytes(path)
    except FileNotFoundError:
        return []
    parsed = parse_jsonl(data)
    if warn is not None:
        for n in parsed.bad_lines:
            warn(f"{os.fspath(path)}: line {n} is torn or corrupt and was skipped")
    return parsed.records


def jsonl_bytes(objs: Iterable[Any], *, default: Callable[[Any], Any] | None = None) -> bytes:
    """``objs`` as JSON Lines (compact, sorted keys, one object per line)."""
    return b"".join(dumps_json(o, default=default) for o in objs)


def append_to_fd(fd: int, payload: bytes, clean: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """Append ``payload`` (whole lines) to ``fd``, opened with O_APPEND, in one write.  A file that
    does not end in a newline (a torn last line) gets one first, so the new lines start fresh.
    ``clean``: the (inode, size) known to end in a newline (skips the check).  Returns the
    (inode, size) after the write when it is known to end in a newline, else None."""
    st = os.fstat(fd)
    if st.st_size and clean != (st.st_ino, st.st_size) and os.pread(fd, 1, st.st_size - 1) != b"\n":
        payload = b"\n" + payload
    n = os.write(fd, payload)
    # (the caller's next check trusts this only if the size is exactly what this write made)
    return (st.st_ino, st.st_size + n) if n == len(payload) else None


def append_jsonl(path: PathLike, objs: Iterable[Any], *, fsync: bool = True,
                 default: Callable[[Any], Any] | None = None) -> None:
    """Append ``objs`` to the JSON Lines file ``path`` (created if missing) in one write."""
    payload = jsonl_bytes(objs, default=default)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, _MODE)
    try:
        append_to_fd(fd, payload)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
