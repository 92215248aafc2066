"""FastViT convolutional FFN and the residual-branch helpers shared by FastViT blocks.

Paper: "FastViT: A Fast Hybrid Vision Transformer using Structural Reparameterization",
Vasu et al., ICCV 2023, https://arxiv.org/abs/2303.14189; original code
https://github.com/apple/ml-fastvit (``ConvFFN``); timm ``ConvMlp`` in
``timm/models/fastvit.py``. Layer scale: CaiT (https://arxiv.org/abs/2103.17239); drop path
(stochastic depth): https://arxiv.org/abs/1603.09382.
"""
from typing import Optional, Type

import torch
from torch import nn

from .conv_bn import ConvBN

__all__ = ['ConvFFN', 'LayerScale2d', 'DropPath']


class LayerScale2d(nn.Module):
    """Learnable per-channel scale ``x * gamma`` for NCHW maps (`CaiT
    <https://arxiv.org/abs/2103.17239>`_).

    Args:
        dim: channels.
        init_value: initial value of every entry of ``gamma`` (shape ``(dim, 1, 1)``, as in
            the official and timm checkpoints).
    """

    def __init__(self, dim: int, init_value: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class DropPath(nn.Module):
    """Stochastic depth per sample (`Huang et al. <https://arxiv.org/abs/1603.09382>`_).

    Args:
        drop_prob: probability of dropping the residual branch of a sample in training.
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f'drop_prob must be in [0, 1), got {drop_prob}')
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # (B, 1, 1, 1): one draw per sample
        mask = x.new_empty(mask_shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


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
        act_layer: activation class.
        drop: dropout after both 1x1 convs.
        deploy: build the depthwise conv already fused.
    """

    def __init__(self, in_channels: int, hidden_channels: Optional[int] = None,
                 out_channels: Optional[int] = None, kernel_size: int = 7, dilation: int = 1,
                 act_layer: Type[nn.Module] = nn.GELU, drop: float = 0.0,
                 deploy: bool = False):
        super().__init__()
        out_channels = out_channels or in_channels
        hidden_channels = hidden_channels or in_channels
        self.conv = ConvBN(in_channels, out_channels, kernel_size, dilation=dilation,
                           groups=in_channels, deploy=deploy)
        self.fc1 = nn.Conv2d(out_channels, hidden_channels, 1)
        self.act = act_layer()
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
