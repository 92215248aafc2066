"""FreiHAND data set (Zimmermann et al., "FreiHAND: A Dataset for Markerless Capture of Hand Pose
and Shape from Single RGB Images", ICCV 2019, https://arxiv.org/abs/1909.04349).

Reads the official on-disk layout (https://github.com/lmb-freiburg/freihand): ``training/rgb/``
with 32,560 samples x 4 appearance versions (image id = idx + 32560 * version, also for a smaller
set such as the generated mini FreiHAND) and
``training_{K,xyz,verts,mano,scale}.json`` (one entry per sample, shared by all versions);
``evaluation/rgb/`` with ``evaluation_{K,scale}.json`` and, since the evaluation labels were
released, ``evaluation_{xyz,verts}.json``.
"""
import json
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
from mmengine.dataset import BaseDataset

from hybridvit.registry import DATASETS, TRANSFORMS
from hybridvit.utils.errors import UserError

#: Samples per appearance version in the official training set / size of the evaluation set.
FREIHAND_NUM_TRAIN = 32560
FREIHAND_NUM_EVAL = 3960

_SHAPES = dict(K=(3, 3), xyz=(21, 3), verts=(778, 3), mano=(1, 61), scale=())


@DATASETS.register_module()
class FreiHANDDataset(BaseDataset):
    """FreiHAND hand pose and shape data set (mmengine ``BaseDataset``).

    Paper: https://arxiv.org/abs/1909.04349. Each data info holds ``img_path``, ``K`` (3, 3),
    ``joints_3d`` (21, 3) and ``verts_3d`` (778, 3) in metres in the camera frame,
    ``keypoints_2d`` (21, 2) pixels (projection of the joints), ``scale`` (reference bone length,
    metres), ``mano`` (61,) when ``with_mano``, ``sample_idx`` / ``ann_idx`` / ``version``.

    Args:
        data_root (str): folder holding ``training/``, ``evaluation/`` and the JSON files.
        split (str): ``'train'`` (training set minus the last ``num_val`` samples),
            ``'val'`` (the last ``num_val`` training samples), ``'trainval'`` (all training
            samples) or ``'evaluation'``.
        num_samples (int, optional): samples per version in ``training`` (32,560 for FreiHAND,
            the generated count for a mini set). Defaults to the length of ``training_K.json``.
        num_val (int): training samples held out for ``'val'``. Defaults to 0.
        versions (Sequence[int], optional): appearance versions used for ``train`` /
            ``trainval`` / ``val``. Defaults to (0, 1, 2, 3) for training splits and (0,) for val.
        with_verts (bool): load ``*_verts.json`` (large on the real set). Defaults to True.
        with_mano (bool): load ``*_mano.json``. Defaults to False.
        **kwargs: forwarded to :class:`mmengine.dataset.BaseDataset` (``pipeline``,
            ``test_mode``, ``indices``, ``serialize_data``, ``lazy_init``, ...).
    """

    METAINFO = dict(dataset_name='FreiHAND', num_joints=21, num_verts=778,
                    joint_names=('wrist', 'thumb1', 'thumb2', 'thumb3', 'thumb4', 'index1',
                                 'index2', 'index3', 'index4', 'middle1', 'middle2', 'middle3',
                                 'middle4', 'ring1', 'ring2', 'ring3', 'ring4', 'pinky1',
                                 'pinky2', 'pinky3', 'pinky4'))
    SPLITS = ('train', 'val', 'trainval', 'evaluation')

    def __init__(self, data_root: str, split: str = 'train', num_samples: Optional[int] = None,
                 num_val: int = 0, versions: Optional[Sequence[int]] = None,
                 with_verts: bool = True, with_mano: bool = False, **kwargs) -> None:
        if split not in self.SPLITS:
            raise UserError(f'split must be one of {self.SPLITS}, got {split!r}')
        if num_samples is not None and (int(num_samples) != num_samples or num_samples <= 0):
            raise UserError(f'num_samples must be a positive integer, got {num_samples!r}')
        if int(num_val) != num_val or num_val < 0:
            raise UserError(f'num_val must be a non-negative integer, got {num_val!r}')
        if split == 'val' and num_val == 0:
            raise UserError("split='val' needs num_val > 0 (training samples to hold out)")
        if versions is None:
            versions = (0, 1, 2, 3) if split in ('train', 'trainval') else (0,)
        versions = tuple(int(v) for v in versions)
        if split == 'evaluation' and versions != (0,):
            raise UserError(f'the evaluation split has one version, got versions={versions}')
        if not versions or any(v < 0 or v > 3 for v in versions):
            raise UserError(f'versions must be a non-empty subset of 0..3, got {versions}')
        self.split = split
        self.num_samples = num_samples
        self.num_val = int(num_val)
        self.versions = versions
        self.with_verts = with_verts
        self.with_mano = with_mano
        kwargs.setdefault('test_mode', split in ('val', 'evaluation'))
        # Build transform dicts from our registry (it falls back to its mmengine parent), so
        # the pipeline also works outside a runner with default_scope='hybridvit'.
        kwargs['pipeline'] = [TRANSFORMS.build(t) if isinstance(t, dict) else t
                              for t in kwargs.get('pipeline', [])]
        super().__init__(data_root=data_root, **kwargs)

    # ------------------------------------------------------------------ loading
    def _path(self, name: str) -> str:
        path = osp.join(self.data_root, name)
        if not osp.exists(path):
            raise FileNotFoundError(
                f'FreiHAND layout: missing {path!r} (expected training/rgb/%08d.jpg and '
                f'training_{{K,xyz,verts,scale}}.json, evaluation/rgb/ and '
                f'evaluation_{{K,scale}}.json under data_root={self.data_root!r})')
        return path

    def _load_list(self, set_name: str, key: str, length: Optional[int]) -> np.ndarray:
        """Read ``{set_name}_{key}.json`` and return it stacked as (N, *shape) float32."""
        path = self._path(f'{set_name}_{key}.json')
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise UserError(f'{path}: not valid JSON ({e})') from e
        if not isinstance(data, list):
            raise UserError(f'{path}: expected a JSON list with one entry per sample, got '
                            f'{type(data).__name__}')
        if length is not None and len(data) != length:
            raise UserError(f'{path}: has {len(data)} entries, expected {length} (one per '
                            f'sample; num_samples={length})')
        expected = _SHAPES[key]
        out = np.empty((len(data), ) + expected, dtype=np.float32)
        for i, value in enumerate(data):
            try:
                arr = np.asarray(value, dtype=np.float32)
            except (ValueError, TypeError):
                raise UserError(f'{path}: entry {i} is ragged or not numeric, expected shape '
                                f'{expected}') from None
            if arr.shape != expected:
                raise UserError(f'{path}: entry {i} has shape {arr.shape}, expected '
                                f'{expected}')
            out[i] = arr
        return out

    def load_data_list(self) -> List[dict]:
        """One small dict per image; the annotation arrays are kept once in ``self._anns``
        (shared by the 4 versions and by forked dataloader workers) and merged in
        :meth:`get_data_info`."""
        set_name = 'evaluation' if self.split == 'evaluation' else 'training'
        rgb_dir = self._path(osp.join(set_name, 'rgb'))
        length = self.num_samples if set_name == 'training' else None
        anns = dict(K=self._load_list(set_name, 'K', length))
        length = len(anns['K'])
        anns['scale'] = self._load_list(set_name, 'scale', length)
        has_gt = set_name == 'training' or osp.exists(
            osp.join(self.data_root, f'{set_name}_xyz.json'))
        if has_gt:
            anns['joints_3d'] = self._load_list(set_name, 'xyz', length)
            bad = np.nonzero((anns['joints_3d'][..., 2] <= 0).any(axis=1))[0]
            if len(bad):
                raise UserError(f'{set_name}_xyz.json: entry {bad[0]} has joints at or behind '
                                'the camera (z <= 0)')
            if self.with_verts:
                anns['verts_3d'] = self._load_list(set_name, 'verts', length)
        if self.with_mano:
            anns['mano'] = self._load_list(set_name, 'mano', length).reshape(length, 61)
        self._anns = anns

        if self.split in ('train', 'val') and self.num_val >= length:
            raise UserError(f'num_val={self.num_val} must be smaller than the number of '
                            f'training samples ({length})')
        if self.split == 'train':
            indices = range(0, length - self.num_val)
        elif self.split == 'val':
            indices = range(length - self.num_val, length)
        else:
            indices = range(length)
        versions = self.versions if set_name == 'training' else (0, )
        data_list = []
        if set_name == 'training' and length > FREIHAND_NUM_TRAIN:
            raise UserError(f'training_K.json: has {length} entries, more than FreiHAND\'s '
                            f'{FREIHAND_NUM_TRAIN} samples per version (image ids are '
                            f'idx + {FREIHAND_NUM_TRAIN} * version)')
        for version in versions:
            for idx in indices:
                # the official numbering (fh_utils.sample_version.map_id), also for mini sets
                image_id = idx + FREIHAND_NUM_TRAIN * version
                data_list.append(dict(img_path=osp.join(rgb_dir, '%08d.jpg' % image_id),
                                      ann_idx=idx, version=version, image_id=image_id))
        return data_list

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        ann_idx = info['ann_idx']
        for key, values in self._anns.items():
            info[key] = values[ann_idx].copy()
        info['scale'] = float(info['scale'])
        if 'joints_3d' in info:
            uvw = info['joints_3d'] @ info['K'].T  # (21, 3) homogeneous pixels
            info['keypoints_2d'] = (uvw[:, :2] / uvw[:, 2:3]).astype(np.float32)
        return info
