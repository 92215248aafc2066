"""MobileViT's multi-scale variable-batch sampler."""
import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler

from hybridvit.datasets.samplers import (MultiScaleBatchSampler, MultiScaleDataset,
                                         scaled_batch_size)

SCALES = [(160, 160), (192, 192), (256, 256), (288, 288), (320, 320)]


class Sized(torch.utils.data.Dataset):

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, idx):
        return idx


def test_batch_size_formula():
    assert scaled_batch_size(32, 256, 256) == 32
    assert scaled_batch_size(32, 256, 160) == round(32 * 256 * 256 / (160 * 160))  # 82
    assert scaled_batch_size(32, 256, 320) == round(32 * 256 * 256 / (320 * 320))  # 20
    assert scaled_batch_size(1, 256, 1024) == 1  # never 0


def test_one_resolution_per_batch_and_formula_and_no_drop_or_repeat():
    sampler = DefaultSampler(Sized(1000), shuffle=True, seed=3)
    batches = list(MultiScaleBatchSampler(sampler, batch_size=8, scales=SCALES,
                                          base_size=(256, 256)))
    seen = []
    for i, batch in enumerate(batches):
        sizes = {(h, w) for _, h, w in batch}
        assert len(sizes) == 1, 'a batch mixes resolutions'
        (h, w), = sizes
        assert (h, w) in SCALES
        if i < len(batches) - 1:  # the last batch holds what is left
            assert len(batch) == scaled_batch_size(8, (256, 256), (h, w))
        seen += [idx for idx, _, _ in batch]
    assert sorted(seen) == list(range(1000))
    assert len({(b[0][1], b[0][2]) for b in batches}) > 1  # several resolutions are used


def test_epoch_seeding_changes_scales_and_is_reproducible():
    sampler = DefaultSampler(Sized(200), shuffle=True, seed=0)
    bs = MultiScaleBatchSampler(sampler, batch_size=4, scales=SCALES, base_size=256)
    first = list(bs)
    assert list(bs) == first  # same epoch -> same batches
    bs.set_epoch(1)
    assert list(bs) != first


@pytest.mark.parametrize('world_size', [2, 3])
def test_distributed_shards_like_the_distributed_sampler(world_size, monkeypatch):
    import mmengine.dataset.sampler as mm_sampler
    n = 101
    shards = []
    for rank in range(world_size):
        monkeypatch.setattr(mm_sampler, 'get_dist_info', lambda r=rank: (r, world_size))
        sampler = DefaultSampler(Sized(n), shuffle=True, seed=5)
        sampler.set_epoch(2)
        reference = list(sampler)  # what the plain distributed sampler gives this rank
        bs = MultiScaleBatchSampler(sampler, batch_size=4, scales=SCALES, base_size=256)
        got = [idx for batch in bs for idx, _, _ in batch]
        assert got == reference
        shards.append(got)
    # padded to equal length, together covering every sample
    assert len({len(s) for s in shards}) == 1
    assert set().union(*map(set, shards)) == set(range(n))


def test_invalid_arguments():
    sampler = DefaultSampler(Sized(10), shuffle=False)
    with pytest.raises(ValueError, match='at least one scale'):
        MultiScaleBatchSampler(sampler, batch_size=2, scales=[])
    with pytest.raises(ValueError, match=r'\(h, w\)'):
        MultiScaleBatchSampler(sampler, batch_size=2, scales=[(1, 2, 3)])


def test_dataset_wrapper_resizes_image_and_segmentation():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    class Packed(Sized):

        def __getitem__(self, idx):
            sample = SegDataSample()
            seg = torch.zeros(1, 64, 64, dtype=torch.int64)
            seg[:, :32] = 3
            sample.gt_sem_seg = PixelData(data=seg)
            sample.set_metainfo(dict(img_shape=(64, 64)))
            return dict(inputs=torch.full((3, 64, 64), 100, dtype=torch.uint8),
                        data_samples=sample)

    ds = MultiScaleDataset(Packed(4))
    out = ds[(1, 32, 48)]
    assert out['inputs'].shape == (3, 32, 48) and out['inputs'].dtype == torch.uint8
    assert int(out['inputs'].float().mean()) == 100
    seg = out['data_samples'].gt_sem_seg.data
    assert seg.shape == (1, 32, 48)
    assert set(np.unique(seg.numpy())) == {0, 3}  # nearest: no invented labels
    assert out['data_samples'].metainfo['img_shape'] == (32, 48)
    assert ds[2]['inputs'].shape == (3, 64, 64)  # plain indices pass through
