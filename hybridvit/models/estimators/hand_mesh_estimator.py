"""Single-image 3D hand mesh estimator: backbone (+ optional neck) + :class:`HandMeshHead`.

The FastViT paper (Vasu et al., ICCV 2023, https://arxiv.org/abs/2303.14189) evaluates its
backbone on FreiHAND with a simple regression module; the official code
(https://github.com/apple/ml-fastvit) ships no hand-mesh model, so this one is ours.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement

from hybridvit.registry import MODELS


@MODELS.register_module()
class HandMeshEstimator(BaseModel):
    """Backbone + hand mesh head as an mmengine ``BaseModel`` (modes loss / predict / tensor).

    Paper context: https://arxiv.org/abs/2303.14189.

    Args:
        backbone (dict): backbone config, e.g. ``dict(type='hybridvit.FastViT', arch='ma36')``;
            its forward must return a tensor or a tuple of NCHW maps.
        head (dict): head config, e.g. ``dict(type='HandMeshHead', in_channels=608)``.
        neck (dict, optional): neck config applied to the backbone outputs.
        data_preprocessor (dict, optional): defaults to mmengine's ``ImgDataPreprocessor``
            without normalisation; set mean/std to match the backbone's pretraining.
        init_cfg (dict, optional): initialisation config.
    """

    def __init__(self, backbone: dict, head: dict, neck: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='ImgDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        self.head = MODELS.build(head)

    def extract_feat(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """(B, 3, H, W) normalised images -> tuple of feature maps."""
        feats = self.backbone(inputs)
        if isinstance(feats, torch.Tensor):
            feats = (feats,)
        if self.neck is not None:
            feats = self.neck(feats)
            if isinstance(feats, torch.Tensor):
                feats = (feats,)
        return tuple(feats)

    def forward(self, inputs: torch.Tensor,
                data_samples: Optional[Sequence[BaseDataElement]] = None,
                mode: str = 'tensor') -> Union[Dict[str, torch.Tensor], List[BaseDataElement]]:
        """Run in ``'loss'`` (dict of losses), ``'predict'`` (data samples with ``pred_joints``,
        ``pred_verts``, ``pred_keypoints_2d``, ``pred_cam``) or ``'tensor'`` (raw head dict)."""
        feats = self.extract_feat(inputs)
        if mode == 'loss':
            if data_samples is None:
                raise ValueError("mode='loss' needs data_samples with the ground truth")
            return self.head.loss(feats, data_samples)
        if mode == 'predict':
            return self.head.predict(feats, data_samples)
        if mode == 'tensor':
            return self.head(feats)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
