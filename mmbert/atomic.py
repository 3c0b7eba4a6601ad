"""Outputs that appear whole or not at all.

Every stage writes a local output into a temporary sibling and renames it into place at the end, so a crash or a
kill never leaves a half-written file or directory that a later stage could mistake for a finished one. (A remote
corpus or crawl output, on an object store without renames, is written in place and marked finished by `_SUCCESS`.)
`check_output_directory` is the one check, before any work, of what a command may write and replace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from mmbert.errors import UsageError


def _process_umask() -> int:
    mask = os.umask(0o022)  # the only portable way to read it is to set it; once, at import, then restored
    os.umask(mask)
    return mask


# mkstemp and mkdtemp create owner-only entries (0600 / 0700); a finished output gets the permissions a plain
# open() or mkdir() would have given it, so exported models, shards and reports are readable as usual.
_UMASK = _process_umask()


def _make_parent(path: Path, kind: str) -> None:
    """Create `path`'s directory; UsageError (exit 2) when the path cannot be one's output at all."""
    try:
        if kind == "file" and path.is_dir():
            raise UsageError(f"{path} is a directory; name a file to write")
        if kind == "directory" and path.exists() and not path.is_dir():
            raise UsageError(f"{path} is a file; name a directory to write")
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"cannot write {path}: a file stands where a directory of its path should be") from None
    except OSError as error:  # a name too long, a read-only or virtual filesystem
        raise UsageError(f"cannot write {path}: {error.strerror}") from None


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", **open_kwargs) -> Iterator:
    """Open a temporary file beside `path`; on success fsync and rename it to `path`, on error remove it."""
    path = Path(path)
    _make_parent(path, "file")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:  # from here on, any exit (a signal included) removes the temporary file
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def check_output_directory(output: str | os.PathLike, overwrite: bool, reads: Iterable[tuple[str, object]] = (),
                           scans: Iterable[tuple[str, object]] = ()) -> Path:
    """Before any work, UsageError (exit 2) unless `output` can become this command's finished directory:
    - it does not exist, is an empty directory, or `overwrite` says to replace it;
    - it is not, and does not hold, anything the command reads (`reads`, `scans`: (option, path) pairs), since
      replacing it would delete that input;
    - it is not inside a directory the command walks (`scans`), where it would be read as input.
    Every command writing a directory checks this one way."""
    output = Path(output)
    if output.is_symlink():  # replacing it would drop the link, not write where it points: name the target
        raise UsageError(f"--output {output} is a symbolic link (to {os.readlink(output)}); name a real directory")
    empty = output.is_dir() and not any(output.iterdir())  # used as is: atomic_directory removes it
    if output.exists() and not overwrite and not empty:
        raise UsageError(f"--output {output} already exists (pass --overwrite to replace it)")
    target = output.resolve()
    scans = [(option, path) for option, path in scans if path is not None]
    for option, path in [*((o, p) for o, p in reads if p is not None), *scans]:
        source = Path(path).resolve()
        if target == source or target in source.parents:
            raise UsageError(f"--output {output} must not be or hold the {option} it reads ({path}): replacing "
                             "it would delete that")
    for option, path in scans:
        if Path(path).resolve() in target.parents:
            raise UsageError(f"--output {output} must not be inside {option} {path}, which this command reads")
    return output


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; on success it replaces `path` in one rename.

    With `overwrite`, an existing `path` is moved aside first and deleted only once the new one is in place.
    """
    path = Path(path)
    _make_parent(path, "directory")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror}") from None
    try:  # from here on, any exit (a signal included) removes the staging directory
        os.chmod(tmp, 0o777 & ~_UMASK)
        yield tmp
        old = None
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            path.rmdir()  # an empty directory named as the output (`mkdir out` first) holds nothing to keep
        if path.exists() or path.is_symlink():
            if not overwrite:  # made by someone else while this ran: theirs stays, this one is not written
                raise UsageError(f"{path} appeared while this was being written (another run?); "
                                 "nothing was replaced; pass --overwrite to replace it")
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            if old.is_symlink() or not old.is_dir():  # a link is removed, never what it points to
                old.unlink()
            else:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
