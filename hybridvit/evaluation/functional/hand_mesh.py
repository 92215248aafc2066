"""FreiHAND hand-mesh metrics, as the evaluation server reports them, plus root-aligned MPJPE.

The definitions follow the official FreiHAND evaluation script (Zimmermann et al., "FreiHAND: A
Dataset for Markerless Capture of Hand Pose and Shape from Single RGB Images", ICCV 2019,
https://arxiv.org/abs/1909.04349; code: https://github.com/lmb-freiburg/freihand, ``eval.py`` and
its ``EvalUtil``). This is our own implementation of those semantics:

* similarity Procrustes alignment per sample: centre both point sets, divide each by its Frobenius
  norm plus 1e-8, solve the orthogonal Procrustes problem (``scipy.linalg.orthogonal_procrustes``,
  which also returns the optimal scale = sum of singular values), map the prediction back into the
  ground-truth frame;
* vertices are aligned on their own when prediction and ground truth share the topology, else with
  the transformation estimated from the keypoints (as the official script does);
* F-score at threshold t: ``precision`` = fraction of gt points whose nearest predicted point is
  closer than t, ``recall`` = fraction of predicted points whose nearest gt point is closer than t
  (strict ``<``; the official script names them this way round), F = harmonic mean, 0 when both
  are 0; computed on the vertices as predicted and on the aligned vertices;
* PCK uses ``<=``; the AUC is the trapezoid area under the per-keypoint (per-vertex) PCK curve
  over ``linspace(0, 0.05, 100)`` metres divided by the interval length, averaged over keypoints
  (vertices).

The server computes every number twice, on the coordinates as submitted (camera frame, no
alignment) and after the alignment; :data:`SERVER_KEYS` maps our names to its ``scores.txt``
names. ``rr_mpjpe`` (root-relative: the root joint subtracted from both) is ours, not the server's.
"""
from typing import Dict, Sequence, Tuple, Union

import numpy as np
from scipy.linalg import orthogonal_procrustes
from scipy.spatial import cKDTree

from hybridvit.utils.errors import UserError

try:  # torch is optional for the functional API
    import torch
except ImportError:  # pragma: no cover
    torch = None

ArrayLike = Union[np.ndarray, 'torch.Tensor', Sequence]

#: Epsilon the official script adds to the Frobenius norms before dividing.
NORM_EPS = 1e-8
#: F-score thresholds (metres) reported on FreiHAND.
F_THRESHOLDS = (0.005, 0.015)
#: PCK curve range (metres) and number of thresholds used for the AUC.
AUC_RANGE = (0.0, 0.05)
AUC_STEPS = 100

_trapezoid = getattr(np, 'trapezoid', None) or np.trapz  # numpy >= 2 renamed trapz

#: Our metric names -> the names in the server's ``scores.txt`` (``eval.py``), in its order;
#: the server writes the mean errors in cm.
SERVER_KEYS = (('mpjpe', 'xyz_mean3d'), ('auc_j', 'xyz_auc3d'),
               ('pa_mpjpe', 'xyz_al_mean3d'), ('pa_auc_j', 'xyz_al_auc3d'),
               ('mpvpe', 'mesh_mean3d'), ('auc_v', 'mesh_auc3d'),
               ('pa_mpvpe', 'mesh_al_mean3d'), ('pa_auc_v', 'mesh_al_auc3d'),
               ('f_5mm', 'f_score_5'), ('pa_f_5mm', 'f_al_score_5'),
               ('f_15mm', 'f_score_15'), ('pa_f_15mm', 'f_al_score_15'))
#: Metrics that are computed without alignment (meaningful for camera-frame predictions only).
UNALIGNED_KEYS = ('mpjpe', 'mpvpe', 'auc_j', 'auc_v', 'f_5mm', 'f_15mm')


def _to_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """Convert a numpy array, torch tensor or nested list to a float64 numpy array."""
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:  # ragged nested lists, non-numbers
        raise UserError(f'{name} is not a numeric array of shape (N, P, 3): {err}') from None
    if not np.all(np.isfinite(arr)):
        raise UserError(f'{name} contains NaN or Inf values')
    return arr


def _check_points(arr: np.ndarray, name: str, num_points: int = None) -> None:
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise UserError(f'{name} must have shape (N, P, 3), got {tuple(arr.shape)}')
    if num_points is not None and arr.shape[1] != num_points:
        raise UserError(f'{name} must have {num_points} points per sample, got shape '
                        f'{tuple(arr.shape)}')


def align_w_scale(gt: np.ndarray, pred: np.ndarray, return_trafo: bool = False):
    """Similarity-Procrustes-align ``pred`` (P, 3) onto ``gt`` (P, 3), official semantics.

    Returns the aligned prediction (P, 3), or with ``return_trafo`` the tuple
    ``(R, s, s_gt, t_gt)`` that :func:`align_by_trafo` applies to another point set.
    """
    gt = np.asarray(gt, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    t_gt = gt.mean(0)
    t_pred = pred.mean(0)
    s_gt = np.linalg.norm(gt - t_gt) + NORM_EPS
    s_pred = np.linalg.norm(pred - t_pred) + NORM_EPS
    gt_n = (gt - t_gt) / s_gt
    pred_n = (pred - t_pred) / s_pred
    # R minimises ||gt_n @ R - pred_n||_F; scale = sum of singular values of gt_n^T pred_n.
    rot, scale = orthogonal_procrustes(gt_n, pred_n)
    if return_trafo:
        return rot, scale, s_gt, s_pred, t_gt, t_pred
    return (pred_n @ rot.T) * scale * s_gt + t_gt


def align_by_trafo(points: np.ndarray, trafo: Tuple) -> np.ndarray:
    """Apply the similarity transform from ``align_w_scale(..., return_trafo=True)`` to ``points``.

    NOTE: the official ``align_by_trafo`` re-centres the points on their own mean and omits the
    division by the prediction's norm, so it does not apply the transform it estimated; we apply
    exactly the keypoint similarity transform. Only used when the predicted mesh topology differs
    from the ground truth's (never for 778-vertex predictions).
    """
    rot, scale, s_gt, s_pred, t_gt, t_pred = trafo
    points = np.asarray(points, dtype=np.float64)
    return (((points - t_pred) / s_pred) @ rot.T) * scale * s_gt + t_gt


def fscore(gt: np.ndarray, pred: np.ndarray, threshold: float) -> Tuple[float, float, float]:
    """F-score between two point clouds (official FreiHAND semantics).

    Args:
        gt (np.ndarray): (P, 3) ground-truth points.
        pred (np.ndarray): (Q, 3) predicted points.
        threshold (float): distance threshold in the unit of the points.

    Returns:
        tuple: ``(f, precision, recall)``, precision = fraction of gt points with a predicted
        point closer than ``threshold``, recall = fraction of predicted points with a gt point
        closer than ``threshold``.
    """
    if len(gt) == 0 or len(pred) == 0:
        return 0.0, 0.0, 0.0
    d_gt_to_pred, _ = cKDTree(pred).query(gt, k=1)  # closest predicted point for each gt point
    d_pred_to_gt, _ = cKDTree(gt).query(pred, k=1)  # closest gt point for each predicted point
    precision = float(np.mean(d_gt_to_pred < threshold))
    recall = float(np.mean(d_pred_to_gt < threshold))
    if precision + recall > 0:
        f = 2.0 * precision * recall / (precision + recall)
    else:
        f = 0.0
    return f, precision, recall


def pck_auc(errors: np.ndarray, val_min: float = AUC_RANGE[0], val_max: float = AUC_RANGE[1],
            steps: int = AUC_STEPS) -> float:
    """Area under the PCK curve, normalised to [0, 1], averaged over keypoints.

    Args:
        errors (np.ndarray): (N, K) per-sample, per-keypoint Euclidean errors (metres).
    """
    errors = np.asarray(errors, dtype=np.float64)
    if errors.ndim != 2:
        raise UserError(f'errors must have shape (N, K), got {errors.shape}')
    thresholds = np.linspace(val_min, val_max, steps)
    norm = _trapezoid(np.ones_like(thresholds), thresholds)
    # pck: (T, K) fraction of samples with error <= threshold, per keypoint
    pck = (errors[None, :, :] <= thresholds[:, None, None]).mean(axis=1)
    auc_per_kp = _trapezoid(pck, thresholds, axis=0) / norm  # (K,)
    return float(auc_per_kp.mean())


def per_sample_errors(pred_joints: ArrayLike, gt_joints: ArrayLike, pred_verts: ArrayLike,
                      gt_verts: ArrayLike, root_index: int = 0,
                      f_thresholds: Sequence[float] = F_THRESHOLDS) -> Dict[str, np.ndarray]:
    """Per-sample errors (metres) that :func:`summarize_errors` reduces to the FreiHAND metrics.

    Returns:
        dict: ``joint_err`` / ``pa_joint_err`` / ``root_joint_err`` (N, J) unaligned, aligned
        and root-relative joint errors; ``vert_err`` / ``pa_vert_err`` (N, V) unaligned and
        aligned vertex errors (NaN when the vertex counts differ); ``fscores`` /
        ``pa_fscores`` (N, len(thresholds)) on the vertices as predicted and aligned.
    """
    pj = _to_numpy(pred_joints, 'pred_joints')
    gj = _to_numpy(gt_joints, 'gt_joints')
    pv = _to_numpy(pred_verts, 'pred_verts')
    gv = _to_numpy(gt_verts, 'gt_verts')
    _check_points(gj, 'gt_joints')
    _check_points(pj, 'pred_joints', gj.shape[1])
    _check_points(gv, 'gt_verts')
    _check_points(pv, 'pred_verts')
    n = gj.shape[0]
    for name, arr in (('pred_joints', pj), ('pred_verts', pv), ('gt_verts', gv)):
        if arr.shape[0] != n:
            raise UserError(f'{name} has {arr.shape[0]} samples but gt_joints has {n}')
    if n == 0:
        raise UserError('hand mesh metrics need at least one sample, got N=0')
    if not -gj.shape[1] <= root_index < gj.shape[1]:
        raise UserError(f'root_index {root_index} out of range for {gj.shape[1]} joints')
    same_topology = pv.shape[1] == gv.shape[1]

    joint_err = np.linalg.norm(pj - gj, axis=-1)  # (N, J)
    pa_joint_err = np.empty(gj.shape[:2])
    vert_err = np.full(gv.shape[:2], np.nan)
    pa_vert_err = np.full(gv.shape[:2], np.nan)
    fscores = np.empty((n, len(f_thresholds)))
    pa_fscores = np.empty((n, len(f_thresholds)))
    for i in range(n):
        pj_al = align_w_scale(gj[i], pj[i])
        pa_joint_err[i] = np.linalg.norm(pj_al - gj[i], axis=-1)
        if same_topology:
            pv_al = align_w_scale(gv[i], pv[i])
            vert_err[i] = np.linalg.norm(pv[i] - gv[i], axis=-1)
            pa_vert_err[i] = np.linalg.norm(pv_al - gv[i], axis=-1)
        else:
            pv_al = align_by_trafo(pv[i], align_w_scale(gj[i], pj[i], return_trafo=True))
        for k, t in enumerate(f_thresholds):
            fscores[i, k] = fscore(gv[i], pv[i], t)[0]
            pa_fscores[i, k] = fscore(gv[i], pv_al, t)[0]
    pj_root = pj - pj[:, root_index:root_index + 1]
    gj_root = gj - gj[:, root_index:root_index + 1]
    root_joint_err = np.linalg.norm(pj_root - gj_root, axis=-1)
    return dict(joint_err=joint_err, pa_joint_err=pa_joint_err, root_joint_err=root_joint_err,
                vert_err=vert_err, pa_vert_err=pa_vert_err, fscores=fscores,
                pa_fscores=pa_fscores)


def summarize_errors(errors: Dict[str, np.ndarray],
                     f_thresholds: Sequence[float] = F_THRESHOLDS) -> Dict[str, float]:
    """Reduce :func:`per_sample_errors` output (possibly concatenated over batches) to metrics.

    Returns:
        dict: mean errors in mm (``mpjpe``, ``mpvpe`` unaligned; ``pa_mpjpe``, ``pa_mpvpe``
        aligned; ``rr_mpjpe`` root-relative), AUCs of joints / vertices (``auc_j``, ``auc_v``,
        ``pa_auc_j``, ``pa_auc_v``) and F-scores (``f_5mm``, ``f_15mm``, ``pa_f_5mm``,
        ``pa_f_15mm``) in [0, 1]. Vertex numbers are NaN when the topologies differ (the server
        writes -1).
    """
    out = {}
    for prefix in ('', 'pa_'):
        joints, verts = errors[f'{prefix}joint_err'], errors[f'{prefix}vert_err']
        has_verts = not np.isnan(verts).any()
        out[f'{prefix}mpjpe'] = float(joints.mean() * 1000.0)
        out[f'{prefix}mpvpe'] = float(verts.mean() * 1000.0) if has_verts else float('nan')
        out[f'{prefix}auc_j'] = pck_auc(joints)
        out[f'{prefix}auc_v'] = pck_auc(verts) if has_verts else float('nan')
        for k, t in enumerate(f_thresholds):
            out[f'{prefix}f_{round(t * 1000)}mm'] = float(errors[f'{prefix}fscores'][:, k].mean())
    out['rr_mpjpe'] = float(errors['root_joint_err'].mean() * 1000.0)
    return out


def server_scores(metrics: Dict[str, float]) -> str:
    """The server's ``scores.txt`` for :func:`summarize_errors` output: its names, its order,
    mean errors in cm (``'%s: %f'`` per line, -1 for what could not be computed)."""
    lines = []
    for ours, theirs in SERVER_KEYS:
        value = metrics.get(ours, float('nan'))
        if np.isnan(value):
            value = -1.0
        elif ours.endswith(('mpjpe', 'mpvpe')):
            value = value / 10.0  # mm -> cm
        lines.append('%s: %f' % (theirs, value))
    return '\n'.join(lines) + '\n'


def hand_mesh_metrics(pred_joints: ArrayLike, gt_joints: ArrayLike, pred_verts: ArrayLike,
                      gt_verts: ArrayLike, root_index: int = 0) -> Dict[str, float]:
    """FreiHAND metrics for a batch of predictions (all inputs in metres).

    Args:
        pred_joints: (N, 21, 3) predicted joints (numpy array or torch tensor).
        gt_joints: (N, 21, 3) ground-truth joints.
        pred_verts: (N, V', 3) predicted vertices.
        gt_verts: (N, V, 3) ground-truth vertices (V' may differ; then ``pa_mpvpe`` is NaN and
            the F-scores use the keypoint alignment, as in the official script).
        root_index (int): joint subtracted for ``mpjpe``. Defaults to 0 (wrist).

    Returns:
        dict: see :func:`summarize_errors` (mm, AUC and F in [0, 1]). The unaligned numbers
        judge camera-frame coordinates; for root-relative inputs they equal the root-relative
        ones only if both sets are relative to the same joint.
    """
    errors = per_sample_errors(pred_joints, gt_joints, pred_verts, gt_verts, root_index)
    return summarize_errors(errors)
