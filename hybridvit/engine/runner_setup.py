"""Turning command-line flags into a runnable config, shared by ``tools/train.py`` / ``test.py``.

Works for the three scopes the toolkit uses (``mmdet``, ``mmseg``, ``hybridvit``); mmengine's
``Runner`` does the rest.
"""
import os
import os.path as osp
from typing import Iterable, List, Tuple

import torch
from mmengine.config import Config, ConfigDict

from hybridvit.utils.cli import UserError, is_own_bug

__all__ = ['load_config', 'check_datasets_exist', 'build_dataloaders_checked', 'replace_sync_bn',
           'setup_cpu_distributed', 'add_default_hooks', 'DATASET_HINTS']

DATASET_HINTS = {
    'ADE20KDataset': 'download ADEChallengeData2016 into data/ade/ (README "Benchmarks on full datasets") '
                     'or generate the mini set: python tools/dataset_converters/make_mini_datasets.py ade',
    'PascalVOCDataset': 'download VOC2012 + SBD into data/VOCdevkit (README "Benchmarks on '
                        'full datasets") or generate the mini set: python tools/dataset_converters/'
                        'make_mini_datasets.py voc',
    'CocoDataset': 'download COCO 2017 into data/coco/ (README "Benchmarks on full datasets") or generate '
                   'the mini set: python tools/dataset_converters/make_mini_datasets.py coco',
    'FreiHANDDataset': 'download FreiHAND_pub_v2 into data/freihand/ (README "Benchmarks '
                       'on full datasets") or generate the mini set: python tools/dataset_converters/'
                       'make_mini_freihand.py',
}


def load_config(path: str, cfg_options=None) -> Config:
    if not osp.isfile(path):
        raise UserError(f'config file not found: {path}')
    try:
        cfg = Config.fromfile(path)
    except FileNotFoundError as err:
        raise UserError(f'{path}: {err}') from None
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def _leaf_datasets(dataset_cfg) -> Iterable[dict]:
    """Yield the innermost dataset configs (through wrappers such as ConcatDataset)."""
    if not isinstance(dataset_cfg, dict):
        return
    if 'datasets' in dataset_cfg:
        for sub in dataset_cfg['datasets']:
            yield from _leaf_datasets(sub)
    elif 'dataset' in dataset_cfg:
        yield from _leaf_datasets(dataset_cfg['dataset'])
    else:
        yield dataset_cfg


def _required_paths(ds: dict) -> List[Tuple[str, str]]:
    root = ds.get('data_root') or ''
    paths = [('data_root', root)] if root else []
    ann = ds.get('ann_file')
    if ann:
        paths.append(('ann_file', ann if osp.isabs(ann) else osp.join(root, ann)))
    for key, sub in (ds.get('data_prefix') or {}).items():
        if sub:
            paths.append((f'data_prefix.{key}', sub if osp.isabs(sub) else osp.join(root, sub)))
    return paths


def check_datasets_exist(cfg: Config, config_path: str,
                         loaders=('train_dataloader', 'val_dataloader')) -> None:
    """Fail early, naming where we looked and how to prepare the data, if a dataset is missing."""
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not loader_cfg:
            continue
        for ds in _leaf_datasets(loader_cfg.get('dataset')):
            for key, path in _required_paths(ds):
                if path and not osp.exists(path):
                    ds_type = str(ds.get('type', '?')).split('.')[-1]
                    hint = DATASET_HINTS.get(ds_type, 'see README "Benchmarks on full datasets"')
                    raise UserError(
                        f'{config_path}: {loader} needs {ds_type} at {osp.abspath(path)} '
                        f'({key}), which does not exist; prepare it: {hint}')


def _describe_dataset(dataset_cfg) -> str:
    parts = []
    for ds in _leaf_datasets(dataset_cfg):
        ds_type = str(ds.get('type', '?')).split('.')[-1]
        where = [f'{key}={path}' for key, path in _required_paths(ds) if key != 'data_root']
        parts.append(f"{ds_type} ({', '.join(where) or 'data_root=' + str(ds.get('data_root'))})")
    return ' + '.join(parts) or 'dataset'


def build_dataloaders_checked(runner, config_path: str,
                              loaders=('train_dataloader', 'val_dataloader')) -> None:
    """Build the runner's dataloaders now (mmengine would build them lazily, in the same order),
    turning an unreadable annotation file or an empty dataset into a :class:`UserError` that
    names the dataset and its annotation file (a bug in our own dataset code keeps its
    traceback, see :func:`hybridvit.utils.cli.is_own_bug`).

    mmengine's loops accept a built ``DataLoader`` in place of its config, so nothing else
    changes (the samplers are seeded from ``runner.seed`` exactly as the loops would do).
    """
    import json
    for name in loaders:
        attr = f'_{name}'
        loader_cfg = getattr(runner, attr, None)
        if not isinstance(loader_cfg, dict):
            continue
        described = _describe_dataset(loader_cfg.get('dataset'))
        try:
            loader = runner.build_dataloader(
                loader_cfg, seed=runner.seed,
                diff_rank_seed=runner._randomness_cfg.get('diff_rank_seed', False))
            empty = len(loader.dataset) == 0
        except (ValueError, KeyError, TypeError, IndexError, AssertionError, OSError,
                json.JSONDecodeError) as err:
            if is_own_bug(err):
                raise
            if 'need at least one array to concatenate' not in str(err):
                from hybridvit.utils.cli import one_line
                raise UserError(f'{config_path}: {name}: cannot load {described}: '
                                f'{type(err).__name__}: {one_line(err)}') from err
            empty = True  # mmengine's BaseDataset cannot serialize an empty data list
        if empty:
            raise UserError(f'{config_path}: {name}: {described} has no samples (expected at '
                            'least one image with annotations; check the annotation file and '
                            'the data_prefix folders)')
        setattr(runner, attr, loader)


def replace_sync_bn(node):
    """Replace every ``type='SyncBN'`` by ``'BN'`` in a config tree (CPU multi-process runs)."""
    if isinstance(node, (dict, ConfigDict)):
        for key, value in node.items():
            if key == 'type' and value == 'SyncBN':
                node[key] = 'BN'
            else:
                replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            replace_sync_bn(value)
    return node


def setup_cpu_distributed(cfg: Config) -> None:
    """Make a ``--launcher pytorch`` run work on CPUs with mmengine 0.10 (gloo, no device ids).

    mmengine's ``init_dist`` calls ``torch.cuda.set_device`` and its DDP wrapper passes
    ``device_ids=[LOCAL_RANK]``; both fail on CPU. We create the gloo process group ourselves
    (the Runner then skips ``init_dist``) and give DDP ``device_ids=None``. torch's SyncBN has no
    CPU implementation, so SyncBN becomes BN.
    """
    import torch.distributed as dist
    if torch.cuda.is_available():
        return
    for var in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        if var not in os.environ:
            raise UserError(f'--launcher pytorch needs ${var} (start with tools/dist_train.sh or '
                            'torchrun)')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.setdefault('env_cfg', ConfigDict())
    cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg.backend = 'gloo'
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,
                                 broadcast_buffers=False,
                                 find_unused_parameters=cfg.get('find_unused_parameters', False))
    replace_sync_bn(cfg._cfg_dict)


def add_default_hooks(cfg: Config) -> None:
    """Add hybridvit's reproducible-resume and non-finite-loss hooks unless already present,
    and write checkpoints atomically (the checkpoint hook's ``backend_args`` select
    :data:`hybridvit.compat.ATOMIC_BACKEND` unless the config sets a backend of its own)."""
    from hybridvit.compat import ATOMIC_BACKEND
    checkpoint_hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if checkpoint_hook is not None and not checkpoint_hook.get('backend_args') \
            and '://' not in str(checkpoint_hook.get('out_dir') or ''):
        checkpoint_hook['backend_args'] = dict(backend=ATOMIC_BACKEND)
    hooks = list(cfg.get('custom_hooks', []) or [])
    present = {str(h.get('type', '')).split('.')[-1] for h in hooks}
    for name in ('ReproducibleResumeHook', 'NonFiniteLossHook'):
        if name not in present:
            hooks.append(dict(type=f'hybridvit.{name}'))
    cfg.custom_hooks = hooks
