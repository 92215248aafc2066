"""Reading pretrained checkpoints and loading converted state dicts with honest reporting.

Backbones call these from ``init_weights()`` when ``init_cfg=dict(type='Pretrained', ...)``:

1. :func:`read_state_dict` reads a path or http(s) URL (``.pth``, ``.pth.tar``, ``.pt``,
   ``.safetensors``) through mmengine's ``CheckpointLoader`` (which :mod:`hybridvit.compat`
   extends), unwraps ``state_dict`` / ``model`` / ``module.`` and applies mmengine's ``prefix``.
2. The backbone converts the keys with a pure function of its own (format detected from keys).
3. :func:`load_state_dict_strictly` loads the result and raises :class:`CheckpointMismatchError`
   listing every missing / unexpected key and every shape mismatch, except keys the caller
   declares as expected to be absent (e.g. dense-prediction norms absent from ImageNet weights).
"""
import os
import re
import tempfile
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['CheckpointMismatchError', 'read_state_dict', 'load_state_dict_strictly',
           'save_checkpoint_atomically']


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model it is loaded into."""


def read_state_dict(checkpoint: str, prefix: Optional[str] = None,
                    map_location='cpu', use_ema: bool = False) -> 'OrderedDict[str, torch.Tensor]':
    """Read ``checkpoint`` (path or URL) and return a flat tensor state dict.

    Training checkpoints are unwrapped as timm's ``validate.py`` does: ``state_dict`` (or
    ``model`` / ``model_state``) by default; a timm ``CheckpointSaver`` file may also hold an
    EMA copy under ``state_dict_ema``, which ``use_ema=True`` selects (its presence is logged).

    Args:
        checkpoint: local path or http(s) URL.
        prefix: keep only keys starting with ``prefix`` and strip it (mmengine's
            ``Pretrained`` ``prefix`` semantics, e.g. ``'backbone.'``).
        map_location: passed to the loader.
        use_ema: load ``state_dict_ema`` instead of ``state_dict``.

    Raises:
        CheckpointMismatchError: ``use_ema`` but the file has no ``state_dict_ema``, or the
            file holds no state dict.
    """
    raw = CheckpointLoader.load_checkpoint(checkpoint, map_location=map_location)
    state_dict = raw
    if isinstance(raw, dict):
        has_ema = isinstance(raw.get('state_dict_ema'), dict)
        if use_ema and not has_ema:
            raise CheckpointMismatchError(
                f'{checkpoint}: use_ema=True but the file has no "state_dict_ema" (top-level '
                f'keys: {sorted(raw)[:8]})')
        keys = ('state_dict_ema',) if use_ema else ('state_dict', 'model', 'model_state',
                                                    'state_dict_ema')
        for key in keys:
            if key in raw and isinstance(raw[key], dict):
                state_dict = raw[key]
                break
        if has_ema and not use_ema and state_dict is not raw['state_dict_ema']:
            print_log(f'{checkpoint}: holds an EMA copy ("state_dict_ema"); loading '
                      '"state_dict" (set use_ema=True in init_cfg to load the EMA weights)',
                      logger='current')
    if not isinstance(state_dict, dict):
        raise CheckpointMismatchError(
            f'{checkpoint}: expected a state dict (or a dict holding one under "state_dict" / '
            f'"model"), got {type(state_dict).__name__}')
    state_dict = OrderedDict(
        (re.sub(r'^module\.', '', k), v) for k, v in state_dict.items()
        if isinstance(v, torch.Tensor))
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        selected = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                               if k.startswith(prefix))
        if not selected:
            raise CheckpointMismatchError(
                f'{checkpoint}: no key starts with prefix "{prefix}" (first keys: '
                f'{list(state_dict)[:5]})')
        state_dict = selected
    return state_dict


def _summarise(keys: List[str], limit: int = 12) -> str:
    shown = ', '.join(keys[:limit])
    return shown + (f', ... ({len(keys) - limit} more)' if len(keys) > limit else '')


def load_state_dict_strictly(module: torch.nn.Module,
                             state_dict: Dict[str, torch.Tensor],
                             source: str = 'checkpoint',
                             allowed_missing: Iterable[str] = (),
                             dropped: Iterable[str] = (),
                             logger='current') -> None:
    """Load ``state_dict`` into ``module``; raise on anything that does not fit.

    Args:
        module: the model to load into.
        state_dict: converted state dict (keys in ``module``'s naming).
        source: name of the file, used in messages.
        allowed_missing: regular expressions of module keys that may be absent from the
            checkpoint (they keep their initialisation), e.g. ``r'^norm\\d\\.'``.
        dropped: keys the converter removed on purpose (classifier heads); logged.
        logger: mmengine logger name.

    Raises:
        CheckpointMismatchError: with the lists of missing / unexpected keys and shape
            mismatches ("key: checkpoint (shape) vs model (shape)").
    """
    own = module.state_dict()
    patterns = [re.compile(p) for p in allowed_missing]
    missing = [k for k in own if k not in state_dict
               and not k.endswith('num_batches_tracked')
               and not any(p.search(k) for p in patterns)]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    if missing or unexpected or mismatched:
        parts = [f'{source} does not match {type(module).__name__}']
        if mismatched:
            parts.append(f'{len(mismatched)} shape mismatch(es): {_summarise(mismatched)}')
        if missing:
            parts.append(f'{len(missing)} missing key(s): {_summarise(missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected key(s): {_summarise(unexpected)}')
        raise CheckpointMismatchError('; '.join(parts))
    dropped = list(dropped)
    if dropped:
        print_log(f'{source}: dropped {len(dropped)} classifier key(s) not used for dense '
                  f'prediction: {_summarise(dropped)}', logger=logger)
    kept_init = [k for k in own if k not in state_dict and not k.endswith('num_batches_tracked')]
    if kept_init:
        print_log(f'{source}: {len(kept_init)} key(s) not in the checkpoint keep their '
                  f'initialisation: {_summarise(kept_init)}', logger=logger)
    module.load_state_dict(state_dict, strict=False)
    print_log(f'loaded {len(state_dict)} tensors from {source} into {type(module).__name__}',
              logger=logger)


def save_checkpoint_atomically(state_dict: Dict[str, torch.Tensor], dst: str,
                               meta: Optional[dict] = None) -> None:
    """Write ``state_dict`` to ``dst`` via a temporary file in the same folder + rename.

    ``.safetensors`` gets the tensors only; anything else a torch file
    ``{'state_dict': ..., 'meta': ...}``. An interrupted write never leaves a partial ``dst``.
    """
    folder = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'output folder does not exist: {folder}')
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(dst) + '.', dir=folder)
    os.close(fd)
    try:
        if dst.endswith('.safetensors'):
            from safetensors.torch import save_file
            save_file({k: v.contiguous() for k, v in state_dict.items()}, tmp)
        else:
            payload = {'state_dict': state_dict}
            if meta is not None:
                payload['meta'] = meta
            torch.save(payload, tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
