"""Multi-scale variable-batch sampling from MobileViT (arXiv 2110.02178, §3.3; ml-cvnets).

Every batch is drawn at one resolution ``(h, w)`` picked at random from ``scales``; its batch size
is ``round(batch_size * base_h * base_w / (h * w))`` (at least 1), so each batch carries roughly the
same number of pixels as a ``batch_size`` batch at ``base_size``. Validation stays at the base size
(use the normal val dataloader).

Two pieces, both registered in hybridvit's registries:

* :class:`MultiScaleBatchSampler` wraps any index sampler (mmengine's ``DefaultSampler`` /
  ``InfiniteSampler``), so per-rank sharding, padding and per-epoch seeding are exactly the
  distributed sampler's; it yields lists of ``(index, h, w)``.
* :class:`MultiScaleDataset` wraps the task dataset, runs its normal pipeline (which produces
  base-size samples) and resizes the packed sample to the batch's ``(h, w)``: images bilinearly,
  semantic maps with nearest neighbour, boxes and instance masks scaled.

NOTE: cvnets crops directly at the sampled size; resizing the packed base-size crop instead keeps
every task's pipeline unchanged (one extra interpolation).
"""
import math
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dataset import BaseDataset
from torch.utils.data import Sampler

from hybridvit.registry import DATA_SAMPLERS, DATASETS
from hybridvit.utils.errors import UserError

__all__ = ['MultiScaleBatchSampler', 'MultiScaleDataset', 'scaled_batch_size']


def _as_hw(size) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise UserError(f'a scale must be an int or (h, w), got {size!r}')
    return int(size[0]), int(size[1])


def scaled_batch_size(batch_size: int, base_size, size) -> int:
    """``round(batch_size * base_area / area)``, at least 1 (the paper's rule)."""
    base_h, base_w = _as_hw(base_size)
    h, w = _as_hw(size)
    return max(1, int(round(batch_size * base_h * base_w / (h * w))))


@DATA_SAMPLERS.register_module()
class MultiScaleBatchSampler(Sampler):
    """Variable-resolution, variable-size batches (MobileViT's multi-scale sampler).

    Args:
        sampler: index sampler (e.g. mmengine ``DefaultSampler``); it defines which indices this
            rank sees and in which order, and its ``epoch`` / ``seed`` seed the scale choice.
        batch_size: images per batch at ``base_size``.
        scales: candidate ``(h, w)`` resolutions (ints mean square).
        base_size: reference resolution; defaults to the median scale.
        seed: seed of the scale choice when the sampler has none.
    """

    def __init__(self, sampler: Sampler, batch_size: int, scales: Sequence,
                 base_size=None, seed: Optional[int] = None):
        if not scales:
            raise UserError('MultiScaleBatchSampler needs at least one scale in `scales`')
        if batch_size < 1:
            raise UserError(f'batch_size must be >= 1, got {batch_size}')
        self.sampler = sampler
        self.batch_size = batch_size
        self.scales = [_as_hw(s) for s in scales]
        self.base_size = _as_hw(base_size) if base_size is not None else sorted(
            self.scales, key=lambda s: s[0] * s[1])[len(self.scales) // 2]
        self.seed = seed if seed is not None else getattr(sampler, 'seed', 0) or 0

    def batch_size_for(self, size) -> int:
        return scaled_batch_size(self.batch_size, self.base_size, size)

    def __iter__(self) -> Iterator[List[Tuple[int, int, int]]]:
        epoch = getattr(self.sampler, 'epoch', 0)
        rng = np.random.default_rng([self.seed, epoch])
        indices = iter(self.sampler)
        while True:
            h, w = self.scales[rng.integers(len(self.scales))]
            want = self.batch_size_for((h, w))
            batch = []
            for idx in indices:
                batch.append((int(idx), h, w))
                if len(batch) == want:
                    break
            if not batch:
                return
            yield batch
            if len(batch) < want:
                return

    def __len__(self) -> int:
        mean_bs = np.mean([self.batch_size_for(s) for s in self.scales])
        return int(math.ceil(len(self.sampler) / mean_bs))

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)


def _resize_image(img: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    dtype = img.dtype
    # (C, H, W) -> (1, C, H, W) for interpolate, back to (C, h, w)
    out = F.interpolate(img[None].float(), size=size, mode='bilinear', align_corners=False)[0]
    if dtype == torch.uint8:
        out = out.round().clamp_(0, 255)
    return out.to(dtype)


def _resize_sample(sample, old_hw, new_hw):
    """Scale the labels of an mmseg / mmdet data sample from ``old_hw`` to ``new_hw``."""
    sy, sx = new_hw[0] / old_hw[0], new_hw[1] / old_hw[1]
    if 'gt_sem_seg' in sample:
        seg = sample.gt_sem_seg.data  # (1, H, W)
        resized = F.interpolate(seg[None].float(), size=new_hw, mode='nearest')[0].to(seg.dtype)
        # PixelData checks shapes on assignment: replace the field rather than its data
        sample.gt_sem_seg = type(sample.gt_sem_seg)(data=resized,
                                                    metainfo=sample.gt_sem_seg.metainfo)
    if 'gt_instances' in sample:
        inst = sample.gt_instances
        if 'bboxes' in inst:
            inst.bboxes.rescale_([sx, sy]) if hasattr(inst.bboxes, 'rescale_') else \
                inst.bboxes.mul_(inst.bboxes.new_tensor([sx, sy, sx, sy]))
        if 'masks' in inst:
            inst.masks = inst.masks.resize(new_hw)
    meta = dict(img_shape=new_hw, pad_shape=new_hw)
    if 'scale_factor' in sample.metainfo:
        old = sample.metainfo['scale_factor']
        meta['scale_factor'] = (old[0] * sx, old[1] * sy)
    sample.set_metainfo(meta)
    return sample


@DATASETS.register_module()
class MultiScaleDataset:
    """Dataset wrapper for :class:`MultiScaleBatchSampler` (indices are ``(idx, h, w)``).

    Args:
        dataset: the task dataset (config dict or instance); its pipeline must produce packed
            samples (``inputs`` CHW tensor + a data sample), e.g. mmseg ``PackSegInputs`` or mmdet
            ``PackDetInputs``, at the base size.
    """

    def __init__(self, dataset):
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
        self.dataset: BaseDataset = dataset

    @property
    def metainfo(self):
        return self.dataset.metainfo

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, item):
        if isinstance(item, (int, np.integer)):
            return self.dataset[item]
        idx, h, w = item
        packed = self.dataset[idx]
        img = packed['inputs']
        old_hw = tuple(img.shape[-2:])
        if old_hw != (h, w):
            packed['inputs'] = _resize_image(img, (h, w))
            if 'data_samples' in packed and packed['data_samples'] is not None:
                packed['data_samples'] = _resize_sample(packed['data_samples'], old_hw, (h, w))
        return packed
