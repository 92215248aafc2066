"""mmengine metric for 3D hand mesh regression on FreiHAND (Zimmermann et al., ICCV 2019).

Paper: https://arxiv.org/abs/1909.04349; official evaluation code:
https://github.com/lmb-freiburg/freihand (``eval.py``). The numbers come from
:mod:`hybridvit.evaluation.functional.hand_mesh`.
"""
import json
import os
import os.path as osp
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from hybridvit.registry import METRICS
from ..functional.hand_mesh import F_THRESHOLDS, per_sample_errors, summarize_errors


def _as_numpy(value, key: str) -> np.ndarray:
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    if value is None:
        raise KeyError(f'data sample has no {key!r}')
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
    out_dir = osp.dirname(osp.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.pred-', suffix='.json.tmp', dir=out_dir)
    try:
        with os.fdopen(fd, 'w') as f:
            json.dump(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


@METRICS.register_module()
class HandMeshMetric(BaseMetric):
    """FreiHAND metrics: PA-MPJPE, PA-MPVPE, F@5mm, F@15mm, root-aligned MPJPE and AUC.

    Consumes data samples with ``pred_joints`` (21, 3) and ``pred_verts`` (V, 3) root-relative
    predictions in metres and, when available, ``gt_joints`` / ``gt_verts`` (same convention).
    The similarity alignment makes the aligned metrics independent of the root translation.

    Args:
        outfile_prefix (str, optional): if set, also write the predictions in the official
            FreiHAND submission format to ``{outfile_prefix}pred.json`` (or
            ``{outfile_prefix}/pred.json`` when the prefix is a directory, i.e. ends with a path
            separator). Predictions are written root-relative plus ``gt_root`` when the data sample
            carries it and ``add_root`` is True (translation only affects the unaligned numbers).
        add_root (bool): add the sample's root joint position to the written predictions.
            Defaults to False.
        root_index (int): joint subtracted for ``mpjpe``. Defaults to 0 (wrist).
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): metric name prefix. Defaults to ``'freihand'``.
    """

    default_prefix: Optional[str] = 'freihand'

    def __init__(self, outfile_prefix: Optional[str] = None, add_root: bool = False,
                 root_index: int = 0, collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.outfile_prefix = outfile_prefix
        self.add_root = add_root
        self.root_index = root_index

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            for key in ('pred_joints', 'pred_verts'):
                if key not in sample:
                    raise KeyError(f'HandMeshMetric needs {key!r} in each data sample; got keys '
                                   f'{sorted(sample.keys())}')
            pred_joints = _as_numpy(sample['pred_joints'], 'pred_joints')
            pred_verts = _as_numpy(sample['pred_verts'], 'pred_verts')
            result = dict(sample_idx=sample.get('sample_idx', len(self.results)))
            if 'gt_joints' in sample and 'gt_verts' in sample:
                errs = per_sample_errors(pred_joints[None], _as_numpy(sample['gt_joints'],
                                                                      'gt_joints')[None],
                                         pred_verts[None], _as_numpy(sample['gt_verts'],
                                                                     'gt_verts')[None],
                                         root_index=self.root_index)
                result['errors'] = {k: v[0] for k, v in errs.items()}
            if self.outfile_prefix is not None:
                if self.add_root and 'gt_root' in sample:
                    root = _as_numpy(sample['gt_root'], 'gt_root').reshape(1, 3)
                    pred_joints = pred_joints + root
                    pred_verts = pred_verts + root
                result['pred_joints'] = pred_joints.astype(np.float32)
                result['pred_verts'] = pred_verts.astype(np.float32)
            self.results.append(result)

    def _outfile(self) -> str:
        prefix = self.outfile_prefix
        if prefix.endswith(('/', os.sep)) or osp.isdir(prefix):
            return osp.join(prefix, 'pred.json')
        return prefix + 'pred.json'

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        results = sorted(results, key=lambda r: r['sample_idx'])
        if self.outfile_prefix is not None:
            path = self._outfile()
            dump_freihand_predictions(path, [r['pred_joints'] for r in results],
                                      [r['pred_verts'] for r in results])
            print_log(f'FreiHAND predictions ({len(results)} samples) written to {path}',
                      logger='current')
        with_gt = [r for r in results if 'errors' in r]
        if not with_gt:
            if self.outfile_prefix is None:
                raise ValueError('HandMeshMetric got no ground truth (gt_joints / gt_verts) and '
                                 'no outfile_prefix: nothing to compute')
            return {}
        if len(with_gt) != len(results):
            raise ValueError(f'{len(results) - len(with_gt)} of {len(results)} samples lack '
                             'gt_joints / gt_verts')
        errors = {k: np.stack([r['errors'][k] for r in with_gt]) for k in with_gt[0]['errors']}
        return summarize_errors(errors, F_THRESHOLDS)
