"""Shared helpers of the robustness tests: tiny configs on generated data, tool subprocesses."""
import os
import os.path as osp
import subprocess
import sys
from typing import List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HERE = osp.dirname(osp.abspath(__file__))
SEG_CONFIG = osp.join(REPO, 'configs', 'seg', 'fpn_fastvit-t8_1xb4-300it_mini-ade-256x256.py')
DET_CONFIG = osp.join(REPO, 'configs', 'det', 'mask-rcnn_fastvit-t8_fpn_1x_coco.py')


def tool_env(threads: int = 1) -> dict:
    """Environment for tool subprocesses: one thread, tests/robustness importable (test hooks)."""
    env = dict(os.environ)
    env['OMP_NUM_THREADS'] = str(threads)
    env['PYTHONPATH'] = os.pathsep.join([HERE, REPO] + [p for p in [env.get('PYTHONPATH')] if p])
    env.pop('HYBRIDVIT_DEBUG', None)
    return env


def run_tool(args: List[str], timeout: float = 300, cwd: Optional[str] = None,
             env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Run ``python <args>`` (paths relative to the repo) and capture its output."""
    script = args[0] if osp.isabs(args[0]) else osp.join(REPO, args[0])
    return subprocess.run([sys.executable, script] + list(args[1:]), cwd=cwd or REPO,
                          env=env or tool_env(), capture_output=True, text=True, timeout=timeout)


def run_script(args: List[str], timeout: float = 300, env: Optional[dict] = None):
    """Run a shell script of the repo (e.g. ``tools/dist_train.sh``)."""
    return subprocess.run(['bash', osp.join(REPO, args[0])] + list(args[1:]), cwd=REPO,
                          env=env or tool_env(), capture_output=True, text=True, timeout=timeout)


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 2, no traceback, stderr is ONE line (the error) naming all ``needles``."""
    err_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:], proc.stdout[-2000:])
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert len(err_lines) == 1, proc.stderr[-3000:]
    line = err_lines[0]
    assert ': error: ' in line, line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def write_seg_config(tmp_path, data_root: str, name: str = 'tiny_seg.py', max_iters: int = 12,
                     interval: int = 4, by_epoch: bool = False, max_epochs: int = 3,
                     extra: str = '') -> str:
    """Semantic FPN + FastViT-T8 at 64x64, batch 2, dropout and drop path ON, no validation."""
    if by_epoch:
        loop = (f"train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', "
                f"max_epochs={max_epochs}, val_interval=1000)\n"
                "train_dataloader.update(sampler=dict(type='DefaultSampler', shuffle=True))\n"
                f"param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=1e-5, "
                f"by_epoch=True, begin=0, end={max_epochs})]\n"
                "default_hooks = dict(logger=dict(interval=1, log_metric_by_epoch=True), "
                f"checkpoint=dict(by_epoch=True, interval={interval}, max_keep_ckpts=-1))\n"
                "log_processor = dict(by_epoch=True)\n")
    else:
        loop = (f"train_cfg = dict(type='IterBasedTrainLoop', max_iters={max_iters}, "
                "val_interval=100000)\n"
                f"param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=1e-5, "
                f"by_epoch=False, begin=0, end={max_iters})]\n"
                "default_hooks = dict(logger=dict(interval=1), "
                f"checkpoint=dict(interval={interval}, max_keep_ckpts=-1))\n")
    text = f"""_base_ = {SEG_CONFIG!r}
crop_size = (64, 64)
data_root = {data_root!r}
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(drop_path_rate=0.2),
    neck=dict(out_channels=32),
    decode_head=dict(in_channels=[32, 32, 32, 32], channels=32, dropout_ratio=0.5))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.9),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(vis_backends=vis_backends)
{loop}{extra}"""
    path = osp.join(str(tmp_path), name)
    with open(path, 'w') as f:
        f.write(text)
    return path


def write_det_config(tmp_path, data_root: str, name: str = 'tiny_det.py') -> str:
    """Mask R-CNN + FastViT-T8 on a generated mini COCO set, 96x96, batch 1, 2 iterations."""
    text = f"""_base_ = {DET_CONFIG!r}
data_root = {data_root!r}
metainfo = dict(classes=('striped_ellipse', 'checkered_box', 'dotted_triangle', 'ringed_star',
                         'speckled_cross'))
model = dict(backbone=dict(init_cfg=None), roi_head=dict(bbox_head=dict(num_classes=5),
                                                         mask_head=dict(num_classes=5)))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, metainfo=metainfo,
                                     pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2, val_interval=1000)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(by_epoch=False, interval=1000))
"""
    path = osp.join(str(tmp_path), name)
    with open(path, 'w') as f:
        f.write(text)
    return path
