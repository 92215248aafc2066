"""The FastViT attention block (self-attention token mixer + ConvFFN).

Paper: FastViT, Vasu et al., ICCV 2023, https://arxiv.org/abs/2303.14189 (original code
https://github.com/apple/ml-fastvit ``MHSA`` / ``AttentionBlock``; timm ``AttentionBlock`` in
``timm/models/fastvit.py``); attention from Vaswani et al., https://arxiv.org/abs/1706.03762.
The attention itself is timm's FastViT ``Attention`` (NCHW in and out, heads of 32 channels, no
qkv bias, ``scaled_dot_product_attention``); we keep the block for ``deploy`` / dilation /
``norm_cfg``.
"""
from typing import Dict, Optional

import torch
from timm.models.fastvit import Attention
from torch import nn

from .conv_bn import build_norm
from .conv_ffn import ConvFFN, DropPath, LayerScale2d

__all__ = ['AttentionBlock']


class AttentionBlock(nn.Module):
    """FastViT MetaFormer block with self-attention as token mixer.

    ``x = x + drop_path(gamma1 * Attention(BN(x)))``, then
    ``x = x + drop_path(gamma2 * ConvFFN(x))``. The norm is BatchNorm, not LayerNorm, as in
    `FastViT <https://arxiv.org/abs/2303.14189>`_.

    Args:
        dim: channels.
        mlp_ratio: ConvFFN expansion ratio.
        head_dim: channels per attention head.
        dilation: dilation of the ConvFFN depthwise conv.
        drop: dropout in the attention projection and ConvFFN.
        drop_path: stochastic depth rate.
        layer_scale_init_value: initial layer scales, ``None`` for none.
        norm_cfg: mmcv config of the pre-attention norm and the ConvFFN BatchNorm.
        act_cfg: mmcv config of the ConvFFN activation.
        deploy: build the ConvFFN depthwise conv already fused.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4.0, head_dim: int = 32,
                 dilation: int = 1, drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init_value: Optional[float] = 1e-5,
                 norm_cfg: Dict = dict(type='BN'), act_cfg: Dict = dict(type='GELU'),
                 deploy: bool = False):
        super().__init__()
        self.norm = build_norm(norm_cfg, dim)
        self.token_mixer = Attention(dim, head_dim=head_dim, proj_drop=drop)
        self.layer_scale_1 = (LayerScale2d(dim, layer_scale_init_value)
                              if layer_scale_init_value is not None else nn.Identity())
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio), dilation=dilation, drop=drop,
                           norm_cfg=norm_cfg, act_cfg=act_cfg, deploy=deploy)
        self.layer_scale_2 = (LayerScale2d(dim, layer_scale_init_value)
                              if layer_scale_init_value is not None else nn.Identity())
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        nn.init.trunc_normal_(self.token_mixer.qkv.weight, std=0.02)
        nn.init.trunc_normal_(self.token_mixer.proj.weight, std=0.02)
        nn.init.zeros_(self.token_mixer.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.layer_scale_1(self.token_mixer(self.norm(x))))
        return x + self.drop_path2(self.layer_scale_2(self.mlp(x)))
