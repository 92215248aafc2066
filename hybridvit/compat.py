"""What mmengine 0.10 needs on a modern torch: explicit, scoped, written for mmengine 0.10.x.

Process-wide effects of importing :mod:`hybridvit` (nothing else is changed):

1. **Checkpoint loading** (mmengine's own extension point,
   ``CheckpointLoader.register_scheme(..., force=True)`` for local paths and http(s) URLs):
   torch >= 2.6 loads with ``weights_only=True`` by default, which refuses the few Python
   objects mmengine stores in its checkpoints (``HistoryBuffer``, numpy arrays and scalars in
   the message hub), so ``--resume`` and ``load_from`` fail. Our loaders keep
   ``weights_only=True`` and allow-list exactly those classes (plus the ``argparse.Namespace``
   that timm's ``CheckpointSaver`` stores as ``args``, as in Apple's FastViT releases); read
   ``.safetensors`` files (timm's published weights), locally and from URLs; and refuse any
   other pickled object with an error naming the file and the object, unless the user trusted
   that one file explicitly (:func:`trust_checkpoint`; the tools that offer
   ``--trust-checkpoint`` call it and put the option into the error, see
   :func:`hybridvit.utils.cli.trust_checkpoint_hint`).
2. **A file backend** named ``'hybridvit_atomic_local'`` is registered with
   ``mmengine.fileio.register_backend`` (a new name; mmengine's ``'local'`` backend is left as
   it is). It writes through a temporary file + rename. The tools point the checkpoint hook at
   it (``default_hooks.checkpoint.backend_args``, see
   :func:`hybridvit.engine.runner_setup.add_default_hooks`), so an interrupted checkpoint
   write never leaves a truncated ``.pth`` behind. No mmengine attribute is rebound.

A different mmengine minor version gets a warning: the allow-list mirrors what mmengine 0.10
pickles.
"""
import argparse
import collections
import hashlib
import os
import os.path as osp
import pickle
import warnings
from typing import Optional, Set

import numpy as np
import torch
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['UnsafeCheckpointError', 'CheckpointReadError', 'trust_checkpoint', 'safe_torch_load',
           'load_any_checkpoint', 'apply_patches', 'ATOMIC_BACKEND']

_TRUSTED_FILES: Set[str] = set()
_PATCHED = False


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds pickled objects outside the allow-list.

    Args:
        filename: the refused file.
        detail: what torch refused (``Unsupported global: ...``).
        hint: how to trust the file, completing "If you trust this file, ..."; defaults to the
            library call. A tool replaces it with its command-line option
            (:func:`hybridvit.utils.cli.trust_checkpoint_hint`).
    """

    def __init__(self, filename: str, detail: str, hint: Optional[str] = None) -> None:
        super().__init__(filename, detail, hint)  # args: pickles and unpickles as it was built
        self.filename = filename
        self.detail = detail
        self.hint = hint or (f'call hybridvit.compat.trust_checkpoint({filename!r}) before '
                             'loading it')

    def __str__(self) -> str:
        return (f'refusing to unpickle checkpoint {self.filename}: {self.detail}. If you trust '
                f'this file, {self.hint}')


class CheckpointReadError(ValueError):
    """A checkpoint file exists but cannot be read (truncated, corrupt, not a checkpoint)."""


def trust_checkpoint(filename: str) -> None:
    """Allow full unpickling (``weights_only=False``) of this one file the user named."""
    _TRUSTED_FILES.add(_canonical(filename))


def _canonical(filename: str) -> str:
    if '://' in filename:
        return filename
    return osp.realpath(osp.expanduser(filename))


def _history_buffer_getattr(obj, name):
    """``getattr`` restricted to what a pickled mmengine ``HistoryBuffer`` needs.

    ``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer, 'mean')``;
    allowing the real ``getattr`` would let a crafted file reach arbitrary objects.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    # the built-in statistics are only added to the class-level registry when a first
    # HistoryBuffer is constructed: a fresh process (tools/test.py) has not made one yet
    if obj is HistoryBuffer and (name in ('min', 'max', 'current', 'mean')
                                 or name in HistoryBuffer._statistics_methods):
        return getattr(obj, name)
    raise pickle.UnpicklingError(f'Unsupported global: getattr({obj!r}, {name!r})')


def _safe_globals():
    """Classes found in mmengine's checkpoints (message hub, numpy metadata) and in timm
    ``CheckpointSaver`` files (Apple's FastViT releases): ``args`` is an
    ``argparse.Namespace``, a plain attribute bag rebuilt from data (``__new__`` + ``__dict__``
    update), which runs no code of the file's choosing."""
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = [HistoryBuffer, np.ndarray, np.dtype, collections.OrderedDict, argparse.Namespace,
               (_history_buffer_getattr, 'builtins.getattr')]
    try:  # numpy >= 2 keeps these under numpy._core
        from numpy._core.multiarray import _reconstruct, scalar
        allowed += [_reconstruct, scalar]
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
        allowed += [_reconstruct, scalar]
    # dtype classes (numpy >= 1.25 exposes them as numpy.dtypes.*)
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith('DType')]
    for name in ('float64', 'float32', 'float16', 'int64', 'int32', 'int16', 'int8', 'uint8',
                 'bool_'):
        allowed.append(getattr(np, name))
    return allowed


def safe_torch_load(filename: str, map_location=None):
    """``torch.load`` with ``weights_only=True`` plus mmengine's own classes.

    Raises:
        UnsafeCheckpointError: the file holds another pickled object and was not trusted.
    """
    if _canonical(filename) in _TRUSTED_FILES:
        warnings.warn(f'loading {filename} with weights_only=False because it was trusted '
                      'explicitly; only do this for files you trust')
        return torch.load(filename, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        detail = str(err).strip().splitlines()
        # torch names the object as "Unsupported global: ..." or "... unsupported GLOBAL
        # posix.system whose module posix is blocked"
        offending = next((line for line in detail if 'unsupported global' in line.lower()),
                         detail[0])
        raise UnsafeCheckpointError(filename, offending.strip()) from None


def _load_safetensors(filename: str):
    from safetensors.torch import load_file
    return load_file(filename, device='cpu')


def load_any_checkpoint(filename: str, map_location=None):
    """Load a local ``.pth/.pth.tar/.pt`` (torch pickle) or ``.safetensors`` file."""
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    try:
        if filename.endswith('.safetensors'):
            return _load_safetensors(filename)
        return safe_torch_load(filename, map_location=map_location)
    except UnsafeCheckpointError:
        raise
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointReadError(
            f'cannot read checkpoint {filename} ({osp.getsize(filename)} bytes): {first}; is it '
            'truncated or not a torch / safetensors checkpoint?') from None


def _load_from_local(filename: str, map_location=None):
    return load_any_checkpoint(osp.expanduser(filename), map_location=map_location)


def _load_from_http(filename: str, map_location=None, model_dir: Optional[str] = None,
                    progress: bool = True):
    """Download once into the torch hub cache, then load like a local file."""
    from torch.hub import download_url_to_file, get_dir
    from urllib.parse import urlparse
    model_dir = model_dir or osp.join(get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    # hub URLs often end in the same name (".../model.safetensors"): key the cache by the URL
    url_hash = hashlib.sha256(filename.encode()).hexdigest()[:8]
    cached = osp.join(model_dir, f'{url_hash}_{osp.basename(urlparse(filename).path)}')
    if not osp.exists(cached):
        download_url_to_file(filename, cached, progress=progress)
    if filename in _TRUSTED_FILES:
        _TRUSTED_FILES.add(_canonical(cached))
    return load_any_checkpoint(cached, map_location=map_location)


SUPPORTED_MMENGINE = '0.10.'
ATOMIC_BACKEND = 'hybridvit_atomic_local'


def _check_mmengine_version() -> None:
    import mmengine
    if not mmengine.__version__.startswith(SUPPORTED_MMENGINE):
        warnings.warn(f'hybridvit.compat was written for mmengine {SUPPORTED_MMENGINE}x; found '
                      f'{mmengine.__version__}: checkpoint loading may need a new allow-list')


def _atomic_local_backend():
    from mmengine.fileio.backends import LocalBackend

    from hybridvit.utils.atomic import atomic_write

    class AtomicLocalBackend(LocalBackend):
        """mmengine's local file backend whose writes go through a temporary file + rename
        (:func:`hybridvit.utils.atomic.atomic_write`): readers never see a partial file."""

        def put(self, obj: bytes, filepath) -> None:
            with atomic_write(str(filepath)) as tmp:
                with open(tmp, 'wb') as f:
                    f.write(obj)

        def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
            with atomic_write(str(filepath)) as tmp:
                with open(tmp, 'w', encoding=encoding) as f:
                    f.write(obj)

    return AtomicLocalBackend


def apply_patches() -> None:
    """Register our checkpoint loaders and the atomic local file backend (idempotent)."""
    global _PATCHED
    if _PATCHED:
        return
    from mmengine.fileio import register_backend
    _check_mmengine_version()
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local, force=True)
    CheckpointLoader.register_scheme(prefixes=['http://', 'https://'], loader=_load_from_http,
                                     force=True)
    register_backend(ATOMIC_BACKEND, _atomic_local_backend(), force=True)
    _PATCHED = True


apply_patches()
