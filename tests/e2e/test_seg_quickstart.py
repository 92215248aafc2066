"""Slow end-to-end: the quick-start Semantic FPN learns the mini ADE set (mIoU >= 60 %)."""
import os.path as osp

import pytest

from e2e_utils import read_metrics, run_tool

CONFIG = 'configs/seg/fpn_fastvit-t8_1xb4-300it_mini-ade-256x256.py'


@pytest.mark.slow
def test_fpn_fastvit_t8_reaches_60_miou_and_fused_model_matches(tmp_path):
    data = tmp_path / 'data'
    run_tool('tools/dataset_converters/make_mini_datasets.py', 'ade', '--out', str(data))
    work = str(tmp_path / 'work')
    opts = ['--cfg-options', f'train_dataloader.dataset.data_root={data}/mini_ade',
            f'val_dataloader.dataset.data_root={data}/mini_ade',
            f'test_dataloader.dataset.data_root={data}/mini_ade']
    run_tool('tools/train.py', CONFIG, '--work-dir', work, *opts)
    ckpt = osp.join(work, 'iter_300.pth')
    run_tool('tools/test.py', CONFIG, ckpt, '--work-dir', work + '/test', *opts)
    miou = read_metrics(work + '/test')['mIoU']
    assert miou >= 60.0, f'mIoU {miou:.2f} < 60'

    fused = osp.join(work, 'fused.pth')
    run_tool('tools/deploy/reparameterize.py', CONFIG, ckpt, fused)
    run_tool('tools/test.py', CONFIG.replace('.py', '_deploy.py'), fused, '--work-dir',
             work + '/test_fused', *opts)
    assert abs(read_metrics(work + '/test_fused')['mIoU'] - miou) < 0.05
