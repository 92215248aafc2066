"""End to end (slow, ~30 min on 2 CPU cores): train Mask R-CNN + FastViT-T8 on a freshly
generated mini COCO set with tools/train.py, evaluate the last checkpoint with tools/test.py and
require box AP50 >= 0.5 on the mini val split.

The backbone starts from the segmentation quick start (``work_dirs/quickstart/iter_300.pth``,
``*_seg-init.py`` config) when that checkpoint exists, otherwise from scratch.

    bash tools/run_tests.sh --slow -- tests/det/test_det_end_to_end.py -s
"""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from hybridvit.datasets.generators import make_mini_coco

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'configs/det/mask-rcnn_fastvit-t8_fpn_1xb4-8e_mini-coco-320.py'
SEG_INIT = 'work_dirs/quickstart/iter_300.pth'
MIN_BBOX_AP50 = 0.5


def _run(args, timeout):
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, timeout=timeout,
                          env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert proc.returncode == 0, f'{" ".join(args)} exited with {proc.returncode}'


@pytest.mark.slow
def test_mask_rcnn_fastvit_t8_learns_mini_coco(tmp_path):
    data_root = str(tmp_path / 'mini_coco')
    make_mini_coco(data_root, quiet=True)  # defaults: 400 train / 80 val, 320x320, seed 0
    ann = osp.join(data_root, 'annotations', 'instances_val2017.json')
    data = [f'{loader}.dataset.data_root={data_root}/'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    data += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']

    seg_init = osp.isfile(osp.join(ROOT, SEG_INIT))
    config = CONFIG.replace('.py', '_seg-init.py') if seg_init else CONFIG
    print(f'\n[det e2e] training {config} (backbone: '
          f'{"from " + SEG_INIT if seg_init else "from scratch"})', flush=True)

    work_dir = str(tmp_path / 'work')
    _run(['tools/train.py', config, '--work-dir', work_dir, '--cfg-options', *data,
          'train_cfg.val_interval=100'], timeout=90 * 60)  # validate only through tools/test.py
    ckpt = osp.join(work_dir, 'epoch_8.pth')
    assert osp.isfile(ckpt), f'no final checkpoint in {work_dir}: {os.listdir(work_dir)}'

    _run(['tools/test.py', config, ckpt, '--work-dir', str(tmp_path / 'test'), '--cfg-options',
          *data], timeout=15 * 60)
    with open(tmp_path / 'test' / 'test_metrics.json') as f:
        metrics = json.load(f)['metrics']
    print(f'[det e2e] {json.dumps(metrics)}', flush=True)
    assert metrics['coco/bbox_mAP_50'] >= MIN_BBOX_AP50, metrics
    assert metrics['coco/segm_mAP_50'] > 0.0, metrics
