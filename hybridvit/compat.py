"""Fixes that mmengine 0.10 needs on a modern torch, applied without process-wide switches.

torch >= 2.6 loads checkpoints with ``weights_only=True`` by default, which refuses the few
Python objects mmengine stores in its own checkpoints (``HistoryBuffer``, numpy arrays and
scalars in the message hub), so ``--resume`` and ``load_from`` fail. We re-register mmengine's
local and http(s) checkpoint loaders with loaders that

* keep ``weights_only=True`` and allow-list exactly the classes mmengine's checkpoints contain;
* read ``.safetensors`` files (timm's published weights), locally and from URLs;
* write local checkpoints atomically (temporary file + rename; mmengine's writes are not);
* refuse any other pickled object with an error naming the file and the object, unless the user
  trusted that one file explicitly (:func:`trust_checkpoint`, ``--trust-checkpoint`` in the
  tools), in which case it is loaded with ``weights_only=False`` and a warning.

Importing :mod:`hybridvit` applies this (idempotently).
"""
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

__all__ = ['UnsafeCheckpointError', 'CheckpointReadError', 'trust_checkpoint', 'safe_torch_load', 'load_any_checkpoint',
           'apply_patches']

_TRUSTED_FILES: Set[str] = set()
_PATCHED = False


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds pickled objects outside the allow-list."""


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
    """Classes found in mmengine's checkpoints (message hub, numpy metadata)."""
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = [HistoryBuffer, np.ndarray, np.dtype, collections.OrderedDict,
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
        offending = next((line for line in detail if 'Unsupported global' in line), detail[0])
        raise UnsafeCheckpointError(
            f'refusing to unpickle checkpoint {filename}: {offending.strip()}. If you trust this '
            f'file, pass --trust-checkpoint to the tool (or call '
            f'hybridvit.compat.trust_checkpoint({filename!r}))') from None


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


def _atomic_save_checkpoint(checkpoint, filename, file_client_args=None, backend_args=None):
    """mmengine's ``save_checkpoint``, but local files are written to a temporary file in the
    same folder and renamed, so an interrupted write never leaves a truncated checkpoint."""
    if '://' in str(filename) or file_client_args is not None or backend_args is not None:
        return _ORIGINAL_SAVE(checkpoint, filename, file_client_args=file_client_args,
                              backend_args=backend_args)
    filename = str(filename)
    os.makedirs(osp.dirname(osp.abspath(filename)), exist_ok=True)
    tmp = f'{filename}.tmp-{os.getpid()}'
    try:
        with open(tmp, 'wb') as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


_ORIGINAL_SAVE = None


def apply_patches() -> None:
    """Register our loaders with mmengine's CheckpointLoader and make its checkpoint writes
    atomic (idempotent)."""
    global _PATCHED, _ORIGINAL_SAVE
    if _PATCHED:
        return
    import mmengine.runner.checkpoint as mm_checkpoint
    import mmengine.runner.runner as mm_runner
    _ORIGINAL_SAVE = mm_checkpoint.save_checkpoint
    mm_runner.save_checkpoint = _atomic_save_checkpoint
    CheckpointLoader.register_scheme(prefixes='', loader=_load_from_local, force=True)
    CheckpointLoader.register_scheme(prefixes=['http://', 'https://'], loader=_load_from_http,
                                     force=True)
    _PATCHED = True


apply_patches()
