"""Hand mesh head, MANO layer and estimator: shapes, losses, training on generated data."""
import copy
import os.path as osp
import pickle
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.dataset import pseudo_collate
from mmengine.optim import OptimWrapper
from mmengine.structures import BaseDataElement

import hybridvit.datasets.transforms  # noqa: F401  (registers the transforms)
import hybridvit.evaluation  # noqa: F401
import hybridvit.models  # noqa: F401
from hybridvit.datasets.freihand import FreiHANDDataset
from hybridvit.datasets.generators.mini_freihand import make_mini_freihand
from hybridvit.models.estimators import HandMeshEstimator
from hybridvit.models.heads import HandMeshHead, MANOLayer, load_mano_params
from hybridvit.models.heads.hand_camera import bone_lengths
from hybridvit.models.heads.procrustes import procrustes_rotation, rigid_align
from hybridvit.registry import METRICS, MODELS
from hybridvit.utils.errors import UserError

CONFIG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'hand')


@MODELS.register_module(name='_HandMeshTestTinyNet', force=True)
class _TinyNet(nn.Module):
    """Two strided convs: a stand-in backbone returning two feature maps."""

    def __init__(self, channels=(8, 16)):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1), nn.BatchNorm2d(channels[0]),
                                nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(channels[0], channels[1], 3, 2, 1), nn.ReLU())

    def forward(self, x):
        a = self.c1(x)
        return a, self.c2(a)


def _samples(bsz, num_verts=778, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(bsz):
        joints = torch.randn(21, 3, generator=g) * 0.03
        joints -= joints[:1].clone()
        out.append(BaseDataElement(
            metainfo=dict(img_shape=(size, size)), gt_joints=joints,
            gt_verts=torch.randn(num_verts, 3, generator=g) * 0.03,
            gt_keypoints_2d=torch.rand(21, 2, generator=g) * size))
    return out


@pytest.fixture(scope='module')
def mini_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('mini_freihand_models'))
    make_mini_freihand(root, num_train=8, num_eval=2, seed=0, image_size=64, num_versions=1,
                       verbose=False)
    return root


def test_head_shapes_and_losses_multiscale():
    faces = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 4]])
    head = HandMeshHead(in_channels=[8, 16], in_index=[0, 1], num_verts=5, hidden_dims=(32,),
                        faces=faces, loss_weights=dict(edge=1.0, normal=0.5))
    feats = (torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4))
    out = head(feats)
    assert out['joints'].shape == (2, 21, 3) and out['verts'].shape == (2, 5, 3)
    assert out['cam'].shape == (2, 3) and out['keypoints_2d_norm'].shape == (2, 21, 2)
    assert torch.allclose(out['joints'][:, 0], torch.zeros(2, 3))  # root-relative
    losses = head.loss(feats, _samples(2, num_verts=5))
    assert set(losses) == {'loss_joints', 'loss_verts', 'loss_2d', 'loss_edge', 'loss_normal'}
    sum(losses.values()).backward()

    # a hand-computed case: ground truth = the prediction moved by known amounts
    head.eval()
    with torch.no_grad():
        out = head(feats)
    size = 64
    gt = [BaseDataElement(metainfo=dict(img_shape=(size, size)),
                          gt_joints=out['joints'][i] + 0.01,  # |error| 0.01 everywhere
                          gt_verts=out['verts'][i] * 2,  # the same mesh, twice as large
                          gt_keypoints_2d=(out['keypoints_2d_norm'][i] + 0.2 + 1) / 2 * size)
          for i in range(2)]
    with torch.no_grad():
        losses = head.loss(feats, gt)
    e0, e1 = head.edges[:, 0], head.edges[:, 1]
    assert len(head.edges) == 7  # the 3 faces share 2 of their 9 edges
    edge_len = (out['verts'][:, e0] - out['verts'][:, e1]).norm(dim=-1)  # (B, 7)
    expected = dict(
        loss_joints=0.01,  # weight 1 x mean |0.01|
        loss_verts=float(out['verts'].abs().mean()),  # |v - 2 v| = |v|
        loss_2d=0.1 * 0.2,  # weight 0.1 x the 0.2 shift in [-1, 1] coordinates
        loss_edge=float(edge_len.mean()),  # |l - 2 l| = l
        loss_normal=0.0)  # a scaled mesh has the same normals: edges stay perpendicular
    for key, value in expected.items():
        assert float(losses[key]) == pytest.approx(value, rel=1e-4, abs=1e-6), key
    preds = head.predict(feats, _samples(2, num_verts=5))
    assert preds[0].pred_keypoints_2d.shape == (21, 2) and preds[0].pred_verts.shape == (5, 3)
    with pytest.raises(UserError, match='same length'):
        HandMeshHead(in_channels=[8, 16], in_index=-1)
    with pytest.raises(UserError, match='unknown loss_weights'):
        HandMeshHead(in_channels=8, loss_weights=dict(joint=1.0))
    with pytest.raises(UserError, match='vertices'):
        HandMeshHead(in_channels=8, num_verts=3, faces=faces)
    with pytest.raises(UserError, match='pool_size'):
        HandMeshHead(in_channels=8, pool_size=0)


def _random_rotations(n, seed=0, dtype=torch.float64):
    q, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=torch.Generator().manual_seed(seed),
                                       dtype=dtype))
    return q * torch.sign(torch.linalg.det(q))[:, None, None]  # proper rotations


def test_procrustes_matches_scipy_and_undoes_rigid_motion():
    from scipy.linalg import orthogonal_procrustes
    g = torch.Generator().manual_seed(1)
    target = torch.randn(3, 40, 3, generator=g, dtype=torch.float64)
    moved = target @ _random_rotations(3) + torch.randn(3, 1, 3, generator=g,
                                                        dtype=torch.float64)
    torch.testing.assert_close(rigid_align(moved, target), target, atol=1e-10, rtol=0)
    # a mirrored copy is aligned too: reflections are allowed, as in the FreiHAND metric
    mirrored = target * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    torch.testing.assert_close(rigid_align(mirrored, target), target, atol=1e-10, rtol=0)
    source = torch.randn(1, 40, 3, generator=g, dtype=torch.float64)
    expected, _ = orthogonal_procrustes((source - source.mean(1))[0].numpy(),
                                        (target[:1] - target[:1].mean(1))[0].numpy())
    np.testing.assert_allclose(procrustes_rotation(source, target[:1])[0].numpy(), expected,
                               atol=1e-12)
    with pytest.raises(ValueError, match=r'\(B, P, 3\)'):
        procrustes_rotation(source, target)


def test_similarity_fit_is_kabsch_umeyama_without_svd():
    """Horn's quaternion by repeated squaring == the SVD solution with det correction: same
    rotation and least-squares scale / translation; proper rotations only; zeros stay finite."""
    from hybridvit.models.heads.procrustes import similarity_fit
    g = torch.Generator().manual_seed(2)
    source = torch.randn(6, 21, 3, generator=g) * torch.tensor([1.0, 1.0, 0.1])  # flat hands
    rot = _random_rotations(6, seed=4, dtype=torch.float32)
    scale, trans = torch.rand(6, generator=g) * 5 + 0.5, torch.randn(6, 3, generator=g)
    target = scale[:, None, None] * source @ rot.transpose(1, 2) + trans[:, None]
    fit_rot, fit_scale, fit_trans = similarity_fit(source, target)
    torch.testing.assert_close(fit_rot, rot, atol=1e-4, rtol=0)
    torch.testing.assert_close(fit_scale, scale, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fit_trans, trans, atol=1e-4, rtol=1e-4)
    # unrelated targets: the optimum of sum <R a, b> over proper rotations (Kabsch + det fix)
    target = torch.randn(6, 21, 3, generator=g)
    a, b = source - source.mean(1, keepdim=True), target - target.mean(1, keepdim=True)
    u, _, vh = torch.linalg.svd((b.transpose(1, 2) @ a).double())
    fix = torch.ones(6, 3, dtype=torch.float64)
    fix[:, 2] = torch.linalg.det(u @ vh)
    kabsch = (u @ torch.diag_embed(fix) @ vh).float()
    fit_rot, fit_scale, _ = similarity_fit(source, target)
    torch.testing.assert_close(fit_rot, kabsch, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.linalg.det(fit_rot), torch.ones(6), atol=1e-5, rtol=0)
    expected_scale = ((a @ kabsch.transpose(1, 2)) * b).sum((1, 2)) / a.pow(2).sum((1, 2))
    torch.testing.assert_close(fit_scale, expected_scale, atol=1e-4, rtol=1e-4)
    fit_rot, fit_scale, fit_trans = similarity_fit(torch.zeros(2, 21, 3), torch.zeros(2, 21, 3))
    torch.testing.assert_close(fit_rot, torch.eye(3).expand(2, 3, 3))
    assert (fit_scale == 0).all() and (fit_trans == 0).all()


def test_soft_argmax_reads_peaks_and_values():
    from hybridvit.models.heads.integral_keypoints import soft_argmax_2d
    logits = torch.full((1, 2, 4, 8), -1e4)
    logits[0, 0, 1, 6] = 0.0  # a peak at row 1, column 6 of a 4 x 8 map
    logits[0, 1] = 0.0  # flat: the centre of the map
    values = torch.arange(64.0).view(1, 2, 4, 8)
    uv, value = soft_argmax_2d(logits, values)
    torch.testing.assert_close(uv[0, 0], torch.tensor([6.5 / 8 * 2 - 1, 1.5 / 4 * 2 - 1]))
    torch.testing.assert_close(uv[0, 1], torch.zeros(2))
    torch.testing.assert_close(value[0], torch.tensor([14.0, values[0, 1].mean()]))


def test_local_soft_argmax_removes_the_pull_of_far_mass():
    """A Gaussian peak plus a uniform floor: the plain expectation is pulled towards the map
    centre, the windowed one reads the peak (and its value) as if the floor were not there."""
    from hybridvit.models.heads.integral_keypoints import soft_argmax_2d
    h = w = 16
    centres = (torch.arange(w) + 0.5) * (2.0 / w) - 1.0
    uv = torch.tensor([0.55, -0.6])
    d2 = (((centres - uv[0]) * w / 2) ** 2)[None, :] + (((centres - uv[1]) * h / 2) ** 2)[:, None]
    peak = torch.exp(-d2 / 2)  # (H, W), 1-cell Gaussian
    logits = torch.log(peak + 0.02)[None, None]  # a floor holding most of the mass far away
    values = torch.full((1, 1, h, w), 5.0)
    values[..., 8:, :8] = -100.0  # a far quadrant with a different value
    plain, plain_value = soft_argmax_2d(logits, values)
    local, local_value = soft_argmax_2d(logits, values, window=3)
    assert (plain[0, 0] - uv).norm() > 0.2  # pulled to the centre
    assert plain[0, 0].abs().max() < uv.abs().max()
    torch.testing.assert_close(local[0, 0], uv, atol=0.02, rtol=0)
    assert float(plain_value) < 0 and float(local_value) == pytest.approx(5.0)
    # a window covering the whole map is the plain read-out
    torch.testing.assert_close(soft_argmax_2d(logits, values, window=w)[0], plain)


def test_keypoint_branch_test_window_applies_in_eval_mode_only():
    from hybridvit.models.heads.integral_keypoints import (IntegralKeypointBranch,
                                                           soft_argmax_2d)
    torch.manual_seed(0)
    branch = IntegralKeypointBranch([8], [0], channels=8, test_window=1)
    nn.init.normal_(branch.predict_maps.weight, std=1.0)
    feats = [torch.randn(2, 8, 12, 12)]
    zeros = torch.zeros(2, 21, 12, 12)
    uv_train, _, logits = branch(feats)  # training: the whole map
    torch.testing.assert_close(uv_train, soft_argmax_2d(logits, zeros)[0])
    branch.eval()
    with torch.no_grad():
        uv_eval, depth_eval, logits = branch(feats)
    torch.testing.assert_close(uv_eval, soft_argmax_2d(logits, zeros, window=1)[0])
    assert not torch.allclose(uv_eval, soft_argmax_2d(logits, zeros)[0])
    # within one cell (2 / 12 wide) of the peak cell's centre
    peak = logits.flatten(2).argmax(-1)
    peak_uv = (torch.stack([peak % 12, peak // 12], -1).float() + 0.5) * (2.0 / 12) - 1
    assert (uv_eval - peak_uv).abs().max() <= 2.0 / 12 + 1e-6
    assert (depth_eval[:, 0] == 0).all()
    with pytest.raises(UserError, match='test_window must be a positive int'):
        IntegralKeypointBranch([8], [0], test_window=0)


def _keypoint_head():
    torch.manual_seed(0)
    return HandMeshHead(in_channels=[8, 16], in_index=[0, 1], pool_size=2, num_verts=7,
                        hidden_dims=(32,),
                        keypoint_branch=dict(in_channels=[8, 16], in_index=[0, 1], channels=8))


def test_keypoint_branch_head_places_the_hand_on_its_2_5d_keypoints():
    """The hand-frame joints fitted onto keypoints that are an exact similarity copy of them
    come out in the copy's pose, at its scale, projecting onto its 2D positions; the fused map
    is at the finest input resolution."""
    head = _keypoint_head()
    feats = (torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4))
    with torch.no_grad():
        head.fc_out.weight.normal_(0, 0.1)  # a non-degenerate hand-frame skeleton
    out = head(feats)
    assert out['keypoints_uv'].shape == (2, 21, 2) and out['keypoints_depth'].shape == (2, 21)
    assert out['keypoints_uv'].abs().max() < 1 and (out['keypoints_depth'][:, 0] == 0).all()
    hand = out['joints'] @ out['global_rot']  # (B, J, 3) root-relative, hand frame
    rot = _random_rotations(2, seed=5, dtype=torch.float32)
    scale = torch.tensor([4.0, 9.0])
    posed = scale[:, None, None] * hand @ rot.transpose(1, 2)  # crop units
    uv = posed[..., :2] + torch.tensor([0.1, -0.2])
    head.keypoint_branch.forward = lambda _feats: (uv.detach(), posed[..., 2].detach(),
                                                   torch.zeros(2, 21, 8, 8))
    out = head(feats)
    torch.testing.assert_close(out['global_rot'], rot, atol=1e-4, rtol=0)
    torch.testing.assert_close(out['joints'], posed / scale[:, None, None], atol=1e-5,
                               rtol=1e-4)
    torch.testing.assert_close(out['cam'][:, 0], scale, rtol=1e-4, atol=0)
    torch.testing.assert_close(out['keypoints_2d_norm'], uv, atol=1e-5, rtol=0)
    assert (out['joints'][:, 0] == 0).all()


def test_keypoint_branch_head_submission_gives_back_the_camera_frame_hand():
    """2.5D keypoints of a hand seen by a perspective camera (pixel positions, root-relative
    depths in pixels at the root's depth), the crop's K and the reference bone length:
    predict() places the hand exactly where it is, with the predicted hand's own proportions
    before training and with the training labels' mean proportions after."""
    head = _keypoint_head()
    head.eval()
    # one hand (the same features twice), seen in two poses
    feats = tuple(torch.randn(1, c, n, n).expand(2, -1, -1, -1) for c, n in ((8, 8), (16, 4)))
    with torch.no_grad():
        head.fc_out.weight.normal_(0, 0.1)
        hand = head(feats)['joints']  # (B, J, 3) a rotated, root-relative hand (metres)
    rot = _random_rotations(2, seed=3, dtype=torch.float32)
    rel = hand @ rot.transpose(1, 2)  # the true pose: another rotation of the same hand
    root = torch.tensor([[0.03, -0.02, 0.55], [-0.04, 0.01, 0.8]])
    size, focal = 64, 150.0
    K = torch.tensor([[focal, 0, 30.0], [0, focal, 33.0], [0, 0, 1]])
    cam = rel + root[:, None]  # (B, J, 3)
    uv = (cam @ K.T)[..., :2] / cam[..., 2:] / (size / 2) - 1  # [-1, 1] crop units
    depth = focal * (cam[..., 2] - root[:, None, 2]) / root[:, None, 2] / (size / 2)
    head.keypoint_branch.forward = lambda _feats: (uv, depth, torch.zeros(2, 21, 8, 8))
    bone = (rel[:, 10] - rel[:, 9]).norm(dim=-1)
    samples = [BaseDataElement(metainfo=dict(img_shape=(size, size)), K=K, scale=bone[i])
               for i in range(2)]
    assert head.bone_ratio_count == 0
    for preds in (head.predict(feats, samples), None):
        if preds is None:  # the labels' proportions (those of this hand), learnt in training
            head.train()
            labels = _samples(2, num_verts=7)
            for ds, joints in zip(labels, rel):
                ds.gt_joints = joints * 1.3
            head.loss(feats, labels)
            assert head.bone_ratio_count == 2
            torch.testing.assert_close(head.bone_ratios, (bone_lengths(rel) / bone[:, None])[0])
            head.eval()
            preds = head.predict(feats, samples)
        for i, pred in enumerate(preds):
            torch.testing.assert_close(pred.pred_root, root[i], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(pred.pred_joints_cam, cam[i], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(pred.pred_joints, rel[i], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(pred.pred_keypoints_2d, (uv[i] + 1) * size / 2,
                                       atol=1e-3, rtol=0)


def test_aligned_losses_align_the_whole_hand_at_once():
    """A hand turned as a whole costs nothing after alignment; a mesh turned away from its own
    skeleton does (aligning joints and vertices separately would forgive it, and the mesh is
    placed by its skeleton)."""
    head = HandMeshHead(in_channels=8, hidden_dims=(8,), num_verts=7,
                        loss_weights=dict(joints=0.0, verts=0.0, pa_joints=1.0, pa_verts=1.0,
                                          keypoints_2d=0.0))
    samples = _samples(2, num_verts=7)
    gt_j = torch.stack([ds.gt_joints for ds in samples])
    gt_v = torch.stack([ds.gt_verts for ds in samples])
    rot = _random_rotations(2, seed=1, dtype=torch.float32)
    for joints, verts, zero in ((gt_j @ rot, gt_v @ rot, True), (gt_j, gt_v @ rot, False)):
        head.forward = lambda _feats, j=joints, v=verts: dict(
            joints=j, verts=v, keypoints_2d_norm=torch.zeros(2, 21, 2))
        losses = head.loss(torch.zeros(2, 8, 2, 2), samples)
        total = float(losses['loss_pa_joints'] + losses['loss_pa_verts'])
        assert (total < 1e-6) == zero, total


def test_keypoint_weight_out_of_range_is_a_user_error():
    with pytest.raises(UserError, match=r'keypoint_weight must be in \[0, 1\], got 1.5'):
        HandMeshHead(in_channels=8, keypoint_weight=1.5)


def test_keypoint_branch_losses_train_both_branches():
    """kp_uv / kp_depth are 0 for 2.5D keypoints that match labels made by a weak-perspective
    camera, and every loss reaches both the MLP and the keypoint branch."""
    head = _keypoint_head()
    feats = (torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4))
    samples = _samples(2, num_verts=7)
    scale, shift = torch.tensor([5.0, 7.0]), torch.tensor([0.1, 0.3])
    for i, ds in enumerate(samples):  # labels from a weak-perspective camera
        ds.gt_keypoints_2d = (scale[i] * ds.gt_joints[:, :2] + shift + 1) / 2 * 64
    losses = head.loss(feats, samples)
    assert {'loss_kp_uv', 'loss_kp_depth', 'loss_kp_heatmap', 'loss_joints', 'loss_2d'} <= \
        set(losses)
    sum(losses.values()).backward()
    assert head.keypoint_branch.predict_maps.weight.grad.abs().sum() > 0
    assert head.fc_out.weight.grad.abs().sum() > 0
    gt = torch.stack([ds.gt_joints for ds in samples])
    uv = scale[:, None, None] * gt[..., :2] + shift
    depth = scale[:, None] * (gt[..., 2] - gt[:, :1, 2])
    head.keypoint_branch.forward = lambda _feats: (uv, depth, torch.zeros(2, 21, 8, 8))
    losses = head.loss(feats, samples)
    assert float(losses['loss_kp_uv']) < 1e-6 and float(losses['loss_kp_depth']) < 1e-6


def test_heatmap_kl_loss_is_zero_for_the_target_gaussian():
    from hybridvit.models.heads.integral_keypoints import heatmap_kl_loss, soft_argmax_2d
    uv = torch.tensor([[[0.1, -0.3], [-0.5, 0.6]]])  # (1, 2, 2)
    h = w = 16
    xs = (torch.arange(w) + 0.5) * (2.0 / w) - 1.0
    cells = ((xs[None, :] - uv[0, :, :1]) * w / 2) ** 2  # (2, W)
    rows = ((xs[None, :] - uv[0, :, 1:]) * h / 2) ** 2  # (2, H)
    log_gauss = -(rows[:, :, None] + cells[:, None, :]) / 2  # sigma 1 cell, (2, H, W)
    assert float(heatmap_kl_loss(log_gauss[None], uv)) == pytest.approx(0.0, abs=1e-5)
    flat = float(heatmap_kl_loss(torch.zeros(1, 2, h, w), uv))
    assert flat > 2.0  # log(256) - entropy of a 1-cell Gaussian (~2.8) = ~2.7
    # its soft-argmax is at the label (the grid is large enough not to cut the Gaussian)
    pos, _ = soft_argmax_2d(log_gauss[None], torch.zeros(1, 2, h, w))
    torch.testing.assert_close(pos, uv, atol=1e-3, rtol=0)
    far = torch.tensor([[[5.0, 5.0]]])  # a label far off the map is ignored
    assert float(heatmap_kl_loss(torch.zeros(1, 1, h, w), far)) == 0.0


def test_rotation_6d_gives_proper_rotations():
    from hybridvit.models.heads.rotation_6d import IDENTITY_6D, rotation_6d_to_matrix
    rot = rotation_6d_to_matrix(torch.randn(5, 6, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3).expand(5, 3, 3),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(5), atol=1e-5, rtol=0)
    # the first two columns of a rotation are its own 6D code
    code = torch.cat([rot[:, :, 0], rot[:, :, 1]], dim=1)
    torch.testing.assert_close(rotation_6d_to_matrix(code), rot, atol=1e-5, rtol=0)
    torch.testing.assert_close(rotation_6d_to_matrix(torch.tensor([IDENTITY_6D])),
                               torch.eye(3)[None])
    with pytest.raises(ValueError, match='6 values'):
        rotation_6d_to_matrix(torch.zeros(2, 5))


def test_global_rotation_head_rotates_the_hand_frame():
    """global_rotation=True: the output is the hand-frame mesh turned by the regressed rotation,
    so changing only the rotation output rotates joints and vertices rigidly about the root."""
    torch.manual_seed(0)
    head = HandMeshHead(in_channels=16, hidden_dims=(32,), num_verts=7, global_rotation=True)
    feats = (torch.randn(2, 16, 4, 4),)
    before = head(feats)
    assert before['global_rot'].shape == (2, 3, 3)
    rot_z = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    with torch.no_grad():
        head.fc_rot.weight.zero_()
        head.fc_rot.bias.copy_(torch.tensor([0.0, 1.0, 0.0, -1.0, 0.0, 0.0]))  # columns of rot_z
    after = head(feats)
    torch.testing.assert_close(after['global_rot'], rot_z.expand(2, 3, 3))
    hand_frame = before['verts'] @ before['global_rot']  # undo the first rotation (R^-1 = R^T)
    torch.testing.assert_close(after['verts'], hand_frame @ rot_z.T, atol=1e-6, rtol=1e-4)
    head.loss(feats, _samples(2, num_verts=7))['loss_joints'].backward()
    assert head.fc_rot.weight.grad.abs().sum() > 0
    with pytest.raises(UserError, match='MANO-free'):
        HandMeshHead(in_channels=16, global_rotation=True, mano_model_path='MANO_RIGHT.pkl')


def test_aligned_losses_ignore_rotation_but_not_shape():
    """pa_* losses are 0 for a rotated copy of the ground truth (the camera-frame loss is not),
    positive for a deformed one, and their gradient reaches the prediction."""
    gt = _samples(2)
    head = HandMeshHead(in_channels=16, pool_size=2, hidden_dims=(32,),
                        loss_weights=dict(pa_joints=1.0, pa_verts=1.0, keypoints_2d=0.0))
    feats = (torch.randn(2, 16, 5, 5),)
    assert head.mlp[0].in_features == 16 * 2 * 2
    gt_joints = torch.stack([s.gt_joints for s in gt])
    gt_verts = torch.stack([s.gt_verts for s in gt])
    rot = _random_rotations(2, seed=3, dtype=torch.float32)

    def fake_forward(joints, verts):
        head.forward = lambda _feats: dict(joints=joints, verts=verts)
        return head.loss(feats, gt)

    losses = fake_forward(gt_joints @ rot, gt_verts @ rot)
    assert losses['loss_pa_joints'] < 1e-6 and losses['loss_pa_verts'] < 1e-6
    assert losses['loss_joints'] > 1e-3 and losses['loss_verts'] > 1e-3
    verts = (gt_verts * 1.3).requires_grad_()
    losses = fake_forward(gt_joints, verts)
    assert losses['loss_pa_verts'] > 1e-3
    losses['loss_pa_verts'].backward()
    assert verts.grad.abs().sum() > 0


# ---------------------------------------------------------------- MANO
def _write_synthetic_mano(path, num_verts=778, num_betas=10, as_chumpy=True):
    """A random model with the official MANO .pkl structure (chumpy arrays, sparse regressor)."""
    import scipy.sparse
    rng = np.random.default_rng(0)
    parents = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14])
    kintree = np.stack([np.where(parents < 0, 4294967295, parents), np.arange(16)])
    v_template = rng.normal(scale=0.05, size=(num_verts, 3))
    # each joint regressed from a handful of vertices
    jreg = np.zeros((16, num_verts))
    for j in range(16):
        jreg[j, rng.choice(num_verts, 4, replace=False)] = 0.25
    weights = rng.random((num_verts, 16)) ** 4
    weights /= weights.sum(1, keepdims=True)
    model = dict(v_template=v_template,
                 shapedirs=rng.normal(scale=1e-3, size=(num_verts, 3, num_betas)),
                 posedirs=rng.normal(scale=1e-3, size=(num_verts, 3, 135)),
                 J_regressor=scipy.sparse.csc_matrix(jreg), weights=weights,
                 kintree_table=kintree.astype(np.int64),
                 f=rng.integers(0, num_verts, size=(1538, 3)).astype(np.uint32),
                 hands_components=np.linalg.qr(rng.normal(size=(45, 45)))[0],
                 hands_mean=rng.normal(scale=0.1, size=45))
    if not as_chumpy:
        with open(path, 'wb') as f:
            pickle.dump(model, f, protocol=2)
        return model
    # Pickle chumpy-like objects from a fake `chumpy.ch` module, then remove the module, as
    # on a machine without chumpy.
    pkg, mod = types.ModuleType('chumpy'), types.ModuleType('chumpy.ch')

    class Ch:
        pass

    Ch.__module__, Ch.__qualname__ = 'chumpy.ch', 'Ch'
    mod.Ch = Ch
    sys.modules['chumpy'], sys.modules['chumpy.ch'] = pkg, mod
    try:
        stored = dict(model)
        for key in ('v_template', 'shapedirs', 'posedirs', 'weights'):
            obj = Ch()
            obj.__dict__.update(x=model[key], _dirty_vars=set())
            stored[key] = obj
        with open(path, 'wb') as f:
            pickle.dump(stored, f, protocol=2)
    finally:
        del sys.modules['chumpy'], sys.modules['chumpy.ch']
    return model


def test_mano_loader_and_layer(tmp_path):
    path = str(tmp_path / 'MANO_SYNTH.pkl')
    model = _write_synthetic_mano(path)
    assert 'chumpy' not in sys.modules
    params = load_mano_params(path)
    np.testing.assert_allclose(params['shapedirs'], model['shapedirs'])
    np.testing.assert_allclose(params['J_regressor'], model['J_regressor'].toarray())

    layer = MANOLayer(path, use_pca=True, num_pca_comps=6, flat_hand_mean=True)
    zeros = torch.zeros(2, 3)
    out = layer(zeros, torch.zeros(2, 6), torch.zeros(2, 10))
    assert out['verts'].shape == (2, 778, 3) and out['joints'].shape == (2, 21, 3)
    # zero pose and shape reproduce the template; joints = regressor @ template + tips
    template = torch.as_tensor(model['v_template'], dtype=torch.float32)
    assert torch.allclose(out['verts'][0], template, atol=1e-6)
    rest_joints = torch.as_tensor(model['J_regressor'].toarray(), dtype=torch.float32) @ template
    assert torch.allclose(out['mano_joints'][0], rest_joints, atol=1e-6)
    assert torch.allclose(out['joints'][0, 4], template[745], atol=1e-6)  # thumb tip
    assert torch.allclose(out['joints'][0, 1], rest_joints[13], atol=1e-6)  # thumb base
    # a global rotation rotates everything about the root joint
    rotvec = torch.tensor([[0.0, 0.0, np.pi / 2]])
    rot_out = layer(rotvec, torch.zeros(1, 6), torch.zeros(1, 10))
    rz = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    root = rest_joints[0]
    assert torch.allclose(rot_out['verts'][0], (template - root) @ rz.T + root, atol=1e-5)
    # plain-numpy pickle of the same structure loads too
    plain = str(tmp_path / 'plain.pkl')
    _write_synthetic_mano(plain, as_chumpy=False)
    assert load_mano_params(plain)['posedirs'].shape == (778, 3, 135)
    with pytest.raises(FileNotFoundError, match='MANO model file not found'):
        load_mano_params(str(tmp_path / 'missing.pkl'))


def test_mano_mode_head_forward_and_loss(tmp_path):
    path = str(tmp_path / 'MANO_SYNTH.pkl')
    _write_synthetic_mano(path)
    model = HandMeshEstimator(
        backbone=dict(type='_HandMeshTestTinyNet'),
        head=dict(type='HandMeshHead', in_channels=16, hidden_dims=(32,),
                  mano_model_path=path, mano_cfg=dict(num_pca_comps=12),
                  loss_weights=dict(edge=1.0, normal=0.1)))
    inputs = torch.randn(2, 3, 64, 64)
    out = model(inputs, mode='tensor')
    assert out['hand_pose'].shape == (2, 12) and out['betas'].shape == (2, 10)
    assert out['verts'].shape == (2, 778, 3)
    losses = model(inputs, _samples(2), mode='loss')
    assert {'loss_joints', 'loss_verts', 'loss_2d', 'loss_edge', 'loss_normal',
            'loss_betas'} <= set(losses)
    sum(losses.values()).backward()
    assert model.head.fc_out.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- estimator
def _batch(ds, indices):
    return pseudo_collate([ds[i] for i in indices])


def _mini_dataset(root, size):
    pipeline = [dict(type='LoadHandImage'),
                dict(type='HandCropResize', out_size=size, center_mode='image'),
                dict(type='PackHandMeshInputs')]
    return FreiHANDDataset(root, split='train', versions=(0,), pipeline=pipeline)


def _fastvit_t8():
    import hybridvit.models.backbones.fastvit  # noqa: F401  (registers FastViT)
    return dict(type='hybridvit.FastViT', arch='t8', out_indices=(2, 3))


def test_estimator_trains_and_predicts(mini_root):
    torch.manual_seed(0)
    ds = _mini_dataset(mini_root, 64)
    model = MODELS.build(dict(
        type='HandMeshEstimator',
        data_preprocessor=dict(type='ImgDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
        backbone=_fastvit_t8(),
        head=dict(type='HandMeshHead', in_channels=[192, 384], in_index=[0, 1],
                  hidden_dims=(256,),
                  faces=osp.join(mini_root, 'mesh_faces.json'),
                  loss_weights=dict(edge=1.0, normal=0.1))))
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    data = _batch(ds, range(8))
    history = []
    model.train()
    for _ in range(25):
        log_vars = model.train_step(data, optim)
        history.append(float(torch.as_tensor(log_vars['loss']).detach()))
    assert all(np.isfinite(history))
    assert np.mean(history[-3:]) < 0.5 * np.mean(history[:3]), history

    model.eval()
    preds = model.val_step(_batch(ds, range(4)))
    assert len(preds) == 4
    assert preds[0].pred_joints.shape == (21, 3) and preds[0].pred_verts.shape == (778, 3)
    assert preds[0].pred_keypoints_2d.shape == (21, 2)
    metric = METRICS.build(dict(type='HandMeshMetric'))
    metric.process({}, [p.to_dict() for p in preds])
    values = metric.evaluate(4)
    # the samples carry K: camera-frame predictions, so the server's unaligned numbers too
    assert set(values) == {f'freihand/{k}' for k in
                           ('mpjpe', 'mpvpe', 'auc_j', 'auc_v', 'f_5mm', 'f_15mm', 'pa_mpjpe',
                            'pa_mpvpe', 'pa_auc_j', 'pa_auc_v', 'pa_f_5mm', 'pa_f_15mm',
                            'rr_mpjpe', 'kp2d_err')}
    assert preds[0].pred_joints_cam.shape == (21, 3)
    torch.testing.assert_close(preds[0].pred_joints_cam[0], preds[0].pred_root)
    # the logged numbers are the functional metrics of exactly these predictions
    from hybridvit.evaluation.functional.hand_mesh import hand_mesh_metrics
    root = torch.stack([p.gt_root for p in preds])[:, None]  # (4, 1, 3) camera frame
    expected = hand_mesh_metrics(torch.stack([p.pred_joints_cam for p in preds]),
                                 torch.stack([p.gt_joints for p in preds]) + root,
                                 torch.stack([p.pred_verts_cam for p in preds]),
                                 torch.stack([p.gt_verts for p in preds]) + root)
    for key in ('mpjpe', 'pa_mpjpe', 'pa_mpvpe', 'f_15mm', 'pa_auc_j'):
        assert values[f'freihand/{key}'] == pytest.approx(expected[key], rel=1e-4), key
    kp_err = torch.stack([(p.pred_keypoints_2d - p.gt_keypoints_2d).norm(dim=-1).mean()
                          for p in preds]).mean()
    assert values['freihand/kp2d_err'] == pytest.approx(float(kp_err), rel=1e-5)


def test_reparameterized_estimator_predicts_the_same(mini_root):
    from hybridvit.models import utils
    ds = _mini_dataset(mini_root, 64)
    model = HandMeshEstimator(backbone=_fastvit_t8(),
                              head=dict(type='HandMeshHead', in_channels=384, in_index=-1,
                                        hidden_dims=(64,)),
                              data_preprocessor=dict(type='ImgDataPreprocessor',
                                                     mean=[120.0] * 3, std=[60.0] * 3))
    # make BN statistics non-trivial so that fusing is actually tested
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(model.data_preprocessor(_batch(ds, range(4)), True)['inputs'], mode='tensor')
    model.eval()
    data = _batch(ds, range(3))
    before = model.val_step(copy.deepcopy(data))
    fused = utils.reparameterize_model(model)
    after = fused.val_step(copy.deepcopy(data))
    for a, b in zip(before, after):
        # (0.1 mm: the camera-frame placement goes through float32 fits)
        torch.testing.assert_close(a.pred_joints, b.pred_joints, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(a.pred_verts, b.pred_verts, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize('name', ['hand-mesh_fastvit-ma36_freihand-224.py',
                                  'hand-mesh_fastvit-sa12_freihand-224.py',
                                  'hand-mesh_mobilevit-s_freihand-224.py',
                                  'hand-mesh_fastvit-t8_mini-freihand-128.py'])
def test_configs_parse(name):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    assert cfg.default_scope == 'hybridvit'
    assert cfg.model.type == 'HandMeshEstimator'
    assert cfg.val_evaluator.type == 'HandMeshMetric'
    assert cfg.train_dataloader.dataset.type == 'FreiHANDDataset'
    if 'mini' in name:
        assert cfg.model.backbone.init_cfg is None
        assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    else:
        assert cfg.model.backbone.init_cfg.checkpoint.startswith('https://')


@pytest.mark.parametrize('name', ['hand-mesh_fastvit-ma36_freihand-224.py',
                                  'hand-mesh_fastvit-sa12_freihand-224.py',
                                  'hand-mesh_mobilevit-s_freihand-224.py'])
def test_full_configs_build_the_keypoint_branch_head(name):
    """The full-FreiHAND configs wire the stride-8/16/32 maps into the keypoint branch."""
    from mmengine.config import Config
    import hybridvit.models.backbones  # noqa: F401  (registers the backbones)
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    cfg.model.backbone.init_cfg = None  # no download
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 128, 128), mode='tensor')
    assert out['verts'].shape == (1, 778, 3) and out['keypoints_uv'].shape == (1, 21, 2)
    assert out['keypoints_heatmap'].shape[-2:] == (16, 16)  # stride 8
    torch.testing.assert_close(torch.linalg.det(out['global_rot']), torch.ones(1))


def test_mini_config_builds_model(mini_root):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'hand-mesh_fastvit-t8_mini-freihand-128.py'))
    import hybridvit.models.backbones.fastvit  # noqa: F401  (registers FastViT)
    cfg.model.head.faces = osp.join(mini_root, 'mesh_faces.json')
    model = MODELS.build(cfg.model)
    out = model(torch.zeros(1, 3, 128, 128), mode='tensor')
    assert out['verts'].shape == (1, 778, 3)


def test_runner_trains_and_tests_mini_config(mini_root, tmp_path):
    """The mini config runs through mmengine's Runner: a few iterations, val, test + pred.json."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    import hybridvit.models.backbones.fastvit  # noqa: F401  (registers FastViT)
    import hybridvit.datasets.freihand  # noqa: F401  (until hybridvit.datasets imports it)
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'hand-mesh_fastvit-t8_mini-freihand-128.py'))
    cfg.work_dir = str(tmp_path / 'work')
    cfg.model.head.faces = osp.join(mini_root, 'mesh_faces.json')
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[split]
        loader.batch_size, loader.num_workers, loader.persistent_workers = 4, 0, False
        loader.dataset.data_root = mini_root
        for t in loader.dataset.pipeline:
            if t.type == 'HandCropResize':
                t.out_size = 64
        if split != 'test_dataloader':
            loader.dataset.num_val = 2
    cfg.train_dataloader.dataset.versions = (0, )
    cfg.train_cfg.max_iters, cfg.train_cfg.val_interval = 3, 3
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.default_hooks.checkpoint.interval = 3
    cfg.default_hooks.logger.interval = 1
    cfg.test_evaluator.out_dir = str(tmp_path / 'eval')  # created by the metric
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    import json
    xyz, verts = json.load(open(tmp_path / 'eval' / 'pred.json'))
    assert len(xyz) == len(verts) == 2 and np.array(verts).shape == (2, 778, 3)
    # camera-frame submission: the server's metrics in scores.txt (cm) = ours (mm) / 10
    scores = dict(line.split(': ') for line in
                  (tmp_path / 'eval' / 'scores.txt').read_text().splitlines())
    assert float(scores['xyz_al_mean3d']) == pytest.approx(metrics['freihand/pa_mpjpe'] / 10,
                                                           abs=1e-6)
    assert float(scores['xyz_mean3d']) == pytest.approx(metrics['freihand/mpjpe'] / 10, abs=1e-6)
    assert float(scores['f_al_score_15']) == pytest.approx(metrics['freihand/pa_f_15mm'],
                                                           abs=1e-6)
    # written joints = root-relative prediction + the recovered root (no ground truth used)
    assert np.array(xyz).shape == (2, 21, 3) and (np.array(xyz)[..., 2] > 0.05).all()
