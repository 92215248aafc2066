"""Hand-mesh inference on a full image: crop the hand box, run the estimator, map back."""
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from mmengine.structures import BaseDataElement

from hybridvit.utils.cli import UserError

__all__ = ['inference_hand_mesh']


def _input_size(cfg) -> int:
    for step in cfg.test_dataloader.dataset.pipeline:
        if str(step.get('type', '')).endswith('HandCropResize'):
            return int(step['out_size'])
    raise UserError(f'{cfg.filename}: test pipeline has no HandCropResize to take the input '
                    'size from')


@torch.no_grad()
def inference_hand_mesh(model, img_bgr: np.ndarray,
                        bbox: Optional[Sequence[float]] = None) -> BaseDataElement:
    """Predict the hand in ``bbox`` (x1, y1, x2, y2; default: the whole image).

    Returns a data sample with ``pred_joints`` / ``pred_verts`` (root-relative, metres, numpy),
    ``pred_keypoints_2d`` / ``pred_verts_2d`` (pixels of the full image, weak perspective) and
    ``pred_verts_cam`` (vertices for the mesh file).
    """
    h, w = img_bgr.shape[:2]
    x1, y1, x2, y2 = bbox if bbox is not None else (0, 0, w, h)
    if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
        raise UserError(f'bbox ({x1}, {y1}, {x2}, {y2}) is not inside the {w}x{h} image '
                        '(need 0 <= x1 < x2 <= width, 0 <= y1 < y2 <= height)')
    size = _input_size(model.cfg)
    # square crop around the box centre, as the training crops are square
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)
    scale = size / side
    affine = np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]],
                      dtype=np.float64)
    crop = cv2.warpAffine(img_bgr, affine, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)
    # (H, W, 3) BGR uint8 -> (3, H, W) tensor, as PackHandMeshInputs does
    inputs = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))
    data = model.data_preprocessor(dict(inputs=[inputs]), False)
    head_out = model(data['inputs'], mode='tensor')  # one forward: joints, verts, cam, 2D

    def to_image(points_norm: np.ndarray) -> np.ndarray:
        """[-1, 1] crop coordinates -> pixels of the full image (undo the crop affine)."""
        points_crop = (points_norm + 1) / 2 * size
        return (points_crop - affine[:, 2]) / scale

    cam = head_out['cam'][0].cpu().numpy()  # (s, tx, ty) in normalised crop coordinates
    joints = head_out['joints'][0].cpu().numpy()
    verts = head_out['verts'][0].cpu().numpy()
    verts_norm = verts[:, :2] * cam[0] + cam[1:]  # (V, 2) weak perspective, as the head does
    out = BaseDataElement(metainfo=dict(bbox=(x1, y1, x2, y2), crop_size=size))
    out.pred_joints = joints
    out.pred_verts = verts
    out.pred_keypoints_2d = to_image(head_out['keypoints_2d_norm'][0].cpu().numpy())
    out.pred_verts_2d = to_image(verts_norm)
    out.pred_verts_cam = verts
    return out
