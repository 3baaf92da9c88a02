"""Atomic file writes: the one place that does "temporary file beside the target, then rename".

A file written here is first written under a temporary name in its destination directory,
``.{name}.{random}.tmp``, and then renamed over the target with `os.replace` (atomic on POSIX).
A reader, or a process killed mid-write, therefore sees either the old file or the complete new
one, never half of one; on an exception the temporary file is removed and an existing target is
left untouched. A killed process can leave a ``.{name}.*.tmp`` file behind: `remove_temp_files`
sweeps them (the writers that can be rerun over their output call it first), and `fit`
sweeps a run directory with the glob ``.*.tmp*``.

A write that fails because the disk (or the quota) is full raises `DiskFullError`, an `OSError`
whose message names the file, says the disk is full, that the old file is unchanged and what to
do; the temporary file is removed, so no space stays taken.

- `atomic_write`: a context manager yielding the open (text or binary) temporary file, for
  writers that stream (``torch.save``, ``np.savez``, ``fig.savefig``, ``json.dump``).
- `atomic_write_text`, `atomic_write_bytes`, `atomic_write_json`: one call for a whole payload.

Every function creates missing parent directories and gives the file the mode `open` gives a new
file (``0o666`` less the process umask; not `tempfile.mkstemp`'s ``0o600``). With ``fsync=True``
(the default) the data is fsynced before the rename and the directory after it, so the new file
survives a power loss once the call returns; ``fsync=False`` skips both, for files that are cheap
to redo.

Pure standard library (`qgmrn.clevr` uses it and must stay free of torch and numpy).
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DiskFullError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "remove_temp_files",
]

_MODES = frozenset({"w", "wb"})
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
# the names `_create_temp` gives: ".{target name}.{8 hex digits}.tmp"
_TEMP_RE = re.compile(r"^\.(?P<target>.+)\.[0-9a-f]{8}\.tmp$")
_DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


class DiskFullError(OSError):
    """Writing `filename` failed because its disk (or the user's quota) is full.

    ``errno`` is the original ENOSPC / EDQUOT; ``str()`` is a sentence that names the file, says
    the previous content is unchanged and what to do (`advice`, if given, replaces the generic
    "free some space ... and run again").
    """

    def __init__(self, path: str | os.PathLike, err: int = errno.ENOSPC, advice: str = "") -> None:
        super().__init__(err, os.strerror(err), str(path))
        self.advice = advice

    def __reduce__(self):  # picklable across processes despite the custom signature
        return (type(self), (self.filename, self.errno, self.advice))

    def __str__(self) -> str:
        path = Path(self.filename)
        what = "the disk quota is exhausted" if self.errno != errno.ENOSPC else "the disk is full"
        advice = self.advice or (
            f"free some space on the disk holding {path.parent} (or write somewhere else) and "
            "run again"
        )
        return (
            f"cannot write {path}: {what} ({self.strerror}); {path.name} was left as it was "
            f"before this write and no partial file remains. {advice}"
        )


def as_disk_full(exc: BaseException, path: str | os.PathLike) -> DiskFullError | None:
    """`exc` as a `DiskFullError` when a full disk caused it (naming the file the OSError names,
    else `path`), or None: what a command prints instead of a traceback."""
    if isinstance(exc, DiskFullError):
        return exc
    full = disk_full_error(exc)
    return None if full is None else DiskFullError(full.filename or path, full.errno)


def disk_full_error(exc: BaseException) -> OSError | None:
    """The ENOSPC / EDQUOT `OSError` in `exc` or in its chain of causes, or None.

    Writers that wrap the file object (``torch.save``) report a failed write as their own error
    (a RuntimeError) with the OSError as its context, hence the walk.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _DISK_FULL:
            return e
        todo += [e.__cause__, e.__context__]
    return None


def remove_temp_files(
    directory: str | os.PathLike, targets: list[str] | tuple[str, ...] | None = None
) -> list[Path]:
    """Delete the ``.{name}.{random}.tmp`` files a killed writer left in `directory`.

    Only names of the exact form `atomic_write` creates are touched; with `targets`, only those
    of these target names. Returns the files removed (none when `directory` does not exist).
    Call it before rewriting the files of a folder, never while another process writes there.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    wanted = None if targets is None else set(targets)
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m and (wanted is None or m.group("target") in wanted) and entry.is_file():
            with suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _create_temp(path: Path) -> tuple[int, str]:
    """Create and open ``.{name}.{random}.tmp`` beside `path`: (fd, name).

    Created with `os.open(..., 0o666)` so the kernel applies the current umask, as `open` does.
    """
    for _ in range(100):
        tmp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable (best effort: not every platform can open a dir)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(
    path: str | os.PathLike,
    mode: str = "w",
    *,
    encoding: str | None = "utf-8",
    fsync: bool = True,
) -> Iterator[IO[Any]]:
    """Yield a temporary file beside `path`; rename it onto `path` when the block succeeds.

    `mode` is ``"w"`` (text, in `encoding`, newlines as `open` writes them) or ``"wb"``
    (binary; `encoding` is ignored). On an exception, including KeyboardInterrupt, the temporary
    file is removed, `path` keeps its old content (or stays absent) and the exception propagates
    (as `DiskFullError` when the disk or quota is full, whatever the writer raised).
    Missing parent directories are created. See the module docstring for the mode and `fsync`.

    ```python
    with atomic_write(run_dir / "checkpoint.pt", "wb") as f:
        torch.save(state, f)
    ```
    """
    if mode not in _MODES:
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path)
    except OSError as exc:  # no room even for an empty file (or a directory entry)
        if exc.errno in _DISK_FULL:
            raise DiskFullError(path, exc.errno) from exc
        raise
    try:
        text = mode == "w"
        with os.fdopen(fd, mode, encoding=encoding if text else None) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        convert = isinstance(exc, Exception) and not isinstance(exc, DiskFullError)
        full = disk_full_error(exc) if convert else None  # not a KeyboardInterrupt
        if full is not None:
            raise DiskFullError(path, full.errno) from exc
        raise
    if fsync:
        _fsync_dir(path.parent)


def atomic_write_text(
    path: str | os.PathLike, text: str, *, encoding: str = "utf-8", fsync: bool = True
) -> Path:
    """Write `text` to `path` atomically; returns `path` as a Path."""
    with atomic_write(path, "w", encoding=encoding, fsync=fsync) as f:
        f.write(text)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write `data` to `path` atomically; returns `path` as a Path."""
    with atomic_write(path, "wb", fsync=fsync) as f:
        f.write(data)
    return Path(path)


def atomic_write_json(
    path: str | os.PathLike,
    obj: Any,
    *,
    trailing_newline: bool = False,
    encoding: str = "utf-8",
    fsync: bool = True,
    **json_kwargs: Any,
) -> Path:
    """`json.dump(obj, f, **json_kwargs)` to `path` atomically; returns `path` as a Path.

    The document is streamed, not built as one string first. `trailing_newline` appends
    ``"\\n"`` after it. An error raised by `json.dump` (TypeError for an unserialisable value,
    ValueError for NaN with ``allow_nan=False`` or a circular reference) propagates unchanged
    and nothing is written.
    """
    with atomic_write(path, "w", encoding=encoding, fsync=fsync) as f:
        json.dump(obj, f, **json_kwargs)
        if trailing_newline:
            f.write("\n")
    return Path(path)


def project_root() -> Path:
    """The checkout the package is imported from (the folder holding ``qgmrn/`` and
    ``notebooks/``): relative paths in notebooks and commands are read from there."""
    return Path(__file__).resolve().parents[1]


def portable_path(path: str | os.PathLike) -> str:
    """`path` as a record that travels: relative to the project root when inside it (so that a
    committed config.json names no machine's folders), else absolute."""
    absolute = Path(os.path.abspath(Path(path).expanduser()))  # symlinks kept: data/x -> /mnt
    for candidate in (absolute, absolute.resolve()):
        try:
            return str(candidate.relative_to(project_root()))
        except ValueError:
            continue
    return str(absolute)


def locate(path: str | os.PathLike) -> Path:
    """Where a recorded path is on this machine: as given when it exists from the working
    directory (or is absolute), else, when relative, under the project root where it exists
    there (a run recorded by `portable_path`, read from notebooks/); else as given."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    under_root = project_root() / p
    return under_root if under_root.exists() else p
