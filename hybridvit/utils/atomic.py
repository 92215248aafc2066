"""Atomic file writing: the one place that writes through a temporary file + rename.

An interrupted write (Ctrl-C, SIGKILL, a full disk, an exception in the writer) never leaves a
partial file under the destination name: the data goes to a hidden temporary file in the same
folder (same file system, so :func:`os.replace` is atomic), which is flushed, fsynced and renamed
over the destination only when the writer finished. On failure the temporary file is removed.

Usage::

    with atomic_write('out/model.onnx') as tmp:   # tmp: a path to write to
        torch.onnx.export(model, x, tmp)

    with atomic_open('out/pred.json', 'w') as f:  # f: an open file object
        json.dump(result, f)

    with atomic_write_dir('out/model.mlpackage') as tmp:  # a folder the writer creates
        mlmodel.save(tmp)
"""
import contextlib
import os
import os.path as osp
import shutil
import tempfile
from typing import IO, Iterator, Tuple

__all__ = ['atomic_write', 'atomic_open', 'atomic_write_dir']


def _destination(path: str, make_dirs: bool) -> Tuple[str, str, str]:
    """``(folder, base name, extension incl. the dot)`` of ``path``; creates / checks the folder."""
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    if make_dirs:
        os.makedirs(folder, exist_ok=True)
    elif not osp.isdir(folder):
        raise FileNotFoundError(f'output folder does not exist: {folder}')
    base = osp.basename(path)
    return folder, base, ''.join(base.partition('.')[1:]) if '.' in base.lstrip('.') else ''


@contextlib.contextmanager
def atomic_write(path: str, make_dirs: bool = True) -> Iterator[str]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps ``path``'s extension (writers such as ``cv2.imwrite`` and
    ``matplotlib`` pick the format from it).

    Args:
        path: destination file.
        make_dirs: create the destination folder if missing (else it must exist).

    Raises:
        FileNotFoundError: the destination folder does not exist and ``make_dirs`` is False.
    """
    folder, base, suffix = _destination(path, make_dirs)
    fd, tmp = tempfile.mkstemp(prefix=f'.{base}.', suffix=f'.tmp{suffix}', dir=folder)
    os.close(fd)
    try:
        yield tmp
        if osp.isfile(tmp):
            with open(tmp, 'rb+') as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if osp.lexists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = 'w', make_dirs: bool = True, **kwargs) -> Iterator[IO]:
    """Open a temporary file for writing; rename it to ``path`` when the block succeeds.

    Args:
        path: destination file.
        mode: ``'w'`` or ``'wb'`` (other modes make no sense for an atomic replace).
        make_dirs: create the destination folder if missing.
        **kwargs: passed to :func:`open` (e.g. ``encoding``).
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    with atomic_write(path, make_dirs=make_dirs) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()


@contextlib.contextmanager
def atomic_write_dir(path: str, make_dirs: bool = True) -> Iterator[str]:
    """Yield a free temporary path next to ``path`` for a writer that creates a FOLDER there
    (e.g. coremltools' ``.mlpackage``); move it to ``path`` when the block succeeds.

    A folder cannot be renamed over a non-empty one, so an existing ``path`` is first renamed
    aside, then the new folder renamed in, then the old one deleted: a reader sees the old
    complete folder, briefly nothing, then the new complete folder, never a partial one. On
    failure the temporary folder is removed and an existing ``path`` stays as it was.

    Args:
        path: destination folder (or file) to replace.
        make_dirs: create the parent folder if missing (else it must exist).

    Raises:
        FileNotFoundError: the writer created nothing, or the parent folder is missing and
            ``make_dirs`` is False.
    """
    path = os.fspath(path)
    folder, base, suffix = _destination(osp.normpath(path), make_dirs)

    def free_name(tag: str) -> str:
        name = tempfile.mkdtemp(prefix=f'.{base}.', suffix=f'.{tag}{suffix}', dir=folder)
        os.rmdir(name)  # reserve a unique name; the writer / rename creates it
        return name

    def remove(target: str) -> None:
        if osp.isdir(target) and not osp.islink(target):
            shutil.rmtree(target, ignore_errors=True)
        elif osp.lexists(target):
            os.remove(target)

    tmp = free_name('tmp')
    try:
        yield tmp
        if not osp.lexists(tmp):
            raise FileNotFoundError(f'the writer created nothing at {tmp} (for {path})')
        if osp.lexists(path):
            old = free_name('old')
            os.rename(path, old)
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(old, path)
                raise
            remove(old)
        else:
            os.rename(tmp, path)
    finally:
        remove(tmp)
