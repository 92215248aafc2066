"""``tools/test.py --show-dir``: draw every test prediction with the task adapter's renderer.

The demo and the test tool draw with the same code (:meth:`hybridvit.apis.Task.draw`, built on
:mod:`hybridvit.visualization.draw`), for every task, instead of mmdet's / mmseg's visualizers.
"""
import os.path as osp
from typing import Optional, Sequence

import cv2
from mmengine.hooks import Hook

from hybridvit.registry import HOOKS
from hybridvit.utils.atomic import atomic_write

__all__ = ['DrawResultsHook']


@HOOKS.register_module()
class DrawResultsHook(Hook):
    """Write one picture per test sample to ``out_dir`` (``<image name>.png``).

    Args:
        out_dir: output folder.
        task: the task adapter or its name (default: from the runner's config).
        score_thr: detection score threshold.
        opacity: segmentation overlay opacity.
    """

    priority = 'LOW'

    def __init__(self, out_dir: str, task=None, score_thr: float = 0.3, opacity: float = 0.5):
        self.out_dir = out_dir
        self.task = task
        self.score_thr = score_thr
        self.opacity = opacity
        self.written = 0

    def before_test(self, runner) -> None:
        from hybridvit.apis.tasks import get_task
        self.task = get_task(self.task if self.task is not None else runner.cfg)
        self.meta = dict(getattr(runner.test_loop.dataloader.dataset, 'metainfo', {}) or {})

    def after_test_iter(self, runner, batch_idx: int, data_batch: Optional[dict] = None,
                        outputs: Optional[Sequence] = None) -> None:
        inputs = (data_batch or {}).get('inputs') or [None] * len(outputs or ())
        if inputs and isinstance(inputs[0], (list, tuple)):  # --tta: [view][sample]
            inputs = inputs[0]  # the first view, the unaugmented one in our tta_pipelines
        for i, (img_input, sample) in enumerate(zip(inputs, outputs or ())):
            img = self.task.test_image(img_input, sample)
            vis, _ = self.task.draw(img, sample, self.meta, score_thr=self.score_thr,
                                    opacity=self.opacity)
            path = sample.get('img_path')
            stem = (osp.splitext(osp.basename(path))[0] if path
                    else f'{batch_idx:05d}_{i:02d}')
            with atomic_write(osp.join(self.out_dir, f'{stem}.png')) as tmp:
                if not cv2.imwrite(tmp, vis):
                    raise OSError(f'cannot write {osp.join(self.out_dir, stem)}.png')
            self.written += 1
