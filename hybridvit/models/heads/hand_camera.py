"""From the head's weak-perspective camera to camera-frame coordinates (a FreiHAND submission).

The head predicts root-relative joints / vertices in metres and a weak-perspective camera
``(s, tx, ty)`` with ``uv_norm = s * xy + (tx, ty)`` in ``[-1, 1]`` across the input crop, so the
root joint projects to ``(tx, ty)`` and ``s`` is the crop's scale in normalised units per metre.
The FreiHAND server scores camera-frame coordinates, so the absolute root must be recovered.
We do it as the official toolbox recovers its own root from the same two quantities
(https://github.com/lmb-freiburg/freihand, ``utils/model.py``: ``get_focal_pp``,
``backproject_ortho``, ``recover_root``): with ``uv_root`` the root's pixel position,
``scale`` the orthographic scale in pixels per metre and ``focal = (fx + fy) / 2``, ``pp`` the
principal point of the image's ``K``,

    xyz_root = [uv_root - pp, focal] / scale,

i.e. depth ``focal / scale`` and the root on the ray through ``uv_root``. FreiHAND gives ``K``
(``evaluation_K.json``) and the length of one reference bone (``evaluation_scale.json``:
``|xyz[9] - xyz[10]|``, metres) for every evaluation image. A weak-perspective camera cannot tell
a small near hand from a large far one, so the predicted hand is first rescaled to that bone
length (the scale ``s`` in pixels per metre shrinks by the same factor, which moves the root in
depth accordingly).

For a weak-perspective read-out of a ``keypoint_branch`` head (one whose skeleton is not
FreiHAND's, so it cannot be lifted as below) the scale used for the depth is not the
least-squares one that places the skeleton in 2D: regressing the 2D keypoints on the predicted
joints shrinks that scale by the joints' error, and the depth grows by the same factor. The ratio
of the RMS spreads of the 2.5D keypoints ``(u, v, d)`` and of the joints is used instead
(:func:`spread_ratio`): symmetric in the two sets, and independent of the fitted rotation.

With a ``keypoint_branch`` and ``K`` the head does better than a weak-perspective camera: it lifts
its 2.5D keypoints (pixel positions and root-relative depths) with the perspective camera, up to
the unknown root depth (:func:`lift_keypoints`, after Iqbal et al., "Hand Pose Estimation via
Latent 2.5D Heatmap Regression", ECCV 2018, who also read the root depth from a known bone
length), and reads that depth from the skeleton's bone lengths (:func:`depth_from_bones`): the
reference bone times the training set's mean bone proportions, or the predicted hand's own bones.
All 20 bones take part, so one badly predicted bone does not set the depth.

The crop is a 2D similarity of the image (``K_crop = A @ K``, pixel positions and the scale
multiplied by ``A``'s zoom): the formula gives the same ``xyz_root`` in crop pixels with
``K_crop`` as in image pixels with ``K``, so the crop's ``K`` is used directly.
"""
from typing import Dict, Optional, Tuple

import torch

__all__ = ['HAND_BONES', 'bone_lengths', 'depth_from_bones', 'fit_weak_perspective',
           'lift_keypoints', 'recover_root', 'spread_ratio', 'weak_perspective_to_camera']

#: FreiHAND's reference bone (``evaluation_scale.json``): middle finger MCP -> PIP.
REF_BONE = (9, 10)

#: The 20 bones (parent, child) of FreiHAND's 21-joint skeleton: wrist (0) to each finger's base,
#: then along the finger (thumb 1-4, index 5-8, middle 9-12, ring 13-16, little 17-20).
HAND_BONES = tuple((1 + 4 * f + k - 1 if k else 0, 1 + 4 * f + k)
                   for f in range(5) for k in range(4))


def bone_lengths(joints: torch.Tensor) -> torch.Tensor:
    """(B, 21, 3) joints -> (B, 20) lengths of :data:`HAND_BONES`."""
    parent, child = zip(*HAND_BONES)
    return (joints[:, list(child)] - joints[:, list(parent)]).norm(dim=-1)


def lift_keypoints(uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Back-project 2.5D keypoints through the perspective camera, up to the root depth.

    Args:
        uv (torch.Tensor): (B, J, 2) pixel positions.
        depth (torch.Tensor): (B, J) root-relative depths in pixels, i.e. ``(z - z_root)``
            times the pixels per metre at the root, ``focal / z_root``.
        K (torch.Tensor): (B, 3, 3) intrinsics of those pixels.

    Returns:
        torch.Tensor: (B, J, 3) the joints of a root at depth 1: the camera-frame joints are
        ``z_root`` times these (joint ``j`` at depth ``z_root * (1 + depth_j / focal)`` on the
        ray through ``uv_j``).
    """
    focal = 0.5 * (K[:, 0, 0] + K[:, 1, 1])  # (B,)
    rays = torch.cat([uv, torch.ones_like(uv[..., :1])], -1) @ torch.linalg.inv(K).transpose(
        1, 2)  # (B, J, 3) = K^-1 [u, v, 1], z = 1
    return rays * (1 + depth / focal[:, None])[..., None]


def depth_from_bones(points: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B,) the root depth at which the unit-depth skeleton ``points`` (B, 21, 3) of
    :func:`lift_keypoints` has the bone ``lengths`` (B, 20, metres): the ratio of the two sets'
    root-sum-square bone lengths (symmetric, like :func:`spread_ratio`; the long bones, drawn
    most precisely, weigh most)."""
    return lengths.norm(dim=1) / bone_lengths(points).norm(dim=1).clamp(min=1e-12)


def fit_weak_perspective(xy: torch.Tensor, uv: torch.Tensor,
                         scale: Optional[torch.Tensor] = None
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Least-squares weak-perspective camera ``uv ~ s * xy + t`` per sample.

    Args:
        xy (torch.Tensor): (B, J, 2) camera-frame x, y of the joints (metres).
        uv (torch.Tensor): (B, J, 2) their image positions (any units, e.g. ``[-1, 1]``).
        scale (torch.Tensor, optional): (B,) a given ``s`` (then only ``t`` is fitted).

    Returns:
        tuple: scale ``s`` (B,) and shift ``t`` (B, 2).
    """
    mean_xy, mean_uv = xy.mean(1, keepdim=True), uv.mean(1, keepdim=True)  # (B, 1, 2)
    if scale is None:
        xy_c, uv_c = xy - mean_xy, uv - mean_uv
        scale = (xy_c * uv_c).sum((1, 2)) / xy_c.pow(2).sum((1, 2)).clamp(min=1e-12)  # (B,)
    return scale, (mean_uv - scale[:, None, None] * mean_xy)[:, 0]


def spread_ratio(points: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) ratio of the RMS distances from the centroid, ``target`` over ``points`` (both
    (B, J, D)): the scale of a similarity between them that treats both sets alike (Horn's
    symmetric scale, J. Opt. Soc. Am. A 4(4), 1987). A least-squares scale, by contrast, shrinks
    with the error of the set it is fitted from (regression dilution)."""
    def spread(p):
        return (p - p.mean(1, keepdim=True)).pow(2).sum((1, 2))  # (B,)
    return (spread(target) / spread(points).clamp(min=1e-12)).sqrt()


def recover_root(uv_root: torch.Tensor, scale: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """The official ``recover_root``: root joint (B, 3) from its pixel position (B, 2), the
    orthographic scale (B,) in pixels per metre and the intrinsics (B, 3, 3)."""
    focal = 0.5 * (K[:, 0, 0] + K[:, 1, 1])  # (B,)
    pp = K[:, :2, 2]  # (B, 2)
    xyz = torch.cat([uv_root - pp, focal[:, None]], dim=1)  # (B, 3)
    return xyz / scale[:, None]


def weak_perspective_to_camera(joints: torch.Tensor, verts: torch.Tensor, cam: torch.Tensor,
                               K: torch.Tensor, img_size: Tuple[int, int],
                               ref_bone: Optional[torch.Tensor] = None,
                               root_depth: Optional[torch.Tensor] = None
                               ) -> Dict[str, torch.Tensor]:
    """Camera-frame joints / vertices from root-relative ones and the weak-perspective camera.

    Args:
        joints: (B, J, 3) root-relative joints (metres).
        verts: (B, V, 3) root-relative vertices (metres).
        cam: (B, 3) ``(s, tx, ty)`` in normalised crop units (``[-1, 1]`` across the crop).
        K: (B, 3, 3) intrinsics of the crop (pixels).
        img_size: crop ``(h, w)`` in pixels.
        ref_bone: (B,) known length of joints 9 -> 10 in metres (FreiHAND's
            ``*_scale.json``); entries <= 0 or ``None``: keep the predicted size.
        root_depth: (B,) a given root depth (metres): the root is then on the ray through the
            root's pixel at that depth (instead of ``focal`` over the rescaled camera scale).

    Returns:
        dict: ``joints`` (B, J, 3) and ``verts`` (B, V, 3) in the camera frame, ``root``
        (B, 3), ``uv_root`` (B, 2) crop pixels, ``size_factor`` (B,) applied to the hand.
    """
    h, w = img_size
    half = cam.new_tensor([w, h]) / 2  # (2,) pixels per normalised unit
    uv_root = (cam[:, 1:] + 1) * half  # (B, 2) crop pixels
    scale_px = cam[:, 0] * half.mean()  # (B,) crop pixels per metre
    factor = torch.ones_like(scale_px)
    if ref_bone is not None:
        pred_bone = (joints[:, REF_BONE[1]] - joints[:, REF_BONE[0]]).norm(dim=-1)  # (B,)
        valid = (ref_bone > 0) & (pred_bone > 1e-6)
        factor = torch.where(valid, ref_bone / pred_bone.clamp(min=1e-6), factor)
    if root_depth is not None:  # the scale that puts the root at that depth
        scale_px = 0.5 * (K[:, 0, 0] + K[:, 1, 1]) * factor / root_depth
    root = recover_root(uv_root, scale_px / factor, K)  # (B, 3)
    joints = joints * factor[:, None, None] + root[:, None]
    verts = verts * factor[:, None, None] + root[:, None]
    return dict(joints=joints, verts=verts, root=root, uv_root=uv_root, size_factor=factor)
