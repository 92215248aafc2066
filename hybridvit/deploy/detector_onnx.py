"""Whole-detector ONNX export: pre-processing, backbone, neck, heads, NMS and mask pasting in one
graph of standard ONNX ops.

    wrapper = WholeDetector(fused_detector)      # mmdet Mask R-CNN / Faster R-CNN / SSD(Lite)
    dets, labels, masks = wrapper(image)         # image: (1, 3, H, W) float, raw 0-255 pixels

The graph takes the decoded pixels in the channel order the config's data preprocessor expects
(BGR for ``bgr_to_rgb=True``, as ``LoadImageFromFile`` reads them), and does the mean / std
normalisation, the channel swap and the padding to ``pad_size_divisor`` itself. Outputs:

* ``dets`` ``(N, 5)``: x1, y1, x2, y2, score in input pixels (clipped to the image);
* ``labels`` ``(N,)`` int64;
* ``masks`` ``(N, H, W)`` float mask probabilities pasted into the image (Mask R-CNN only;
  ``mask_thr_binary`` is NOT applied, threshold them yourself).

Semantics follow mmdet 3.x's ``predict()`` with the config's ``test_cfg`` (scale factor 1):
RPN (``RPNHead._predict_by_feat_single``): per level top ``nms_pre`` scores, delta decoding,
``min_bbox_size`` filter, NMS per level (``batched_nms`` offsets), ``max_per_img`` proposals;
RoI heads (``StandardRoIHead``): multi-level RoIAlign (``SingleRoIExtractor.map_roi_levels``),
softmax, per-class deltas, ``multiclass_nms`` (``score_thr``, class-wise NMS, ``max_per_img``),
mask head on the kept boxes, ``_do_paste_mask``; one-stage anchor heads such as ``SSDHead``
(``BaseDenseHead._predict_by_feat_single``): per level ``filter_scores_and_topk``, decoding,
``min_bbox_size``, class-wise NMS, ``max_per_img``. The module weights, anchor generators and
mmdet's ``delta2bbox`` (the ``DeltaXYWHBBoxCoder`` maths) are reused as they are; only NMS,
RoIAlign and pasting go through :mod:`hybridvit.deploy.det_ops`, which emits the standard ONNX
nodes. In PyTorch the wrapper runs the same mmcv kernels as mmdet.

Why not MMDeploy (https://github.com/open-mmlab/mmdeploy): it pins mmcv < 2.2 / older torch and
does not install on this stack, and its ONNX Runtime graphs leave masks as 28x28 RoI
probabilities (pasting needs its custom-op library or host code). Its rewrites were read for the
facts (ONNX ``NonMaxSuppression`` output layout, ``RoiAlign`` ``half_pixel`` = mmcv
``aligned=True``, dynamic ``topk`` counts); the code here is ours.
"""
import contextlib
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridvit.utils.atomic import atomic_write
from hybridvit.utils.errors import UserError
from . import det_ops as ops

__all__ = ['WholeDetector', 'UnsupportedDetector', 'export_whole_detector',
           'non_standard_nodes', 'predict_reference', 'run_onnx_detector', 'match_detections',
           'MatchStats', 'check_whole_detector', 'letterbox_image', 'OnnxDetector',
           'detector_latency', 'export_and_check', 'read_resized', 'DET_OUTPUT_NAMES',
           'DEMO_IMAGE', 'export_whole_cli', 'init_onnx_detector', 'benchmark_whole_detector',
           'whole_detector_table']

DET_OUTPUT_NAMES = ('dets', 'labels', 'masks')
# matched-pair requirements (issue 14)
MIN_SCORE = 0.3
MIN_BOX_IOU = 0.99
MAX_SCORE_DIFF = 1e-3
MIN_MASK_IOU = 0.98


class UnsupportedDetector(ValueError):
    """The detector has a part the whole-graph export does not cover (message says which)."""


def _nms_cfg(nms: dict, where: str) -> Tuple[float, bool]:
    nms_type = nms.get('type', 'nms')
    if nms_type != 'nms':
        raise UnsupportedDetector(f"{where}.nms.type={nms_type!r}: only 'nms' exports to the "
                                  'standard NonMaxSuppression op')
    return float(nms['iou_threshold']), bool(nms.get('class_agnostic', False))


def _check_coder(coder, where: str) -> None:
    if type(coder).__name__ != 'DeltaXYWHBBoxCoder':
        raise UnsupportedDetector(f'{where}.bbox_coder is {type(coder).__name__}; only '
                                  'DeltaXYWHBBoxCoder is exported')


def _decode(coder, priors: Tensor, deltas: Tensor, height, width) -> Tensor:
    """``DeltaXYWHBBoxCoder.decode(priors, deltas, max_shape=(height, width))``.

    mmdet's ``delta2bbox`` does the maths; the clip to the image is done here because mmdet's
    in-place clamp takes Python ints (a trace would freeze the size) and its ONNX branch
    (``onnx_delta2bbox``) imports the removed ``mmdet.core``.
    """
    from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
    # one dummy row, dropped again: delta2bbox ends with reshape(n, -1), which ONNX Runtime
    # cannot do for n = 0 (e.g. no SSD score above score_thr)
    priors = torch.cat([priors, priors.new_zeros(1, 4)])
    deltas = torch.cat([deltas, deltas.new_zeros(1, deltas.shape[1])])
    boxes = delta2bbox(priors, deltas, coder.means, coder.stds, None, 16 / 1000, False,
                       coder.add_ctr_clamp, coder.ctr_clamp)[:-1]
    if coder.clip_border:
        boxes = ops.clip_boxes(boxes, height, width)
    return boxes


class WholeDetector(nn.Module):
    """An mmdet detector as ``image -> (dets, labels[, masks])`` with every step traceable.

    Supported: ``TwoStageDetector`` with ``RPNHead`` and ``StandardRoIHead`` (box head with
    ``DeltaXYWHBBoxCoder``, optional ``FCNMaskHead``: Mask R-CNN, Faster R-CNN), and
    ``SingleStageDetector`` with an anchor head without score factors (``SSDHead``,
    ``RetinaHead``). Batch size 1.

    Args:
        detector: the (fused) mmdet detector in eval mode; its ``test_cfg`` is used.
    """

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector
        pre = detector.data_preprocessor
        mean = getattr(pre, 'mean', None)
        std = getattr(pre, 'std', None)
        self.register_buffer('mean', (mean if mean is not None else torch.zeros(3, 1, 1))
                             .reshape(1, -1, 1, 1).clone(), persistent=False)
        self.register_buffer('std', (std if std is not None else torch.ones(3, 1, 1))
                             .reshape(1, -1, 1, 1).clone(), persistent=False)
        self.swap_rb = bool(getattr(pre, '_channel_conversion', False))
        self.pad_divisor = int(getattr(pre, 'pad_size_divisor', 1) or 1)
        self.pad_value = float(getattr(pre, 'pad_value', 0))
        self.two_stage = hasattr(detector, 'rpn_head') and hasattr(detector, 'roi_head')
        cfg = detector.test_cfg
        if self.two_stage:
            self._check_two_stage(detector, cfg)
        elif hasattr(detector, 'bbox_head'):
            self._check_one_stage(detector, cfg)
        else:
            raise UnsupportedDetector(f'{type(detector).__name__} is neither a two-stage '
                                      '(rpn_head + roi_head) nor a one-stage (bbox_head) '
                                      'detector')

    # ------------------------------------------------------------------ checks
    def _check_two_stage(self, det, cfg) -> None:
        rpn, roi = det.rpn_head, det.roi_head
        if type(rpn).__name__ != 'RPNHead':
            raise UnsupportedDetector(f'rpn_head is {type(rpn).__name__}; only RPNHead')
        if type(roi).__name__ != 'StandardRoIHead':
            raise UnsupportedDetector(f'roi_head is {type(roi).__name__}; only StandardRoIHead')
        if getattr(roi, 'with_shared_head', False):
            raise UnsupportedDetector('roi_head.shared_head is not exported')
        _check_coder(rpn.bbox_coder, 'rpn_head')
        _check_coder(roi.bbox_head.bbox_coder, 'roi_head.bbox_head')
        if getattr(roi.bbox_head, 'custom_cls_channels', False):
            raise UnsupportedDetector('roi_head.bbox_head with custom classification channels')
        self.rpn_iou, _ = _nms_cfg(cfg.rpn.nms, 'test_cfg.rpn')
        self.rcnn_iou, self.rcnn_agnostic = _nms_cfg(cfg.rcnn.nms, 'test_cfg.rcnn')
        for extractor, name in ((roi.bbox_roi_extractor, 'bbox_roi_extractor'),
                                (getattr(roi, 'mask_roi_extractor', None), 'mask_roi_extractor')):
            if extractor is None:
                continue
            for layer in extractor.roi_layers:
                if getattr(layer, 'pool_mode', 'avg') != 'avg':
                    raise UnsupportedDetector(f'roi_head.{name}: pool_mode='
                                              f'{layer.pool_mode!r}; only avg')
        self.with_mask = bool(getattr(roi, 'with_mask', False))
        if self.with_mask and getattr(roi, 'share_roi_extractor', False):
            raise UnsupportedDetector('roi_head.share_roi_extractor=True is not exported')

    def _check_one_stage(self, det, cfg) -> None:
        head = det.bbox_head
        if not hasattr(head, 'prior_generator') or not hasattr(head, 'bbox_coder'):
            raise UnsupportedDetector(f'bbox_head {type(head).__name__} is not an anchor head')
        if type(head).__name__ not in ('SSDHead', 'RetinaHead', 'AnchorHead'):
            raise UnsupportedDetector(f'bbox_head {type(head).__name__}: only SSDHead / '
                                      'RetinaHead / AnchorHead are exported')
        _check_coder(head.bbox_coder, 'bbox_head')
        self.iou, self.agnostic = _nms_cfg(cfg.nms, 'test_cfg')
        self.with_mask = False

    # ------------------------------------------------------------------ pieces
    def preprocess(self, image: Tensor) -> Tensor:
        """Raw pixels -> normalised, padded batch (mmdet ``DetDataPreprocessor``)."""
        x = image
        if self.swap_rb:
            x = x[:, [2, 1, 0]]
        x = (x - self.mean) / self.std
        if self.pad_divisor > 1:
            h, w = x.shape[2], x.shape[3]
            pad_h = (self.pad_divisor - h % self.pad_divisor) % self.pad_divisor
            pad_w = (self.pad_divisor - w % self.pad_divisor) % self.pad_divisor
            x = F.pad(x, (0, pad_w, 0, pad_h), value=self.pad_value)
        return x

    @staticmethod
    def _level_scores(cls_score: Tensor, head) -> Tensor:
        # (1, A*C, h, w) -> (h*w*A, C) scores, background dropped for softmax heads
        scores = cls_score[0].permute(1, 2, 0).reshape(-1, head.cls_out_channels)
        return scores.sigmoid() if head.use_sigmoid_cls else scores.softmax(-1)[:, :-1]

    @staticmethod
    def _level_deltas(bbox_pred: Tensor, head) -> Tensor:
        return bbox_pred[0].permute(1, 2, 0).reshape(-1, head.bbox_coder.encode_size)

    def _priors(self, head, maps: Sequence[Tensor]) -> List[Tensor]:
        sizes = [m.shape[-2:] for m in maps]
        return head.prior_generator.grid_priors(sizes, dtype=maps[0].dtype,
                                                device=maps[0].device)

    def _extract(self, extractor, feats: Sequence[Tensor], boxes: Tensor) -> Tensor:
        """``SingleRoIExtractor`` on image 0: level by RoI scale, RoIAlign, scatter back."""
        feats = feats[:extractor.num_inputs]
        layers = extractor.roi_layers
        out_h, out_w = layers[0].output_size
        if len(feats) == 1:
            layer = layers[0]
            return ops.roi_align(feats[0], boxes, (out_h, out_w), layer.spatial_scale,
                                 layer.sampling_ratio, layer.aligned)
        rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1)
        levels = extractor.map_roi_levels(rois, len(feats))
        out = feats[0].new_zeros(boxes.shape[0], extractor.out_channels, out_h, out_w)
        for i, (feat, layer) in enumerate(zip(feats, layers)):
            inds = ops.nonzero_1d(levels == i)
            part = ops.roi_align(feat, ops.gather_rows(boxes, inds), (out_h, out_w),
                                 layer.spatial_scale, layer.sampling_ratio, layer.aligned)
            out = out.index_put((inds, ), part)
        return out

    # ------------------------------------------------------------------ two-stage
    def _proposals(self, feats: Sequence[Tensor], height, width) -> Tensor:
        rpn = self.detector.rpn_head
        cfg = self.detector.test_cfg.rpn
        nms_pre = int(cfg.get('nms_pre', -1))
        cls_scores, bbox_preds = rpn(feats)
        priors = self._priors(rpn, cls_scores)
        all_scores, all_deltas, all_priors, all_levels = [], [], [], []
        for level, (cls, reg, prior) in enumerate(zip(cls_scores, bbox_preds, priors)):
            scores = self._level_scores(cls, rpn)[:, 0]
            deltas = self._level_deltas(reg, rpn)
            if nms_pre > 0:
                scores, inds = ops.sorted_topk(scores, nms_pre)
                deltas, prior = ops.gather_rows(deltas, inds), ops.gather_rows(prior, inds)
            all_scores.append(scores)
            all_deltas.append(deltas)
            all_priors.append(prior)
            all_levels.append(torch.full_like(scores, level, dtype=torch.long))
        scores, levels = torch.cat(all_scores), torch.cat(all_levels)
        boxes = _decode(rpn.bbox_coder, torch.cat(all_priors), torch.cat(all_deltas),
                        height, width)
        keep = ops.min_size_keep(boxes, cfg.get('min_bbox_size', -1))
        if keep is not None:
            boxes, scores, levels = (ops.gather_rows(t, keep) for t in (boxes, scores, levels))
        keep = ops.batched_nms_keep(boxes, scores, levels, self.rpn_iou, cfg.max_per_img)
        return ops.gather_rows(boxes, keep)

    def _rcnn(self, feats: Sequence[Tensor], proposals: Tensor, height, width
              ) -> Tuple[Tensor, Tensor, Tensor]:
        roi = self.detector.roi_head
        head = roi.bbox_head
        cfg = self.detector.test_cfg.rcnn
        cls_score, bbox_pred = head(self._extract(roi.bbox_roi_extractor, feats, proposals))
        scores = F.softmax(cls_score, dim=-1)[:, :-1]  # (R, C), background dropped
        num_classes = head.num_classes
        # (R, C*4) deltas of every class (or (R, 4) class-agnostic) -> (R, C, 4) boxes
        boxes = _decode(head.bbox_coder, proposals, bbox_pred, height, width)
        boxes = boxes.reshape(boxes.shape[0], -1, 4).expand(-1, num_classes, -1)
        labels = torch.arange(num_classes, device=scores.device)[None].expand_as(scores)
        boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
        valid = ops.nonzero_1d(scores > cfg.score_thr)
        boxes, scores, labels = (ops.gather_rows(t, valid) for t in (boxes, scores, labels))
        keep = ops.batched_nms_keep(boxes, scores, labels, self.rcnn_iou, cfg.max_per_img,
                                    self.rcnn_agnostic)
        return (ops.gather_rows(boxes, keep), ops.gather_rows(scores, keep),
                ops.gather_rows(labels, keep))

    def _masks(self, feats: Sequence[Tensor], boxes: Tensor, labels: Tensor, height, width
               ) -> Tensor:
        roi = self.detector.roi_head
        mask_preds = roi.mask_head(self._extract(roi.mask_roi_extractor, feats, boxes))
        n, c = mask_preds.shape[0], mask_preds.shape[1]
        # (N, C, h, w) -> (N*C, h, w), then the channel of each box's label
        flat = mask_preds.reshape(-1, mask_preds.shape[2], mask_preds.shape[3])
        if roi.mask_head.class_agnostic:
            index = torch.arange(n, device=boxes.device) * c
        else:
            index = torch.arange(n, device=boxes.device) * c + labels
        probs = ops.gather_rows(flat, index).sigmoid()
        return ops.paste_masks(probs, boxes, height, width)

    # ------------------------------------------------------------------ one-stage
    def _one_stage(self, feats: Sequence[Tensor], height, width
                   ) -> Tuple[Tensor, Tensor, Tensor]:
        head = self.detector.bbox_head
        cfg = self.detector.test_cfg
        nms_pre = int(cfg.get('nms_pre', -1))
        score_thr = float(cfg.get('score_thr', 0))
        cls_scores, bbox_preds = head(feats)
        priors = self._priors(head, cls_scores)
        all_scores, all_labels, all_deltas, all_priors = [], [], [], []
        for cls, reg, prior in zip(cls_scores, bbox_preds, priors):
            scores = self._level_scores(cls, head)  # (A, C)
            deltas = self._level_deltas(reg, head)
            num_classes = scores.shape[1]
            flat = scores.reshape(-1)
            valid = ops.nonzero_1d(flat > score_thr)  # mmdet filter_scores_and_topk
            flat = ops.gather_rows(flat, valid)
            if nms_pre > 0:
                flat, inds = ops.sorted_topk(flat, nms_pre)
                valid = ops.gather_rows(valid, inds)
            anchor, label = valid // num_classes, valid % num_classes
            all_scores.append(flat)
            all_labels.append(label)
            all_deltas.append(ops.gather_rows(deltas, anchor))
            all_priors.append(ops.gather_rows(prior, anchor))
        scores, labels = torch.cat(all_scores), torch.cat(all_labels)
        boxes = _decode(head.bbox_coder, torch.cat(all_priors), torch.cat(all_deltas),
                        height, width)
        keep = ops.min_size_keep(boxes, cfg.get('min_bbox_size', -1))
        if keep is not None:
            boxes, scores, labels = (ops.gather_rows(t, keep) for t in (boxes, scores, labels))
        keep = ops.batched_nms_keep(boxes, scores, labels, self.iou, cfg.max_per_img,
                                    self.agnostic)
        return (ops.gather_rows(boxes, keep), ops.gather_rows(scores, keep),
                ops.gather_rows(labels, keep))

    # ------------------------------------------------------------------ forward
    def forward(self, image: Tensor) -> Tuple[Tensor, ...]:
        """``(1, 3, H, W)`` raw pixels -> ``dets (N, 5)``, ``labels (N,)`` [, ``masks``]."""
        height, width = image.shape[2], image.shape[3]
        feats = self.detector.extract_feat(self.preprocess(image))
        if self.two_stage:
            proposals = self._proposals(feats, height, width)
            boxes, scores, labels = self._rcnn(feats, proposals, height, width)
        else:
            boxes, scores, labels = self._one_stage(feats, height, width)
        dets = torch.cat([boxes, scores[:, None]], dim=1)
        if not self.with_mask:
            return dets, labels
        return dets, labels, self._masks(feats, boxes, labels, height, width)

    @property
    def output_names(self) -> List[str]:
        return list(DET_OUTPUT_NAMES[:3 if self.with_mask else 2])


# ----------------------------------------------------------------------------- export
def non_standard_nodes(model_path: str) -> List[str]:
    """``domain::op`` of every node outside the standard ``ai.onnx`` domain (incl. subgraphs)."""
    import onnx
    bad = []

    def visit(graph):
        for node in graph.node:
            if node.domain not in ('', 'ai.onnx'):
                bad.append(f'{node.domain}::{node.op_type}')
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    visit(attr.g)
                for sub in attr.graphs:
                    visit(sub)

    visit(onnx.load(model_path).graph)
    return sorted(set(bad))


def export_whole_detector(wrapper: WholeDetector, example: Tensor, out_file: str,
                          dynamic: bool = False, opset: int = 17) -> None:
    """Trace ``wrapper`` on ``example`` into ``out_file`` (TorchScript exporter, ``dynamo=False``).

    ``dynamic``: height and width of ``image`` are dynamic axes. The number of detections is
    always dynamic. Raises :class:`UserError` for ``opset < 16`` and ``RuntimeError`` when the
    graph has a non-standard node.
    """
    import onnx

    from .onnx_export import trace_friendly_shapes
    if opset < 16:
        raise UserError(f'whole-detector export: opset must be >= 16 (RoiAlign with '
                        f'half_pixel), got {opset}')
    wrapper.eval()
    names = wrapper.output_names
    axes = {'image': {2: 'height', 3: 'width'}} if dynamic else {}
    axes.update({'dets': {0: 'num_dets'}, 'labels': {0: 'num_dets'}})
    if wrapper.with_mask:
        axes['masks'] = {0: 'num_dets', 1: 'height', 2: 'width'} if dynamic else {0: 'num_dets'}
    ctx = trace_friendly_shapes(wrapper) if dynamic else contextlib.nullcontext()
    with ctx, warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings('ignore', message='.*legacy TorchScript-based ONNX export')
        warnings.filterwarnings('ignore', message='.*The feature will be removed')
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', category=UserWarning)
        torch.onnx.export(wrapper, (example, ), out_file, dynamo=False, opset_version=opset,
                          input_names=['image'], output_names=names, dynamic_axes=axes,
                          do_constant_folding=True)
    onnx.checker.check_model(out_file)
    bad = non_standard_nodes(out_file)
    if bad:
        raise RuntimeError(f'the graph has non-standard ops {bad}')


# ----------------------------------------------------------------------------- run + compare
def predict_reference(model: nn.Module, img_bgr: np.ndarray) -> Dict[str, np.ndarray]:
    """mmdet ``test_step`` on an already resized ``(H, W, 3)`` BGR uint8 image (scale 1).

    Returns:
        ``boxes (N, 4)``, ``scores``, ``labels`` and, for Mask R-CNN, ``masks (N, H, W)`` bool.
    """
    from mmdet.structures import DetDataSample
    h, w = img_bgr.shape[:2]
    inputs = torch.from_numpy(np.ascontiguousarray(img_bgr.transpose(2, 0, 1)))
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         scale_factor=(1.0, 1.0), img_id=0, img_path=''))
    with torch.no_grad():
        inst = model.test_step(dict(inputs=[inputs], data_samples=[sample]))[0].pred_instances
    out = dict(boxes=inst.bboxes.numpy(), scores=inst.scores.numpy(),
               labels=inst.labels.numpy())
    if 'masks' in inst:
        out['masks'] = inst.masks.numpy().astype(bool)
    return out


def run_onnx_detector(session, img_bgr: np.ndarray) -> Dict[str, np.ndarray]:
    """ONNX Runtime on a ``(H, W, 3)`` uint8 image in the graph's channel order (BGR for the
    configs here). Returns ``boxes``, ``scores``, ``labels`` [, ``masks`` probabilities]."""
    image = img_bgr.transpose(2, 0, 1)[None].astype(np.float32)
    outs = dict(zip([o.name for o in session.get_outputs()],
                    session.run(None, {session.get_inputs()[0].name: image})))
    out = dict(boxes=outs['dets'][:, :4], scores=outs['dets'][:, 4], labels=outs['labels'])
    if 'masks' in outs:
        out['masks'] = outs['masks']
    return out


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) -> (N, M) IoU."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


class MatchStats(dict):
    """Result of :func:`match_detections`; ``ok`` says whether every requirement holds."""

    def __str__(self) -> str:
        text = (f'{self["n_ref"]} PyTorch / {self["n_onnx"]} ONNX detections with score >= '
                f'{self["min_score"]:g}; matched {self["matched_ref"]}/{self["n_ref"]} and '
                f'{self["matched_onnx"]}/{self["n_onnx"]} (same label, box IoU >= '
                f'{MIN_BOX_IOU}, |score diff| <= {MAX_SCORE_DIFF:g}); min box IoU '
                f'{self["min_iou"]:.4f}, max |score diff| {self["max_score_diff"]:.2e}')
        if self.get('min_mask_iou') is not None:
            text += f', min mask IoU {self["min_mask_iou"]:.4f} (>= {MIN_MASK_IOU})'
        return text + (f'; {self["total_ref"]} / {self["total_onnx"]} detections at any '
                       'score')


def _one_way(src: Dict[str, np.ndarray], dst: Dict[str, np.ndarray], min_score: float):
    """For each ``src`` detection with score >= min_score: best same-label ``dst`` match."""
    pairs = []
    sel = np.nonzero(src['scores'] >= min_score)[0]
    iou = _box_iou(src['boxes'][sel], dst['boxes']) if len(dst['boxes']) else \
        np.zeros((len(sel), 0))
    for row, i in enumerate(sel):
        same = dst['labels'] == src['labels'][i]
        if not same.any():
            pairs.append((i, None, 0.0, np.inf))
            continue
        cand = np.where(same, iou[row], -1.0)
        j = int(np.argmax(cand))
        pairs.append((i, j, float(cand[j]), abs(float(src['scores'][i] - dst['scores'][j]))))
    return pairs


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def match_detections(ref: Dict[str, np.ndarray], onnx_out: Dict[str, np.ndarray],
                     min_score: float = MIN_SCORE, mask_thr: float = 0.5) -> MatchStats:
    """Match PyTorch and ONNX detections both ways (issue 14's requirements).

    Every detection with score >= ``min_score`` on either side needs a detection of the same
    label on the other side (any score) with box IoU >= 0.99 and |score diff| <= 1e-3; matched
    masks (ONNX probabilities thresholded at ``mask_thr``, >=, as mmdet) need IoU >= 0.98.
    """
    fwd = _one_way(ref, onnx_out, min_score)
    bwd = _one_way(onnx_out, ref, min_score)

    def good(p):
        return p[1] is not None and p[2] >= MIN_BOX_IOU and p[3] <= MAX_SCORE_DIFF

    all_pairs = fwd + bwd
    stats = MatchStats(
        min_score=min_score, n_ref=len(fwd), n_onnx=len(bwd),
        total_ref=len(ref['scores']), total_onnx=len(onnx_out['scores']),
        matched_ref=sum(map(good, fwd)), matched_onnx=sum(map(good, bwd)),
        min_iou=min((p[2] for p in all_pairs), default=1.0),
        max_score_diff=max((p[3] for p in all_pairs), default=0.0), min_mask_iou=None)
    if 'masks' in ref and 'masks' in onnx_out:
        ious = [_mask_iou(ref['masks'][i], onnx_out['masks'][j] >= mask_thr)
                for i, j, *_ in fwd if j is not None]
        ious += [_mask_iou(ref['masks'][j], onnx_out['masks'][i] >= mask_thr)
                 for i, j, *_ in bwd if j is not None]
        stats['min_mask_iou'] = min(ious, default=1.0)
    stats['ok'] = (stats['matched_ref'] == stats['n_ref']
                   and stats['matched_onnx'] == stats['n_onnx']
                   and (stats['min_mask_iou'] is None or stats['min_mask_iou'] >= MIN_MASK_IOU))
    return stats


def check_whole_detector(model_path: str, fused_model: nn.Module, images: Sequence[np.ndarray],
                         threads: int = 1, min_score: float = MIN_SCORE) -> List[MatchStats]:
    """ONNX Runtime vs the fused model's ``predict()`` on each (resized) BGR uint8 image."""
    from .onnx_export import ort_session
    sess = ort_session(model_path, threads)
    mask_thr = float(getattr(fused_model.test_cfg, 'rcnn', {}).get('mask_thr_binary', 0.5)) \
        if hasattr(fused_model.test_cfg, 'rcnn') else 0.5
    return [match_detections(predict_reference(fused_model, img), run_onnx_detector(sess, img),
                             min_score, mask_thr) for img in images]


DEMO_IMAGE = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'demo',
                      'demo.jpg')


def read_resized(path: str, shape: Sequence[int]) -> np.ndarray:
    """The BGR uint8 image at ``path`` resized to ``(H, W)`` (bilinear)."""
    import cv2

    from hybridvit.utils.image_io import read_image_bgr
    h, w = shape
    return cv2.resize(read_image_bgr(path), (int(w), int(h)), interpolation=cv2.INTER_LINEAR)


def export_and_check(fused_model: nn.Module, shape: Sequence[int], out_file: str,
                     dynamic: bool = False, opset: int = 17, image: str = DEMO_IMAGE,
                     threads: int = 1, log=print) -> List[MatchStats]:
    """Export the whole fused detector, check it, and only then write ``out_file``.

    The graph is traced on ``image`` resized to ``shape`` and written to a temporary file next
    to ``out_file``; ONNX Runtime's detections on that image (and, with ``dynamic``, on the image
    resized to a second size) must match the fused model's ``predict()`` (:func:`match_detections`),
    otherwise the file is deleted and ``RuntimeError`` raised. This is what
    ``tools/deploy/export_onnx.py`` runs for a detection config.

    Returns:
        The :class:`MatchStats` of each checked size.
    """
    wrapper = WholeDetector(fused_model).eval()
    img = read_resized(image, shape)
    example = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32))
    sizes = [tuple(shape)] + ([(shape[0] + 64, shape[1] - 32 if shape[1] > 64 else shape[1] + 32)]
                              if dynamic else [])
    with atomic_write(out_file) as tmp:  # an exception leaves nothing at out_file
        export_whole_detector(wrapper, example, tmp, dynamic=dynamic, opset=opset)
        stats = check_whole_detector(tmp, fused_model, [read_resized(image, s) for s in sizes],
                                     threads)
        for size, stat in zip(sizes, stats):
            log(f'ONNX Runtime vs PyTorch predict() on {osp.basename(image)} resized to '
                f'{size[0]}x{size[1]}: {stat}')
        failed = [f'{s[0]}x{s[1]}' for s, st in zip(sizes, stats) if not st['ok']]
        if failed:
            raise RuntimeError(f'ONNX Runtime detections differ from PyTorch predict() at '
                               f'{", ".join(failed)} (see the statistics above); nothing '
                               'written')
        if not any(st['n_ref'] for st in stats):
            log(f'NOTE: no detection with score >= {MIN_SCORE} on {osp.basename(image)} '
                '(random or untrained weights?): the check compared nothing')
    return stats


def export_whole_cli(fused_model: nn.Module, shape: Sequence[int], out_file: str,
                     dynamic: bool, opset: int) -> None:
    """``tools/deploy/export_onnx.py`` for a detection config (the default part): export the
    whole detector with :func:`export_and_check`, print what was checked and written; failures
    become :class:`hybridvit.utils.cli.UserError` (one line, exit 2, nothing written)."""
    try:
        wrapper = WholeDetector(fused_model)
        export_and_check(fused_model, shape, out_file, dynamic=dynamic, opset=opset)
    except (RuntimeError, UnsupportedDetector) as err:
        raise UserError(f'whole-detector export: {err}') from err
    masks = ', masks (N, H, W) float probabilities' if wrapper.with_mask else ''
    print(f'inputs: image (1, 3, {"H, W" if dynamic else ", ".join(map(str, shape))}) float '
          f'raw pixels, {"BGR" if wrapper.swap_rb else "in the preprocessor order"} 0-255 '
          '(normalisation and padding are in the graph)')
    print(f'outputs: dets (N, 5) x1 y1 x2 y2 score, labels (N,) int64{masks}; only standard '
          'ai.onnx ops')
    print(f'saved {out_file} (whole detector, opset {opset}, '
          f'{"dynamic height/width" if dynamic else "static shape"})')


# ----------------------------------------------------------------------------- ORT backend
def letterbox_image(img_bgr: np.ndarray, scale, keep_ratio: bool,
                    fixed: Optional[Tuple[int, int]], pad_pixel: Sequence[float]
                    ) -> Tuple[np.ndarray, Tuple[float, float], Tuple[int, int]]:
    """Resize like mmdet's test ``Resize`` (``scale``, ``keep_ratio``), then, for a graph with a
    fixed input size, shrink further if needed and pad bottom / right with ``pad_pixel`` (the
    preprocessor mean: it normalises to mmdet's pad value 0).

    Returns:
        ``(image for the graph, (scale_w, scale_h), (resized h, resized w))``.
    """
    import cv2
    h, w = img_bgr.shape[:2]
    if scale is None:
        sw = sh = 1.0
    elif keep_ratio:
        long_side, short_side = max(scale), min(scale)
        sw = sh = min(long_side / max(h, w), short_side / min(h, w))
    else:
        sw, sh = scale[0] / w, scale[1] / h
    if fixed is not None:
        shrink = min(1.0, fixed[0] / (h * sh), fixed[1] / (w * sw))
        sw, sh = sw * shrink, sh * shrink
    new_w, new_h = int(w * sw + 0.5), int(h * sh + 0.5)
    if fixed is not None:
        new_w, new_h = min(new_w, fixed[1]), min(new_h, fixed[0])
    out = img_bgr if (new_w, new_h) == (w, h) else cv2.resize(
        img_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if fixed is not None and (new_h, new_w) != tuple(fixed):
        canvas = np.empty((fixed[0], fixed[1], 3), np.uint8)
        canvas[:] = np.clip(np.round(np.asarray(pad_pixel)), 0, 255).astype(np.uint8)
        canvas[:new_h, :new_w] = out
        out = canvas
    return out, (new_w / w, new_h / h), (new_h, new_w)


def _test_resize(cfg) -> Tuple[Optional[Tuple[int, int]], bool]:
    pipeline = cfg.get('test_pipeline') or cfg.test_dataloader.dataset.get('pipeline', [])
    for step in pipeline:
        if step.get('type') == 'Resize':
            return tuple(step['scale']), bool(step.get('keep_ratio', False))
    return None, False


class OnnxDetector:
    """The ONNX Runtime backend of :func:`hybridvit.apis.inference_model` for a whole detector.

    Resizes the image as the config's test pipeline does (and fits it into a fixed-size graph),
    runs the graph, maps boxes back to the original image and thresholds the pasted masks at
    ``test_cfg.rcnn.mask_thr_binary``. ``__call__`` returns a ``DetDataSample``.

    Args:
        model_path: the ``.onnx`` file of :func:`export_whole_detector`.
        cfg: the config it was exported from (``mmengine.Config``).
        threads: ONNX Runtime intra-op threads.
    """

    backend = 'onnxruntime'  # what DetTask.inference looks for

    def __init__(self, model_path: str, cfg, threads: int = 1):
        from .onnx_export import ort_session
        self.model_path = model_path
        self.session = ort_session(model_path, threads)
        names = [o.name for o in self.session.get_outputs()]
        if names[:2] != ['dets', 'labels']:
            raise UserError(f'{model_path} is not a whole-detector graph (outputs {names}; '
                            "expected 'dets', 'labels'[, 'masks'] from "
                            'tools/deploy/export_onnx.py on a detection config)')
        self.cfg = cfg
        inp = self.session.get_inputs()[0]
        dims = inp.shape[2:]
        self.fixed = tuple(dims) if all(isinstance(d, int) for d in dims) else None
        self.scale, self.keep_ratio = _test_resize(cfg)
        pre = cfg.model.get('data_preprocessor', {})
        mean = pre.get('mean') or [0.0, 0.0, 0.0]
        # the graph takes BGR when the preprocessor swaps to RGB: pad with the BGR mean
        self.pad_pixel = list(mean)[::-1] if pre.get('bgr_to_rgb') else list(mean)
        test_cfg = cfg.model.get('test_cfg') or {}
        rcnn = test_cfg.get('rcnn') or {}
        self.mask_thr = float(rcnn.get('mask_thr_binary', 0.5))
        self.dataset_meta = {}

    def __call__(self, img_bgr: np.ndarray):
        import cv2
        from mmdet.structures import DetDataSample
        from mmengine.structures import InstanceData
        h, w = img_bgr.shape[:2]
        image, (sw, sh), (rh, rw) = letterbox_image(img_bgr, self.scale, self.keep_ratio,
                                                    self.fixed, self.pad_pixel)
        out = run_onnx_detector(self.session, image)
        boxes = out['boxes'].copy()
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, rw) / sw
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, rh) / sh
        # a detection wholly in the padding of a fixed-size graph is empty after the clip
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        inst = InstanceData()
        inst.bboxes = torch.from_numpy(boxes[keep])
        inst.scores = torch.from_numpy(out['scores'][keep])
        inst.labels = torch.from_numpy(out['labels'][keep].astype(np.int64))
        if 'masks' in out:
            probs = out['masks'][keep][:, :rh, :rw]
            masks = np.zeros((len(probs), h, w), bool)
            for i, p in enumerate(probs):
                masks[i] = cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) >= \
                    self.mask_thr
            inst.masks = torch.from_numpy(masks)
        sample = DetDataSample(metainfo=dict(ori_shape=(h, w), img_shape=(rh, rw),
                                             scale_factor=(sw, sh)))
        sample.pred_instances = inst
        return sample


def init_onnx_detector(cfg, model_path: str, dataset_meta: dict, threads: int = 1
                       ) -> OnnxDetector:
    """:func:`hybridvit.apis.init_model` for a ``.onnx`` checkpoint: the ONNX Runtime backend.

    Raises:
        UserError: the config is not a detection config, or the file is missing / not a
            whole-detector graph.
    """
    if cfg.get('default_scope') != 'mmdet':
        raise UserError(f'{model_path}: the ONNX Runtime backend runs whole detectors only; '
                        f'config default_scope={cfg.get("default_scope")!r} (expected mmdet)')
    if not osp.isfile(model_path):
        raise UserError(f'ONNX file not found: {model_path}')
    model = OnnxDetector(model_path, cfg, threads)
    model.dataset_meta = dict(dataset_meta or {})
    return model


# ----------------------------------------------------------------------------- latency
def detector_latency(fused_model: nn.Module, model_path: str, img_bgr: np.ndarray, runs: int,
                     warmup: int = 1, threads: int = 1) -> Dict[str, List[float]]:
    """Whole-detector latency on one resized BGR image: mmdet eager ``test_step`` (the fused
    model: pre-processing, backbone, neck, heads, NMS, mask pasting) vs ONNX Runtime, same
    thread count, in alternating blocks (:func:`hybridvit.deploy.benchmark.latency_schedule`:
    ORT's spinning worker threads never overlap a timed eager call).

    Returns:
        ``{'eager': seconds per run, 'onnxruntime': seconds per run}``.
    """
    from mmdet.structures import DetDataSample

    from .benchmark import EAGER, ORT, interleaved_latency
    from .onnx_export import ort_session
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        h, w = img_bgr.shape[:2]
        inputs = torch.from_numpy(np.ascontiguousarray(img_bgr.transpose(2, 0, 1)))
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             scale_factor=(1.0, 1.0), img_id=0, img_path=''))
        data = dict(inputs=[inputs], data_samples=[sample])
        sess = ort_session(model_path, threads)
        name = sess.get_inputs()[0].name
        image = img_bgr.transpose(2, 0, 1)[None].astype(np.float32)

        def eager(_):
            with torch.inference_mode():
                return fused_model.test_step(data)

        def ort(_):
            return sess.run(None, {name: image})

        # ORT's worker threads spin on after a call: its session is a block of its own
        # (consecutive calls), the eager and ORT blocks take turns (latency_schedule)
        return interleaved_latency({'eager': eager, 'onnxruntime': ort}, torch.empty(0), runs,
                                   warmup, engines={'eager': EAGER, 'onnxruntime': ORT})
    finally:
        torch.set_num_threads(previous)


def benchmark_whole_detector(config: str, shape: Sequence[int], workdir: str,
                             checkpoint: Optional[str] = None, threads: int = 2, runs: int = 10,
                             warmup: int = 2, log=print) -> Dict[str, object]:
    """Whole-detector latency of one config at ``shape`` (``tools/analysis/benchmark.py
    --whole-detector``): fuse, export with :func:`export_and_check`, then
    :func:`detector_latency` on ``demo/demo.jpg`` resized to ``shape``.

    Without a checkpoint the weights are random and the config's score threshold is set to 0,
    so that every image gets ``max_per_img`` detections through the NMS, the mask head and the
    pasting (the worst case; random scores would otherwise give none).

    Returns:
        A row: ``config``, ``shape``, ``eager_ms`` / ``ort_ms`` (medians), ``ratio``
        (ORT / eager), ``detections``, ``runs``, ``threads``.
    """
    import warnings as _warnings

    from mmengine.config import Config

    from hybridvit.apis import init_model
    from hybridvit.models.utils import reparameterize_model

    from .benchmark import median_ms
    from .fold_norms import fold_output_norms
    cfg = Config.fromfile(config)
    options = None
    if checkpoint is None:
        key = 'model.test_cfg.rcnn.score_thr' if 'rcnn' in cfg.model.test_cfg else \
            'model.test_cfg.score_thr'
        options = {key: 0.0}
    with _warnings.catch_warnings():
        _warnings.simplefilter('ignore')
        model = init_model(cfg, checkpoint, cfg_options=options)
    fused = reparameterize_model(model, inplace=True)
    fold_output_norms(fused)
    path = osp.join(workdir, f'{osp.splitext(osp.basename(config))[0]}_{shape[0]}x{shape[1]}'
                    '.onnx')
    export_and_check(fused, shape, path, log=log)
    img = read_resized(DEMO_IMAGE, shape)
    n = len(predict_reference(fused, img)['scores'])
    times = detector_latency(fused, path, img, runs, warmup, threads)
    eager, ort = median_ms(times['eager']), median_ms(times['onnxruntime'])
    return dict(config=config, shape=f'{shape[0]}x{shape[1]}', eager_ms=round(eager, 1),
                ort_ms=round(ort, 1), ratio=round(ort / eager, 3), detections=n, runs=runs,
                threads=threads)


def whole_detector_table(rows: Sequence[Dict[str, object]]) -> List[str]:
    """Markdown table of :func:`benchmark_whole_detector` rows."""
    lines = ['| config | input | detections | eager predict() fused (ms) | ONNX Runtime (ms) | '
             'ORT / eager |', '|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {osp.basename(r['config'])} | {r['shape']} | {r['detections']} | "
                     f"{r['eager_ms']} | {r['ort_ms']} | {r['ratio']:.2f}x |")
    return lines
