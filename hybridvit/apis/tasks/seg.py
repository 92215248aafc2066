"""Semantic segmentation (mmseg segmentors): logits, colour overlays, label PNGs."""
import numpy as np

from .base import Task
from .registry import register_task

__all__ = ['SegTask']


def _seg_logits(model, x):
    """Decode-head logits (``EncoderDecoder._forward``: 1/4 of the input size, before resize and
    argmax), named ``seg_logits``."""
    return {'seg_logits': model._forward(x)}


@register_task
class SegTask(Task):
    """mmseg segmentors (``default_scope='mmseg'``). Part ``model``: decode-head logits."""

    name = 'seg'
    scope = 'mmseg'
    export_shape = (512, 512)

    def prepare_config(self, cfg) -> None:
        cfg.model.train_cfg = None

    def inference(self, model, img_bgr, **kwargs):
        from mmseg.apis import inference_model
        return inference_model(model, img_bgr)

    def part_functions(self):
        return dict(super().part_functions(), model=(_seg_logits, '', None))

    def export_input_shape(self, cfg):
        size = cfg.model.get('data_preprocessor', {}).get('size')
        return tuple(size) if size else super().export_input_shape(cfg)

    def draw(self, img_bgr, result, meta, score_thr=0.3, opacity=0.5):
        from hybridvit.visualization import draw_segmentation
        labels = result.pred_sem_seg.data[0].cpu().numpy()
        classes = meta.get('classes') or [str(i) for i in range(int(labels.max()) + 1)]
        vis = draw_segmentation(img_bgr, labels, classes, meta.get('palette'), opacity)
        summary = ', '.join(f'{classes[c]} {100 * (labels == c).mean():.1f}%'
                            for c in np.unique(labels).tolist() if c < len(classes))
        return vis, summary

    def configure_test_outputs(self, cfg, out):
        cfg.test_evaluator['output_dir'] = out
        cfg.test_evaluator['keep_results'] = True
