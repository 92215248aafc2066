"""mmdet's ``SSDHead`` (SSD, https://arxiv.org/abs/1512.02325; SSDLite, MobileNetV2
https://arxiv.org/abs/1801.04381) made to predict with mmdet 3.3.

NOTE mmdet 3.3.0's ``BaseDenseHead._predict_by_feat_single`` reads ``self.loss_cls``, which
``SSDHead`` never creates (it computes its classification loss itself), so SSD / SSDLite
``predict()`` fails with "'SSDHead' object has no attribute 'loss_cls'" (open-mmlab/mmdetection
issues #11305, #11780; the fix, PR #11524, is not released). This subclass only defines that
attribute; everything else is mmdet's. Configs use ``type='hybridvit.SSDHead'``.
"""
from mmdet.models.dense_heads import SSDHead as MMDetSSDHead

from hybridvit.registry import MODELS

__all__ = ['SSDHead']


@MODELS.register_module(name='SSDHead')
class SSDHead(MMDetSSDHead):
    """mmdet ``SSDHead`` with ``loss_cls = None`` (read, never used, by mmdet's predict)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_cls = None  # no custom classification channels: plain softmax scores
