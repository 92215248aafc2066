"""Detection post-processing ops that run eagerly AND export to standard ONNX (``ai.onnx``) ops.

Each op computes in PyTorch exactly what mmdet/mmcv compute (mmcv's ``nms`` and ``roi_align``
kernels, mmdet's mask pasting) and, when traced by ``torch.onnx.export(..., dynamo=False)``,
emits one standard ONNX node instead of mmcv's custom-domain ones:

* :func:`nms_keep` -> ``NonMaxSuppression`` (opset 10+), one class, no score threshold, the
  kept indices in descending score order, as mmcv's ``nms`` returns them;
* :func:`roi_align` -> ``RoiAlign`` (opset 16, ``coordinate_transformation_mode='half_pixel'``
  for ``aligned=True``, i.e. Detectron2's ROIAlignV2 that mmcv implements);
* :func:`batched_nms_keep`: mmcv's ``batched_nms`` (per-group NMS by coordinate offsets);
* :func:`paste_masks`: mmdet's ``_do_paste_mask`` (``grid_sample`` of the 28x28 RoI mask into the
  image, bilinear, zero padding, ``align_corners=False``) written as two ``MatMul`` s with the
  bilinear weights: bilinear sampling on a separable grid is separable, so the (N, H, W, 2)
  sampling grid that ``GridSample`` would need is never built.

The same facts are what MMDeploy's ONNX Runtime rewrites rely on
(https://github.com/open-mmlab/mmdeploy, ``mmdeploy/mmcv/ops/nms.py``, ``roi_align.py``,
``mmdeploy/codebase/mmdet``); MMDeploy itself does not install on this torch / mmcv stack.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ['size_of', 'topk_count', 'sorted_topk', 'nms_keep', 'batched_nms_keep', 'roi_align',
           'paste_masks', 'clip_boxes', 'gather_rows', 'nonzero_1d', 'min_size_keep']


def size_of(x: Tensor, dim: int) -> Tensor:
    """``x.shape[dim]`` as a 0-dim int64 tensor (a traced value in an export, not a constant)."""
    return torch._shape_as_tensor(x)[dim]


def topk_count(n: Tensor, k: int) -> Tensor:
    """``min(n, k)`` as a tensor, so that ``topk`` keeps following the input size."""
    return torch.clamp(n, max=k)


def sorted_topk(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """The ``k`` highest of 1-D ``scores`` (all if fewer), as mmdet takes them:
    ``scores.sort(descending=True)`` then the first ``k`` (so equal scores keep mmdet's order;
    in ONNX a ``TopK`` over the whole length, then a ``Slice`` to the traced ``min(n, k)``)."""
    ranked, inds = scores.sort(descending=True)
    count = topk_count(size_of(scores, 0), k)
    return ranked[:count], inds[:count]


# ----------------------------------------------------------------------------- NMS
class _NMSKeep(torch.autograd.Function):
    """Indices kept by NMS of one group of boxes, highest score first, at most ``max_num``."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, iou_threshold: float,
                max_num: int) -> Tensor:
        from mmcv.ops import nms
        if boxes.shape[0] == 0:
            return boxes.new_zeros((0, ), dtype=torch.long)
        _, keep = nms(boxes, scores, iou_threshold)  # sorted by descending score
        return keep[:max_num]

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold: float, max_num: int):
        boxes3 = g.op('Unsqueeze', boxes, g.op('Constant', value_t=torch.tensor([0])))
        scores3 = g.op('Unsqueeze', scores, g.op('Constant', value_t=torch.tensor([0, 1])))
        selected = g.op('NonMaxSuppression', boxes3, scores3,
                        g.op('Constant', value_t=torch.tensor([max_num], dtype=torch.long)),
                        g.op('Constant', value_t=torch.tensor([iou_threshold],
                                                              dtype=torch.float)))
        # selected: (K, 3) = (batch, class, box); keep the box column
        col = g.op('Gather', selected, g.op('Constant', value_t=torch.tensor(2)), axis_i=1)
        return col


def nms_keep(boxes: Tensor, scores: Tensor, iou_threshold: float, max_num: int) -> Tensor:
    """mmcv ``nms`` (IoU > threshold suppresses, no ``+1`` in box sizes) keep indices.

    Args:
        boxes: ``(N, 4)`` x1, y1, x2, y2.
        scores: ``(N,)``.
        iou_threshold: IoU above which the lower-scored box is dropped.
        max_num: at most this many indices are returned.

    Returns:
        ``(K,)`` int64 indices into ``boxes``, by descending score.
    """
    return _NMSKeep.apply(boxes, scores, float(iou_threshold), int(max_num))


def batched_nms_keep(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float,
                     max_num: int, class_agnostic: bool = False) -> Tensor:
    """mmcv ``batched_nms``: NMS within each group (class / level) via coordinate offsets.

    mmcv shifts each group's boxes by ``group * (max coordinate + 1)`` so that boxes of
    different groups never overlap and one NMS suffices; the same is done here (boxes are
    clipped to the image, so their maximum is >= 0 and the appended 0 changes nothing; it keeps
    ``ReduceMax`` well defined when there are no boxes). mmcv switches to one NMS per group above
    ``split_thr`` (10000) boxes: the kept set is the same.
    """
    if class_agnostic:
        return nms_keep(boxes, scores, iou_threshold, max_num)
    max_coordinate = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = groups.to(boxes) * (max_coordinate + 1)
    return nms_keep(boxes + offsets[:, None], scores, iou_threshold, max_num)


# ----------------------------------------------------------------------------- RoIAlign
class _RoIAlign(torch.autograd.Function):

    @staticmethod
    def forward(ctx, feat: Tensor, boxes: Tensor, batch_inds: Tensor, out_h: int, out_w: int,
                spatial_scale: float, sampling_ratio: int, aligned: bool) -> Tensor:
        from mmcv.ops import roi_align as mmcv_roi_align
        if boxes.shape[0] == 0:
            return feat.new_zeros((0, feat.shape[1], out_h, out_w))
        rois = torch.cat([batch_inds.to(boxes)[:, None], boxes], dim=1)
        return mmcv_roi_align(feat, rois, (out_h, out_w), spatial_scale, sampling_ratio,
                              'avg', aligned)

    @staticmethod
    def symbolic(g, feat, boxes, batch_inds, out_h: int, out_w: int, spatial_scale: float,
                 sampling_ratio: int, aligned: bool):
        return g.op('RoiAlign', feat, boxes, batch_inds,
                    coordinate_transformation_mode_s='half_pixel' if aligned
                    else 'output_half_pixel',
                    mode_s='avg', output_height_i=out_h, output_width_i=out_w,
                    sampling_ratio_i=sampling_ratio, spatial_scale_f=spatial_scale)


def roi_align(feat: Tensor, boxes: Tensor, output_size, spatial_scale: float,
              sampling_ratio: int, aligned: bool) -> Tensor:
    """mmcv ``roi_align`` (average pooling) of ``boxes`` (``(K, 4)``, image 0) on ``feat``.

    Returns:
        ``(K, C, out_h, out_w)``.
    """
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    batch_inds = torch.zeros_like(boxes[:, 0], dtype=torch.long)
    return _RoIAlign.apply(feat, boxes, batch_inds, int(out_h), int(out_w), float(spatial_scale),
                           int(sampling_ratio), bool(aligned))


# ----------------------------------------------------------------------------- boxes / masks
def clip_boxes(boxes: Tensor, height, width) -> Tensor:
    """Clamp x to ``[0, width]`` and y to ``[0, height]`` for ``(..., 4k)`` boxes (x1, y1, x2,
    y2 repeated k times); ``height`` / ``width`` are ints, or 0-dim tensors in a trace."""
    size = torch.stack([torch.as_tensor(width), torch.as_tensor(height)]).to(boxes)
    bound = size.repeat(boxes.shape[-1] // 2)  # (4k,) = w, h, w, h, ...
    # no Reshape: ONNX Runtime cannot reshape an empty tensor to (0, -1)
    return torch.minimum(torch.maximum(boxes, boxes.new_zeros(())), bound)


def _bilinear_weights(coords: Tensor, size: int) -> Tensor:
    """Weights of ``grid_sample`` (bilinear, zeros padding, ``align_corners=False``).

    Args:
        coords: ``(N, L)`` normalised sampling positions in ``[-1, 1]`` (outside: padding).
        size: input length along this axis.

    Returns:
        ``(N, L, size)``: row ``l`` holds the interpolation weights of the ``size`` inputs.
    """
    pos = ((coords + 1) * size - 1) / 2  # un-normalise as grid_sample does
    grid = torch.arange(size, dtype=coords.dtype, device=coords.device)
    return torch.clamp(1 - (pos[..., None] - grid).abs(), min=0)


def paste_masks(masks: Tensor, boxes: Tensor, height, width) -> Tensor:
    """Paste RoI mask probabilities into the image, as mmdet's ``_do_paste_mask``.

    Args:
        masks: ``(N, h, w)`` mask probabilities in box coordinates.
        boxes: ``(N, 4)`` x1, y1, x2, y2 in image pixels.
        height, width: image size (ints, or 0-dim tensors in a trace).

    Returns:
        ``(N, height, width)`` float probabilities (no threshold).
    """
    mh, mw = int(masks.shape[1]), int(masks.shape[2])  # the mask head's fixed size (28x28)
    x0, y0, x1, y1 = boxes.unbind(dim=1)
    img_y = torch.arange(height, device=boxes.device).to(torch.float32) + 0.5
    img_x = torch.arange(width, device=boxes.device).to(torch.float32) + 0.5
    img_y = (img_y[None] - y0[:, None]) / (y1 - y0)[:, None] * 2 - 1  # (N, H)
    img_x = (img_x[None] - x0[:, None]) / (x1 - x0)[:, None] * 2 - 1  # (N, W)
    # a zero-size box gives inf: mmdet samples at 0 then
    img_y = torch.where(torch.isinf(img_y), torch.zeros_like(img_y), img_y)
    img_x = torch.where(torch.isinf(img_x), torch.zeros_like(img_x), img_x)
    wy = _bilinear_weights(img_y, mh)  # (N, H, h)
    wx = _bilinear_weights(img_x, mw)  # (N, W, w)
    # (N, H, h) @ (N, h, w) @ (N, w, W) -> (N, H, W)
    return torch.matmul(torch.matmul(wy, masks.float()), wx.transpose(1, 2))


def gather_rows(x: Tensor, inds: Tensor) -> Tensor:
    """``x[inds]`` (exports as ``Gather``)."""
    return x.index_select(0, inds)


def nonzero_1d(mask: Tensor) -> Tensor:
    """Indices where a 1-D bool mask is true, ``(K,)`` int64."""
    return torch.nonzero(mask).reshape(-1)


def min_size_keep(boxes: Tensor, min_size: Optional[float]) -> Optional[Tensor]:
    """mmdet's ``min_bbox_size`` filter: indices with width and height > ``min_size``
    (``None`` when the config switches it off, ``min_bbox_size < 0``)."""
    if min_size is None or min_size < 0:
        return None
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return nonzero_1d((w > min_size) & (h > min_size))
