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

With a ``keypoint_branch`` head the scale used for the depth is not the least-squares one that
places the skeleton in 2D: regressing the 2D keypoints on the predicted joints shrinks that scale
by the joints' error, and the depth grows by the same factor. The head uses the ratio of the RMS
spreads of its 2.5D keypoints ``(u, v, d)`` and of its joints instead (:func:`spread_ratio`):
symmetric in the two sets, and independent of the fitted rotation (docs/hand_mesh.md gives the
numbers).

The crop is a 2D similarity of the image (``K_crop = A @ K``, pixel positions and the scale
multiplied by ``A``'s zoom): the formula gives the same ``xyz_root`` in crop pixels with
``K_crop`` as in image pixels with ``K``, so the crop's ``K`` is used directly.
"""
from typing import Dict, Optional, Tuple

import torch

__all__ = ['fit_weak_perspective', 'recover_root', 'spread_ratio',
           'weak_perspective_to_camera']

#: FreiHAND's reference bone (``evaluation_scale.json``): middle finger MCP -> PIP.
REF_BONE = (9, 10)


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
                               ref_bone: Optional[torch.Tensor] = None
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
    root = recover_root(uv_root, scale_px / factor, K)  # (B, 3)
    joints = joints * factor[:, None, None] + root[:, None]
    verts = verts * factor[:, None, None] + root[:, None]
    return dict(joints=joints, verts=verts, root=root, uv_root=uv_root, size_factor=factor)
