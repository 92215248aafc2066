"""The official FreiHAND evaluation procedure, restated for the tests.

Written from https://github.com/lmb-freiburg/freihand ``eval.py`` (``main``, ``align_w_scale``,
``calculate_fscore``) and ``utils/eval_util.py`` (``EvalUtil``) with loops as they are there;
only open3d's ``compute_point_cloud_to_point_cloud_distance`` (nearest-neighbour Euclidean
distance) is replaced by a brute-force numpy equivalent. Deliberately independent of
``hybridvit.evaluation``: the tests compare the two.
"""
import json
import os.path as osp

import numpy as np
from scipy.linalg import orthogonal_procrustes

_trapz = getattr(np, 'trapezoid', None) or np.trapz


def _nn_dist(src, dst):
    """For each point of ``src``, the distance to the closest point of ``dst``."""
    return np.sqrt(((src[:, None, :] - dst[None, :, :]) ** 2).sum(-1)).min(1)


def calculate_fscore(gt, pr, th=0.01):
    d1 = _nn_dist(gt, pr)  # closest dist for each gt point
    d2 = _nn_dist(pr, gt)  # closest dist for each pred point
    recall = float(sum(d < th for d in d2)) / float(len(d2))
    precision = float(sum(d < th for d in d1)) / float(len(d1))
    if recall + precision > 0:
        return 2 * recall * precision / (recall + precision)
    return 0


def align_w_scale(mtx1, mtx2):
    t1 = mtx1.mean(0)
    t2 = mtx2.mean(0)
    mtx1_t = mtx1 - t1
    mtx2_t = mtx2 - t2
    s1 = np.linalg.norm(mtx1_t) + 1e-8
    mtx1_t /= s1
    s2 = np.linalg.norm(mtx2_t) + 1e-8
    mtx2_t /= s2
    R, s = orthogonal_procrustes(mtx1_t, mtx2_t)
    mtx2_t = np.dot(mtx2_t, R.T) * s
    return mtx2_t * s1 + t1


class EvalUtil:

    def __init__(self, num_kp=21):
        self.data = [list() for _ in range(num_kp)]
        self.num_kp = num_kp

    def feed(self, keypoint_gt, keypoint_vis, keypoint_pred):
        euclidean_dist = np.sqrt(np.sum(np.square(keypoint_gt - keypoint_pred), axis=1))
        for i in range(keypoint_gt.shape[0]):
            if keypoint_vis[i]:
                self.data[i].append(euclidean_dist[i])

    def get_measures(self, val_min, val_max, steps):
        thresholds = np.linspace(val_min, val_max, steps)
        norm_factor = _trapz(np.ones_like(thresholds), thresholds)
        epe_mean_all, auc_all = [], []
        for part_id in range(self.num_kp):
            data = np.array(self.data[part_id])
            epe_mean_all.append(np.mean(data))
            pck_curve = np.array([np.mean((data <= t).astype('float')) for t in thresholds])
            auc_all.append(_trapz(pck_curve, thresholds) / norm_factor)
        return np.mean(np.array(epe_mean_all)), np.mean(np.array(auc_all))


def official_eval(gt_path, pred_file, set_name='evaluation'):
    """``eval.py``'s ``main``: returns the ``scores.txt`` entries (errors in cm)."""
    with open(osp.join(gt_path, f'{set_name}_xyz.json')) as f:
        xyz_list = json.load(f)
    with open(osp.join(gt_path, f'{set_name}_verts.json')) as f:
        verts_list = json.load(f)
    with open(pred_file) as f:
        pred = json.load(f)
    assert len(pred) == 2, 'Expected format mismatch.'
    assert len(pred[0]) == len(xyz_list), 'Expected format mismatch.'
    assert len(pred[1]) == len(xyz_list), 'Expected format mismatch.'
    eval_xyz, eval_xyz_aligned = EvalUtil(), EvalUtil()
    eval_mesh_err, eval_mesh_err_aligned = EvalUtil(num_kp=778), EvalUtil(num_kp=778)
    f_score, f_score_aligned = [], []
    f_threshs = [0.005, 0.015]
    for idx in range(len(xyz_list)):
        xyz, verts = np.array(xyz_list[idx]), np.array(verts_list[idx])
        xyz_pred, verts_pred = np.array(pred[0][idx]), np.array(pred[1][idx])
        eval_xyz.feed(xyz, np.ones_like(xyz[:, 0]), xyz_pred)
        eval_mesh_err.feed(verts, np.ones_like(verts[:, 0]), verts_pred)  # shape_is_mano
        xyz_pred_aligned = align_w_scale(xyz, xyz_pred)
        verts_pred_aligned = align_w_scale(verts, verts_pred)
        eval_xyz_aligned.feed(xyz, np.ones_like(xyz[:, 0]), xyz_pred_aligned)
        eval_mesh_err_aligned.feed(verts, np.ones_like(verts[:, 0]), verts_pred_aligned)
        f_score.append([calculate_fscore(verts, verts_pred, t) for t in f_threshs])
        f_score_aligned.append([calculate_fscore(verts, verts_pred_aligned, t)
                                for t in f_threshs])
    xyz_mean3d, xyz_auc3d = eval_xyz.get_measures(0.0, 0.05, 100)
    xyz_al_mean3d, xyz_al_auc3d = eval_xyz_aligned.get_measures(0.0, 0.05, 100)
    mesh_mean3d, mesh_auc3d = eval_mesh_err.get_measures(0.0, 0.05, 100)
    mesh_al_mean3d, mesh_al_auc3d = eval_mesh_err_aligned.get_measures(0.0, 0.05, 100)
    scores = dict(xyz_mean3d=xyz_mean3d * 100, xyz_auc3d=xyz_auc3d,
                  xyz_al_mean3d=xyz_al_mean3d * 100, xyz_al_auc3d=xyz_al_auc3d,
                  mesh_mean3d=mesh_mean3d * 100, mesh_auc3d=mesh_auc3d,
                  mesh_al_mean3d=mesh_al_mean3d * 100, mesh_al_auc3d=mesh_al_auc3d)
    f_score, f_score_aligned = np.array(f_score).T, np.array(f_score_aligned).T
    for f, fa, t in zip(f_score, f_score_aligned, f_threshs):
        scores['f_score_%d' % round(t * 1000)] = f.mean()
        scores['f_al_score_%d' % round(t * 1000)] = fa.mean()
    return {k: float(v) for k, v in scores.items()}


def read_scores(path):
    """Parse a ``scores.txt`` (``name: value`` lines)."""
    with open(path) as f:
        return {k.strip(): float(v) for k, v in (line.split(':') for line in f if line.strip())}
