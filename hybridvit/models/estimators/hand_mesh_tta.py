"""Rotation test-time augmentation for :class:`HandMeshEstimator` (``tools/test.py --tta``).

The ``tta_pipeline`` (mmcv's ``TestTimeAug``) gives each test image as several views rotated in
the image plane by :class:`~hybridvit.datasets.transforms.HandRotate`; that transform rotates the
image with ``H = K @ R_z @ K^-1`` and the 3D labels by ``R_z``, so each view's prediction maps
back to the unrotated crop exactly: 2D points (pixels) through ``H^-1``, root-relative 3D points
by ``R_z^-1``, root-relative depths unchanged. Views cropped differently (another
``HandCropResize`` box: ``K_k = A_k @ K``) map back as well: pixels by ``K_0 @ R_z^-1 @ K_k^-1``,
depths and scales by the zoom ``f_0 / f_k``. Shape and placement are merged separately: the
hand's shape is the mean of the views' hands, each first rotated onto the first view's (a mean
of differently oriented hands would shrink it), and a ``keypoint_branch`` head places that shape
on the mean of the views' 2.5D keypoints with its own fit (other heads: rotated onto the views'
mean hand, the camera averaged). The head then recovers the camera frame from the merged hand
at the mean of the views' own root depths (the merged keypoints' spread shrinks where the views
disagree, which would push the hand away).
"""
import math
from typing import List, Sequence

import torch
from mmengine.model import BaseTTAModel
from mmengine.structures import BaseDataElement

from hybridvit.models.heads.procrustes import similarity_fit
from hybridvit.registry import MODELS
from hybridvit.utils.errors import UserError

__all__ = ['HandMeshTTAModel']


def _rotation_z(angles_deg: torch.Tensor) -> torch.Tensor:
    """(...) angles in degrees -> (..., 3, 3) rotations about the camera z axis, the matrices
    of :meth:`HandRandomRotate.rotate`."""
    theta = angles_deg * (math.pi / 180)
    c, s = torch.cos(theta), torch.sin(theta)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], -1).unflatten(-1, (3, 3))


def _map_points(mat: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply (..., 3, 3) affine maps (last row 0, 0, 1) to (..., P, 2) points."""
    return points @ mat[..., :2, :2].transpose(-1, -2) + mat[..., None, :2, 2]


@MODELS.register_module()
class HandMeshTTAModel(BaseTTAModel):
    """Average a hand mesh estimator's predictions over in-plane rotated views of each crop.

    FreiHAND (Zimmermann et al., ICCV 2019, https://arxiv.org/abs/1909.04349) shows hands in any
    in-plane orientation; the views' errors are partly independent, so their average is closer to
    the truth (docs/hand_mesh.md gives the numbers). Each view must carry ``rotation`` (degrees,
    set by ``HandRotate``) in its metainfo and the crop's intrinsics ``K``; the first view must be
    the unrotated crop, whose labels and metainfo the merged sample keeps.

    Args:
        module (dict | nn.Module): the :class:`HandMeshEstimator` (config or model).
        data_preprocessor (dict, optional): overrides the module's data preprocessor.
    """

    def merge_preds(self, data_samples_list: Sequence[Sequence[BaseDataElement]]
                    ) -> List[BaseDataElement]:
        """``data_samples_list[i][k]``: the prediction for view ``k`` of sample ``i`` ->
        one merged sample per image (:meth:`HandMeshHead.pack_predictions` of the averages)."""
        head = self.module.head
        views = [list(v) for v in data_samples_list]
        first = views[0][0]
        for sample_views in views:
            if float(sample_views[0].get('rotation', 0.0)) % 360 != 0:
                raise UserError(
                    'tta_pipeline: the first view must be the unrotated crop (HandRotate(angle=0))'
                    f', got rotation {sample_views[0].rotation} for '
                    f"{sample_views[0].get('img_path', 'a test sample')}")
            for ds in sample_views:
                if 'K' not in ds or 'img_shape' not in ds or 'pred_root' not in ds:
                    raise UserError('HandMeshTTAModel: every view needs the crop intrinsics K and '
                                    'img_shape (PackHandMeshInputs provides them) and the '
                                    "head's camera-frame prediction pred_root")

        def stack(key):  # (B, N, ...) over samples and views
            return torch.stack([torch.stack([torch.as_tensor(ds.get(key)) for ds in v])
                                for v in views]).float()

        rot = _rotation_z(torch.tensor([[float(ds.get('rotation', 0.0)) for ds in v]
                                        for v in views]))  # (B, N, 3, 3)
        K = stack('K')  # (B, N, 3, 3) pixels of each view's crop
        # view pixels -> first view's pixels: K_0 R^-1 K_k^-1 (H^-1 when the crops agree)
        back = K[:, :1] @ rot.transpose(-1, -2) @ torch.linalg.inv(K)  # (B, N, 3, 3)
        zoom = (K[:, :1, 0, 0] / K[..., 0, 0])  # (B, N) first view's pixels per view pixel
        h, w = first.img_shape[:2]
        half = K.new_tensor([w, h]) / 2  # pixels per normalised unit

        def mean_2d_norm(key):  # pixels of the views -> normalised units of the first view
            return (_map_points(back, stack(key)).mean(1)) / half - 1

        # each view's root-relative hand in the unrotated frame: j_rotated = j @ R^T -> j @ R
        # (the regressed hand's own joints when the head also fused them with its keypoints)
        joints_key = 'pred_mesh_joints' if 'pred_mesh_joints' in first else 'pred_joints'
        hands = torch.cat([stack(joints_key), stack('pred_verts')], 2) @ rot  # (B, N, P, 3)
        shape = self._mean_shape(hands)  # (B, P, 3)
        num_joints = views[0][0].pred_joints.shape[0]
        keypoints = 'pred_keypoints_uv' in first
        if keypoints:  # orientation: the head's fit to the merged keypoints
            uv = mean_2d_norm('pred_keypoints_uv')  # (B, J, 2)
            depth = (stack('pred_keypoints_depth') * zoom[..., None]).mean(1) / half.mean()
            pred = head.fit_to_keypoints((uv, depth, None), shape)
        else:  # orientation: the views' mean hand; the root projects to the camera's shift
            rot_mean, _, _ = similarity_fit(shape, hands.mean(1))
            shape = shape @ rot_mean.transpose(1, 2)
            shape = shape - shape[:, :1]  # root-relative
            scale = (stack('pred_cam')[..., 0] * zoom).mean(1)  # (B,)
            shift = mean_2d_norm('pred_keypoints_2d')[:, 0]  # (B, 2) root joint
            joints = shape[:, :num_joints]
            pred = dict(joints=joints, verts=shape[:, num_joints:],
                        cam=torch.cat([scale[:, None], shift], dim=1),
                        keypoints_2d_norm=joints[..., :2] * scale[:, None, None] + shift[:, None])
        # the depth: the mean of the views' own root depths (a rotation about the optical axis
        # or another crop zoom leaves it unchanged); the merged keypoints' spread is smaller
        # than each view's where the views disagree, which would push the hand away
        pred['root_depth'] = stack('pred_root')[..., 2].mean(1)  # (B,) metres
        device = views[0][0].pred_joints.device
        pred = {k: v.to(device) for k, v in pred.items() if v is not None}
        bases = []
        for sample_views in views:
            base = sample_views[0].clone()
            for key in [k for k in base.keys() if k.startswith('pred_')]:
                base.pop(key)
            bases.append(base)
        return head.pack_predictions(pred, bases)

    @staticmethod
    def _mean_shape(hands: torch.Tensor) -> torch.Tensor:
        """(B, N, P, 3) views of each hand -> (B, P, 3) their mean after rotating each view onto
        the first (a proper-rotation fit over all points): averaging views whose orientations
        disagree would shrink the hand instead."""
        source = hands.flatten(0, 1)  # (B * N, P, 3)
        target = hands[:, :1].expand_as(hands).flatten(0, 1)
        rot, _, _ = similarity_fit(source, target)  # (B * N, 3, 3), applied as R @ p
        return (source @ rot.transpose(1, 2)).view_as(hands).mean(1)
