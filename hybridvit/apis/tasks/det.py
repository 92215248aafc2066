"""Object detection / instance segmentation (mmdet detectors): features, boxes and masks.

Parts: ``backbone`` and ``model`` (backbone + neck, ``extract_feat``). RPN proposal decoding +
NMS and the RoI heads are data-dependent and not in ``model`` (:data:`DET_NOT_EXPORTED`); the
ONNX export of ``model`` (or ``whole``) is the whole detector instead
(:meth:`DetTask.onnx_exporter`, :mod:`hybridvit.deploy.detector_onnx`).
"""
from hybridvit.utils.errors import UserError
from hybridvit.utils.outputs import flatten_tensors

from .base import Task
from .registry import register_task

__all__ = ['DetTask', 'DET_NOT_EXPORTED']

DET_NOT_EXPORTED = ('RPN proposal decoding + NMS, the RoI box / mask heads and their '
                    'post-processing are not exported (data-dependent); the ONNX graph holds '
                    'backbone + neck (extract_feat) only')


def _extract_feat(model, x):
    return model.extract_feat(x)


@register_task
class DetTask(Task):
    """mmdet detectors (``default_scope='mmdet'``). Part ``model``: backbone + neck maps."""

    name = 'det'
    scope = 'mmdet'
    export_shape = (800, 1216)
    shape_multiple = 32
    coreml_parts = ('backbone', )

    def default_dataset_meta(self):
        from mmdet.evaluation import get_classes
        return dict(classes=get_classes('coco'))

    def inference(self, model, img_bgr, **kwargs):
        if getattr(model, 'backend', None) == 'onnxruntime':  # an exported whole detector
            return model(img_bgr)
        from mmdet.apis import inference_detector
        return inference_detector(model, img_bgr)

    def part_functions(self):
        # 'neck' = backbone + neck; the ONNX export of 'model' is the whole detector
        # (onnx_exporter), other tools time / compare extract_feat
        return dict(super().part_functions(), model=(_extract_feat, 'feat', DET_NOT_EXPORTED),
                    neck=(_extract_feat, 'feat', DET_NOT_EXPORTED))

    def onnx_exporter(self, part):
        """``model`` / ``whole``: the whole detector (pre-processing .. NMS, mask pasting),
        checked against ``predict()``; ``neck`` / ``backbone``: the generic export."""
        if part in ('model', 'whole'):
            from hybridvit.deploy.detector_onnx import export_whole_cli
            return export_whole_cli
        return None

    def comparable_outputs(self, model, inputs):
        """Backbone + neck maps, then the RPN head's raw scores and box deltas."""
        import torch
        with torch.no_grad():
            feats = model.extract_feat(inputs)
            rpn = model.rpn_head(feats) if hasattr(model, 'rpn_head') else ()
        return flatten_tensors((feats, rpn))

    def draw(self, img_bgr, result, meta, score_thr=0.3, opacity=0.5):
        from hybridvit.visualization import draw_detections
        inst = result.pred_instances
        masks = inst.masks.cpu().numpy() if 'masks' in inst else None
        scores = inst.scores.cpu().numpy()
        vis = draw_detections(img_bgr, inst.bboxes.cpu().numpy(), inst.labels.cpu().numpy(),
                              scores, meta.get('classes') or [], masks, score_thr,
                              meta.get('palette'))
        return vis, f'{int((scores >= score_thr).sum())} detections >= {score_thr}'

    def configure_test_outputs(self, cfg, out):
        if not out.endswith(('.pkl', '.pickle')):
            raise UserError(f'detection test outputs are dumped to a .pkl file, got {out}')
        evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [
            cfg.test_evaluator]
        cfg.test_evaluator = list(evaluators) + [dict(type='DumpDetResults', out_file_path=out)]
