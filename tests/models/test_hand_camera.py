"""Camera-frame predictions from the weak-perspective camera (FreiHAND's ``recover_root``)."""
import numpy as np
import torch

from hybridvit.models.heads.hand_camera import (HAND_BONES, bone_lengths, depth_from_bones,
                                               fit_weak_perspective, lift_keypoints,
                                               recover_root, spread_ratio,
                                               weak_perspective_to_camera)


def _scene():
    rng = np.random.default_rng(0)
    joints = rng.normal(scale=0.03, size=(2, 21, 3)) + np.array([[0.02, -0.03, 0.6]])
    joints[1] += np.array([-0.05, 0.02, 0.15])
    # fx == fy: the official formula uses their mean (FreiHAND cameras have fx ~ fy)
    K = np.array([[[290.0, 0, 62.0], [0, 290.0, 66.0], [0, 0, 1]]] * 2)
    return torch.tensor(joints), torch.tensor(K)


def test_recover_root_is_the_official_formula():
    joints, K = _scene()
    root = joints[:, 0]
    uv = (K @ root[..., None])[..., 0]
    uv = uv[:, :2] / uv[:, 2:]
    focal = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
    # the ortho scale the official mano entries hold: focal / z_root (pixels per metre)
    torch.testing.assert_close(recover_root(uv, focal / root[:, 2], K), root)


def test_camera_consistent_with_the_image_gives_back_the_root():
    joints, K = _scene()
    size = 128
    root = joints[:, :1]
    uv = (K @ root.transpose(1, 2)).transpose(1, 2)[:, 0]  # (B, 3)
    uv = uv[:, :2] / uv[:, 2:]
    fx = K[:, 0, 0]
    # weak perspective at the root depth: s = 2 f / (W z), t = root position in [-1, 1]
    cam = torch.cat([(2 * 0.5 * (fx + K[:, 1, 1]) / (size * root[:, 0, 2]))[:, None],
                     uv / size * 2 - 1], dim=1)
    rel = joints - root
    out = weak_perspective_to_camera(rel, rel, cam, K, (size, size))
    torch.testing.assert_close(out['root'], root[:, 0])
    torch.testing.assert_close(out['joints'], joints)
    # a hand predicted at half size projects the same with twice the scale: the reference bone
    # restores both its size and its depth
    bone = (joints[:, 10] - joints[:, 9]).norm(dim=-1)
    half = weak_perspective_to_camera(rel / 2, rel / 2, cam * torch.tensor([2.0, 1, 1]), K,
                                      (size, size), ref_bone=bone)
    torch.testing.assert_close(half['joints'], joints)
    torch.testing.assert_close(half['size_factor'], torch.full((2,), 2.0, dtype=torch.float64))
    # without the reference it stays half size, at half the depth
    naive = weak_perspective_to_camera(rel / 2, rel / 2, cam * torch.tensor([2.0, 1, 1]), K,
                                       (size, size))
    torch.testing.assert_close(naive['root'][:, 2], root[:, 0, 2] / 2)
    # a given root depth puts the root on the same ray at that depth
    far = weak_perspective_to_camera(rel, rel, cam, K, (size, size),
                                     root_depth=2 * root[:, 0, 2])
    torch.testing.assert_close(far['root'], 2 * root[:, 0])


def test_hand_bones_form_the_freihand_tree():
    """20 bones, every joint but the wrist the child of exactly one, each finger a chain from
    the wrist (thumb 1-4, ..., little 17-20)."""
    assert len(HAND_BONES) == 20
    assert sorted(child for _, child in HAND_BONES) == list(range(1, 21))
    for finger in range(5):
        base = 1 + 4 * finger
        assert [b for b in HAND_BONES if b[1] in range(base, base + 4)] == [
            (0, base), (base, base + 1), (base + 1, base + 2), (base + 2, base + 3)]


def test_lifted_keypoints_at_the_bone_length_depth_give_back_the_hand():
    """Pixels and root-relative depths in pixels (times focal / z_root) of a hand seen by a
    perspective camera (fx != fy) lift back to it exactly at the depth its bone lengths give."""
    joints, K = _scene()
    K[:, 1, 1] = 310.0
    root_z = joints[:, :1, 2]  # (B, 1)
    uvw = joints @ K.transpose(1, 2)
    uv = uvw[..., :2] / uvw[..., 2:]
    focal = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
    depth = focal[:, None] * (joints[..., 2] - root_z) / root_z
    points = lift_keypoints(uv, depth, K)
    torch.testing.assert_close(points[:, 0, 2], torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(points * root_z[..., None], joints)
    z = depth_from_bones(points, bone_lengths(joints))
    torch.testing.assert_close(z, root_z[:, 0])
    # bones 10 % too long put the hand 10 % further away
    torch.testing.assert_close(depth_from_bones(points, 1.1 * bone_lengths(joints)),
                               1.1 * root_z[:, 0])


def test_spread_ratio_is_the_similarity_scale_and_resists_noise_in_the_source():
    """Exact for a similarity copy; with the same relative noise in both sets the symmetric
    scale stays near the true one while the least-squares scale shrinks (regression dilution:
    by var / (var + noise) = 1 / 1.25 here)."""
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(3, 4000, 3, generator=gen, dtype=torch.float64)
    rot = torch.linalg.qr(torch.randn(3, 3, 3, generator=gen, dtype=torch.float64))[0]
    scale = torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64)
    target = scale[:, None, None] * points @ rot.transpose(1, 2) + 3.0
    torch.testing.assert_close(spread_ratio(points, target), scale)
    noisy_points = points + 0.5 * torch.randn(points.shape, generator=gen, dtype=torch.float64)
    noisy_target = target + 0.5 * scale[:, None, None] * torch.randn(
        points.shape, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(spread_ratio(noisy_points, noisy_target), scale, rtol=0.03,
                               atol=0)
    # 2D, no rotation (a weak-perspective camera): least squares on the noisy source shrinks
    xy, uv = noisy_points[..., :2], (scale[:, None, None] * points[..., :2] + 0.1)
    ls_scale, shift = fit_weak_perspective(xy, uv)
    torch.testing.assert_close(ls_scale / scale, torch.full_like(scale, 0.8), rtol=0.03, atol=0)
    given, shift_given = fit_weak_perspective(xy, uv, scale=scale)
    assert given is scale
    torch.testing.assert_close(shift_given, (uv - scale[:, None, None] * xy).mean(1))
