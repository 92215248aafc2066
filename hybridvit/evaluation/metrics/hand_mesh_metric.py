"""mmengine metric for 3D hand mesh regression on FreiHAND (Zimmermann et al., ICCV 2019).

Paper: https://arxiv.org/abs/1909.04349; official evaluation code:
https://github.com/lmb-freiburg/freihand (``eval.py``). The numbers come from
:mod:`hybridvit.evaluation.functional.hand_mesh`; the metric also writes the submission file
``pred.json`` (camera-frame coordinates, the format ``pred.py`` dumps) and, when labels exist,
the server's ``scores.txt``.
"""
import json
import logging
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from hybridvit.registry import METRICS
from hybridvit.utils.atomic import atomic_open
from hybridvit.utils.errors import UserError
from ..functional.hand_mesh import (F_THRESHOLDS, UNALIGNED_KEYS, per_sample_errors,
                                    server_scores, summarize_errors)


def _as_numpy(value, key: str) -> np.ndarray:
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    if value is None:
        raise UserError(f'HandMeshMetric: data sample has no {key!r}')
    return np.asarray(value, dtype=np.float64)


def dump_freihand_predictions(path: str, joints: Sequence[np.ndarray],
                              verts: Sequence[np.ndarray]) -> None:
    """Atomically write ``[xyz_list, verts_list]`` (the official ``pred.json`` format).

    Args:
        path (str): output file.
        joints: per-sample (21, 3) joints in metres.
        verts: per-sample (778, 3) vertices in metres.
    """
    if len(joints) != len(verts):
        raise ValueError(f'{len(joints)} joint predictions but {len(verts)} vertex predictions')
    payload = [[np.asarray(j, dtype=np.float64).tolist() for j in joints],
               [np.asarray(v, dtype=np.float64).tolist() for v in verts]]
    with atomic_open(path, 'w') as f:
        json.dump(payload, f)


#: predicted 2D keypoints (pixels) -> the name of their mean error against ``gt_keypoints_2d``
_KEYPOINTS_2D = dict(pred_keypoints_2d='kp2d_err', pred_keypoints_uv='heatmap2d_err')


@METRICS.register_module()
class HandMeshMetric(BaseMetric):
    """The FreiHAND server's metrics, plus root-relative MPJPE, and the submission file.

    Consumes data samples with ``pred_joints`` (21, 3) / ``pred_verts`` (V, 3) root-relative
    predictions in metres and, for a submission, their camera-frame versions
    ``pred_joints_cam`` / ``pred_verts_cam`` (:meth:`HandMeshHead.predict` adds them from its
    weak-perspective camera, ``K`` and the reference bone length: no ground truth is used).
    With labels (``gt_joints`` / ``gt_verts`` root-relative, ``gt_root``) it computes, as
    ``eval.py`` does, every number unaligned (camera frame) and after a similarity alignment:
    ``mpjpe`` / ``pa_mpjpe``, ``mpvpe`` / ``pa_mpvpe`` (mm), ``auc_j`` / ``pa_auc_j``,
    ``auc_v`` / ``pa_auc_v`` (PCK 0-50 mm), ``f_5mm`` / ``pa_f_5mm``, ``f_15mm`` /
    ``pa_f_15mm``, and ``rr_mpjpe`` (root joint subtracted from both). Without camera-frame
    predictions the unaligned numbers are left out. Samples that also carry
    ``pred_keypoints_2d`` / ``gt_keypoints_2d`` add ``kp2d_err``: the mean 2D keypoint error in
    pixels of the network input (does the projected skeleton sit on the hand?); those with
    ``pred_keypoints_uv`` (a ``keypoint_branch`` head's 2D keypoints, read from its heatmaps) add
    ``heatmap2d_err``, the same error for those.

    Args:
        out_dir (str, optional): folder (created) that receives ``pred.json``, the official
            submission format ``[xyz_list, verts_list]`` in metres (camera frame when the
            samples have it, else root-relative with a warning: the server would score that
            as ~0.7 m off), and, with labels, ``scores.txt`` as the server writes it (cm).
        root_index (int): joint subtracted for ``rr_mpjpe``. Defaults to 0 (wrist).
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): metric name prefix. Defaults to ``'freihand'``.
    """

    default_prefix: Optional[str] = 'freihand'

    def __init__(self, out_dir: Optional[str] = None, root_index: int = 0,
                 collect_device: str = 'cpu', prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.out_dir = out_dir
        self.root_index = root_index

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            for key in ('pred_joints', 'pred_verts'):
                if key not in sample:
                    raise UserError(f'HandMeshMetric needs {key!r} in each data sample; got keys '
                                    f'{sorted(sample.keys())}')
            pred_joints = _as_numpy(sample['pred_joints'], 'pred_joints')
            pred_verts = _as_numpy(sample['pred_verts'], 'pred_verts')
            camera = 'pred_joints_cam' in sample and 'pred_verts_cam' in sample
            if camera:
                cam_joints = _as_numpy(sample['pred_joints_cam'], 'pred_joints_cam')
                cam_verts = _as_numpy(sample['pred_verts_cam'], 'pred_verts_cam')
            result = dict(sample_idx=sample.get('sample_idx', len(self.results)),
                          camera=camera)
            if 'gt_joints' in sample and 'gt_verts' in sample:
                gt_joints = _as_numpy(sample['gt_joints'], 'gt_joints')
                gt_verts = _as_numpy(sample['gt_verts'], 'gt_verts')
                if camera and 'gt_root' in sample:
                    root = _as_numpy(sample['gt_root'], 'gt_root').reshape(1, 3)
                    pj, pv, gj, gv = cam_joints, cam_verts, gt_joints + root, gt_verts + root
                else:
                    result['camera'] = camera = False
                    pj, pv, gj, gv = pred_joints, pred_verts, gt_joints, gt_verts
                errs = per_sample_errors(pj[None], gj[None], pv[None], gv[None],
                                         root_index=self.root_index)
                result['errors'] = {k: v[0].astype(np.float32) for k, v in errs.items()}
            for key, name in _KEYPOINTS_2D.items():
                if key in sample and 'gt_keypoints_2d' in sample:
                    kp_err = (_as_numpy(sample[key], key)
                              - _as_numpy(sample['gt_keypoints_2d'], 'gt_keypoints_2d'))
                    result[name] = float(np.linalg.norm(kp_err, axis=-1).mean())  # pixels
            if self.out_dir is not None:
                result['pred_joints'] = (cam_joints if camera else pred_joints).astype(np.float32)
                result['pred_verts'] = (cam_verts if camera else pred_verts).astype(np.float32)
            self.results.append(result)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        results = sorted(results, key=lambda r: r['sample_idx'])
        camera = all(r['camera'] for r in results)
        if self.out_dir is not None:
            path = osp.join(self.out_dir, 'pred.json')
            dump_freihand_predictions(path, [r['pred_joints'] for r in results],
                                      [r['pred_verts'] for r in results])
            frame = 'camera frame' if camera else (
                'ROOT-RELATIVE: the samples had no pred_joints_cam (K, img_shape), the server '
                'scores camera-frame coordinates')
            print_log(f'FreiHAND predictions ({len(results)} samples, {frame}) written to '
                      f'{path}', logger='current', level=logging.INFO if camera else
                      logging.WARNING)
        with_gt = [r for r in results if 'errors' in r]
        if not with_gt:
            if self.out_dir is None:
                raise UserError('HandMeshMetric got no ground truth (gt_joints / gt_verts) and '
                                'no out_dir: nothing to compute')
            return {}
        if len(with_gt) != len(results):
            raise UserError(f'{len(results) - len(with_gt)} of {len(results)} samples lack '
                            'gt_joints / gt_verts')
        errors = {k: np.stack([r['errors'][k] for r in with_gt]).astype(np.float64)
                  for k in with_gt[0]['errors']}
        metrics = summarize_errors(errors, F_THRESHOLDS)
        if not camera:
            metrics = {k: v for k, v in metrics.items() if k not in UNALIGNED_KEYS}
        elif self.out_dir is not None:
            path = osp.join(self.out_dir, 'scores.txt')
            with atomic_open(path, 'w') as f:
                f.write(server_scores(metrics))
            print_log(f'FreiHAND scores (server format, cm) written to {path}',
                      logger='current')
        for name in _KEYPOINTS_2D.values():
            if all(name in r for r in with_gt):
                metrics[name] = float(np.mean([r[name] for r in with_gt]))
        print_log('FreiHAND (mm): ' + ', '.join(
            f'{k} {v:.2f}' for k, v in metrics.items() if k.endswith(('mpjpe', 'mpvpe')))
            + (f', projected skeleton {metrics["kp2d_err"]:.2f} px' if 'kp2d_err' in metrics
               else '')
            + (f', heatmap keypoints {metrics["heatmap2d_err"]:.2f} px'
               if 'heatmap2d_err' in metrics else ''), logger='current')
        return metrics
