"""FreiHAND metrics on known cases, against loop-based references of the official semantics."""
import json

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes

from hybridvit.evaluation.functional import (align_w_scale, fscore, hand_mesh_metrics, pck_auc,
                                             server_scores)
from hybridvit.evaluation.metrics import HandMeshMetric
from hybridvit.registry import METRICS
from hybridvit.utils.errors import UserError


def _random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@pytest.fixture
def hands():
    rng = np.random.default_rng(0)
    n = 4
    joints = rng.normal(scale=0.04, size=(n, 21, 3)) + np.array([0, 0, 0.6])
    verts = rng.normal(scale=0.04, size=(n, 60, 3)) + np.array([0, 0, 0.6])
    return rng, joints, verts


# ---------------------------------------------------------------- loop-based references
def _ref_align(gt, pred):
    """The official align_w_scale, line by line."""
    t1, t2 = gt.mean(0), pred.mean(0)
    m1, m2 = gt - t1, pred - t2
    s1 = np.linalg.norm(m1) + 1e-8
    m1 = m1 / s1
    s2 = np.linalg.norm(m2) + 1e-8
    m2 = m2 / s2
    R, s = orthogonal_procrustes(m1, m2)
    return np.dot(m2, R.T) * s * s1 + t1


def _ref_fscore(gt, pr, th):
    d1 = [min(np.linalg.norm(g - p) for p in pr) for g in gt]  # each gt point -> closest pred
    d2 = [min(np.linalg.norm(p - g) for g in gt) for p in pr]
    recall = sum(d < th for d in d2) / len(d2)
    precision = sum(d < th for d in d1) / len(d1)
    return 2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0


def _ref_auc(errors_per_kp):
    """EvalUtil.get_measures: per keypoint pck curve (<=) over linspace(0, .05, 100)."""
    thresholds = np.linspace(0.0, 0.05, 100)
    norm = thresholds[-1] - thresholds[0]
    aucs = []
    for kp in range(errors_per_kp.shape[1]):
        data = errors_per_kp[:, kp]
        curve = [np.mean(data <= t) for t in thresholds]
        area = sum((curve[i] + curve[i + 1]) / 2 * (thresholds[i + 1] - thresholds[i])
                   for i in range(len(thresholds) - 1))
        aucs.append(area / norm)
    return float(np.mean(aucs))


# ---------------------------------------------------------------- tests
def test_identical_prediction_is_perfect(hands):
    _, joints, verts = hands
    m = hand_mesh_metrics(joints, joints, verts, verts)
    assert set(m) == {'mpjpe', 'mpvpe', 'auc_j', 'auc_v', 'f_5mm', 'f_15mm', 'pa_mpjpe',
                      'pa_mpvpe', 'pa_auc_j', 'pa_auc_v', 'pa_f_5mm', 'pa_f_15mm', 'rr_mpjpe'}
    assert m['pa_mpjpe'] < 1e-4 and m['pa_mpvpe'] < 1e-4
    assert m['mpjpe'] == m['mpvpe'] == m['rr_mpjpe'] == 0.0
    assert m['f_5mm'] == m['f_15mm'] == m['pa_f_5mm'] == m['pa_f_15mm'] == 1.0
    assert m['auc_j'] == pytest.approx(1.0) and m['auc_v'] == pytest.approx(1.0)
    # the official 1e-8 on the norms leaves ~1e-9 m after alignment, so PCK(0 mm) = 0:
    # the AUC loses exactly the first trapezoid, half of one of the 99 steps
    assert m['pa_auc_j'] == pytest.approx(1.0 - 0.5 / 99)
    assert m['pa_auc_v'] == pytest.approx(1.0 - 0.5 / 99)


def test_similarity_transform_gives_zero_pa_error(hands):
    rng, joints, verts = hands
    pj, pv = np.empty_like(joints), np.empty_like(verts)
    for i in range(len(joints)):
        rot, s, t = _random_rotation(rng), rng.uniform(0.5, 2.0), rng.normal(size=3)
        pj[i] = joints[i] @ rot.T * s + t
        pv[i] = verts[i] @ rot.T * s + t
    m = hand_mesh_metrics(torch.from_numpy(pj), torch.from_numpy(joints), pv, verts)
    assert m['pa_mpjpe'] < 1e-4 and m['pa_mpvpe'] < 1e-4
    assert m['pa_f_5mm'] == 1.0 and m['pa_auc_j'] == pytest.approx(1.0 - 0.5 / 99)
    # the unaligned and root-relative errors are not invariant to rotation / scale / shift
    assert m['rr_mpjpe'] > 1.0 and m['mpjpe'] > 100 and m['f_15mm'] < 0.5


def test_noisy_prediction_matches_loop_reference(hands):
    rng, joints, verts = hands
    pj = joints + rng.normal(scale=0.006, size=joints.shape)
    pv = verts + rng.normal(scale=0.006, size=verts.shape)
    m = hand_mesh_metrics(pj, joints, pv, verts)

    pa_j, pa_v, f5, f15, raw_f5, root = [], [], [], [], [], []
    for i in range(len(joints)):
        aj = _ref_align(joints[i], pj[i])
        av = _ref_align(verts[i], pv[i])
        pa_j.append(np.linalg.norm(aj - joints[i], axis=1))
        pa_v.append(np.linalg.norm(av - verts[i], axis=1))
        f5.append(_ref_fscore(verts[i], av, 0.005))
        f15.append(_ref_fscore(verts[i], av, 0.015))
        raw_f5.append(_ref_fscore(verts[i], pv[i], 0.005))
        root.append(np.linalg.norm((pj[i] - pj[i, 0]) - (joints[i] - joints[i, 0]), axis=1))
    pa_j, pa_v = np.stack(pa_j), np.stack(pa_v)
    assert m['pa_mpjpe'] == pytest.approx(pa_j.mean() * 1000, rel=1e-9)
    assert m['pa_mpvpe'] == pytest.approx(pa_v.mean() * 1000, rel=1e-9)
    assert m['pa_f_5mm'] == pytest.approx(np.mean(f5))
    assert m['pa_f_15mm'] == pytest.approx(np.mean(f15))
    assert m['f_5mm'] == pytest.approx(np.mean(raw_f5))
    assert m['rr_mpjpe'] == pytest.approx(np.mean(root) * 1000, rel=1e-9)
    assert m['mpjpe'] == pytest.approx(np.linalg.norm(pj - joints, axis=-1).mean() * 1000)
    assert m['mpvpe'] == pytest.approx(np.linalg.norm(pv - verts, axis=-1).mean() * 1000)
    assert m['pa_auc_j'] == pytest.approx(_ref_auc(pa_j), rel=1e-9)
    assert m['pa_auc_v'] == pytest.approx(_ref_auc(pa_v), rel=1e-9)
    assert m['auc_j'] == pytest.approx(_ref_auc(np.linalg.norm(pj - joints, axis=-1)))
    assert 0 < m['pa_f_5mm'] < m['pa_f_15mm'] <= 1


def test_fscore_precision_recall_direction():
    gt = np.zeros((4, 3))
    gt[:, 0] = [0, 1, 2, 3]
    pred = gt[:1] + 0.001  # one predicted point near gt point 0
    f, precision, recall = fscore(gt, pred, 0.01)
    assert precision == 0.25 and recall == 1.0  # gt points matched / predicted points matched
    assert f == pytest.approx(0.4)


def test_all_zero_prediction_is_finite(hands):
    _, joints, verts = hands
    m = hand_mesh_metrics(np.zeros_like(joints), joints, np.zeros_like(verts), verts)
    assert all(np.isfinite(v) for v in m.values())
    assert m['pa_mpjpe'] > 10 and m['pa_f_5mm'] < 0.2


def test_shape_validation(hands):
    _, joints, verts = hands
    n = len(joints)
    with pytest.raises(UserError, match=r'^pred_joints must have 21 points per sample, got '
                                        rf'shape \({n}, 20, 3\)$'):
        hand_mesh_metrics(joints[:, :20], joints, verts, verts)
    with pytest.raises(UserError, match=rf'^pred_joints has 2 samples but gt_joints has {n}$'):
        hand_mesh_metrics(joints[:2], joints, verts, verts)
    with pytest.raises(UserError, match=r'^pred_verts must have shape \(N, P, 3\), got '
                                        rf'\({n}, {verts.shape[1]}, 2\)$'):
        hand_mesh_metrics(joints, joints, verts[..., :2], verts)
    with pytest.raises(UserError, match='^pred_joints contains NaN or Inf values$'):
        hand_mesh_metrics(joints * np.nan, joints, verts, verts)


def test_pck_auc_known_values():
    assert pck_auc(np.zeros((3, 2))) == pytest.approx(1.0)
    assert pck_auc(np.full((3, 2), 1.0)) == 0.0
    assert pck_auc(np.full((1, 1), 0.025)) == pytest.approx(0.5, abs=0.011)


def test_align_returns_gt_frame():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(10, 3))
    assert np.allclose(align_w_scale(gt, gt * 3 + 1), gt, atol=1e-6)


def test_metric_accumulates_and_writes_pred_json(hands, tmp_path):
    _, joints, verts = hands
    rng = np.random.default_rng(3)
    pj = joints + rng.normal(scale=0.004, size=joints.shape)
    pv = verts + rng.normal(scale=0.004, size=verts.shape)
    out_dir = tmp_path / 'sub' / 'dir'  # created
    metric = METRICS.build(dict(type='HandMeshMetric', out_dir=str(out_dir)))
    assert isinstance(metric, HandMeshMetric)
    metric.dataset_meta = {}
    order = [2, 0, 3, 1]  # batches arrive in any order; sample_idx restores it
    for i in order:
        # what the head / PackHandMeshInputs give: root-relative + camera-frame + gt root
        root, proot = joints[i, :1], pj[i, :1]
        metric.process({}, [dict(sample_idx=i, pred_joints=torch.from_numpy(pj[i] - proot),
                                 pred_verts=torch.from_numpy(pv[i] - proot),
                                 pred_joints_cam=pj[i], pred_verts_cam=pv[i],
                                 gt_joints=joints[i] - root, gt_verts=verts[i] - root,
                                 gt_root=root[0])])
    out = metric.evaluate(len(order))
    expected = hand_mesh_metrics(pj, joints, pv, verts)
    assert set(out) == {f'freihand/{k}' for k in expected}
    for k, v in expected.items():
        assert out[f'freihand/{k}'] == pytest.approx(v, rel=1e-5)
    with open(out_dir / 'pred.json') as f:
        xyz_list, verts_list = json.load(f)
    assert len(xyz_list) == len(verts_list) == 4
    np.testing.assert_allclose(np.array(xyz_list), pj, atol=1e-6)  # camera frame
    assert np.array(verts_list).shape == (4, 60, 3)
    scores = dict(line.split(': ') for line in (out_dir / 'scores.txt').read_text().split('\n')
                  if line)
    assert float(scores['xyz_mean3d']) == pytest.approx(expected['mpjpe'] / 10, abs=1e-5)
    assert float(scores['xyz_al_mean3d']) == pytest.approx(expected['pa_mpjpe'] / 10, abs=1e-5)
    assert float(scores['f_al_score_15']) == pytest.approx(expected['pa_f_15mm'], abs=1e-5)
    assert float(scores['mesh_mean3d']) == pytest.approx(expected['mpvpe'] / 10, abs=1e-5)
    assert not [p for p in out_dir.iterdir() if p.name.endswith('.tmp')]


def test_metric_without_camera_frame_leaves_unaligned_numbers_out(hands):
    _, joints, verts = hands
    metric = HandMeshMetric()
    for i in range(len(joints)):
        metric.process({}, [dict(sample_idx=i, pred_joints=joints[i] - joints[i, :1],
                                 pred_verts=verts[i] - joints[i, :1],
                                 gt_joints=joints[i] - joints[i, :1],
                                 gt_verts=verts[i] - joints[i, :1])])
    out = metric.compute_metrics(metric.results)
    assert 'mpjpe' not in out and 'f_5mm' not in out
    assert out['pa_mpjpe'] < 1e-4 and out['rr_mpjpe'] == 0.0


def test_metric_reports_mean_2d_keypoint_error_in_pixels(hands):
    _, joints, verts = hands
    gt_2d = np.zeros((21, 2))
    metric = HandMeshMetric()
    for i, shift in enumerate(([3.0, 4.0], [0.0, 1.0])):  # 5 px and 1 px on every keypoint
        metric.process({}, [dict(sample_idx=i, pred_joints=joints[i], pred_verts=verts[i],
                                 gt_joints=joints[i], gt_verts=verts[i],
                                 pred_keypoints_2d=gt_2d + shift, gt_keypoints_2d=gt_2d,
                                 pred_keypoints_uv=gt_2d + [0.0, 2.0 * i])])
    out = metric.compute_metrics(metric.results)
    assert out['kp2d_err'] == pytest.approx(3.0)
    assert out['heatmap2d_err'] == pytest.approx(1.0)  # the keypoint branch's: 0 and 2 px
    assert out['pa_mpjpe'] < 1e-4


def test_server_scores_format():
    metrics = dict(mpjpe=12.5, auc_j=0.25, pa_mpjpe=7.0, pa_auc_j=0.8, mpvpe=float('nan'),
                   auc_v=float('nan'), pa_mpvpe=float('nan'), pa_auc_v=float('nan'), f_5mm=0.1,
                   pa_f_5mm=0.5, f_15mm=0.3, pa_f_15mm=0.9)
    assert server_scores(metrics).splitlines() == [
        'xyz_mean3d: 1.250000', 'xyz_auc3d: 0.250000', 'xyz_al_mean3d: 0.700000',
        'xyz_al_auc3d: 0.800000', 'mesh_mean3d: -1.000000', 'mesh_auc3d: -1.000000',
        'mesh_al_mean3d: -1.000000', 'mesh_al_auc3d: -1.000000', 'f_score_5: 0.100000',
        'f_al_score_5: 0.500000', 'f_score_15: 0.300000', 'f_al_score_15: 0.900000']


def test_metric_without_gt_needs_outfile():
    metric = HandMeshMetric()
    metric.process({}, [dict(sample_idx=0, pred_joints=np.zeros((21, 3)),
                             pred_verts=np.zeros((778, 3)))])
    with pytest.raises(ValueError, match='no ground truth'):
        metric.compute_metrics(metric.results)
