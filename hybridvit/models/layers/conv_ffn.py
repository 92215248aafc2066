"""FastViT convolutional FFN.

Paper: "FastViT: A Fast Hybrid Vision Transformer using Structural Reparameterization",
Vasu et al., ICCV 2023, https://arxiv.org/abs/2303.14189; original code
https://github.com/apple/ml-fastvit (``ConvFFN``); timm ``ConvMlp`` in
``timm/models/fastvit.py``.

The residual-branch helpers of the FastViT blocks come from timm: ``DropPath`` (stochastic
depth, https://arxiv.org/abs/1603.09382) and FastViT's ``LayerScale2d`` (CaiT,
https://arxiv.org/abs/2103.17239; ``gamma`` of shape ``(dim, 1, 1)`` as in the official and timm
checkpoints). They are re-exported here so the blocks import them from one place.
"""
from typing import Dict, Optional

import torch
from timm.layers import DropPath
from timm.models.fastvit import LayerScale2d
from torch import nn

from .conv_bn import ConvBN, build_act

__all__ = ['ConvFFN', 'LayerScale2d', 'DropPath']


class ConvFFN(nn.Module):
    """FastViT convolutional FFN: 7x7 depthwise conv-BN, 1x1 expand, GELU, 1x1 project.

    From `FastViT <https://arxiv.org/abs/2303.14189>`_. The depthwise conv-BN is a
    :class:`ConvBN`, so :func:`hybridvit.models.utils.reparameterize_model` folds its BN.

    NOTE: timm and the official code keep this BN at inference; we fold it (identical
    output, one op fewer). Fused official/timm checkpoints still load: the converter folds
    the BN into the conv when building ``deploy=True`` state dicts.

    Args:
        in_channels: input channels.
        hidden_channels: expanded channels (``in_channels * mlp_ratio``).
        out_channels: output channels (default ``in_channels``).
        kernel_size: depthwise kernel size.
        dilation: depthwise conv dilation (2 in a dilated stage).
        norm_cfg: mmcv config of the depthwise conv's BatchNorm.
        act_cfg: mmcv activation config.
        drop: dropout after both 1x1 convs.
        deploy: build the depthwise conv already fused.
    """

    def __init__(self, in_channels: int, hidden_channels: Optional[int] = None,
                 out_channels: Optional[int] = None, kernel_size: int = 7, dilation: int = 1,
                 norm_cfg: Dict = dict(type='BN'), act_cfg: Dict = dict(type='GELU'),
                 drop: float = 0.0, deploy: bool = False):
        super().__init__()
        out_channels = out_channels or in_channels
        hidden_channels = hidden_channels or in_channels
        self.conv = ConvBN(in_channels, out_channels, kernel_size, dilation=dilation,
                           groups=in_channels, norm_cfg=norm_cfg, deploy=deploy)
        self.fc1 = nn.Conv2d(out_channels, hidden_channels, 1)
        self.act = build_act(act_cfg)
        self.fc2 = nn.Conv2d(hidden_channels, out_channels, 1)
        self.drop = nn.Dropout(drop)
        for m in (self.fc1, self.fc2):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.conv.conv.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.fc1(x)
        x = self.act(x)
        x = self.drop(x)
        x = self.fc2(x)
        x = self.drop(x)
        return x
