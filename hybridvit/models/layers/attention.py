"""Multi-head self-attention on NCHW maps and the FastViT attention block.

Paper: FastViT, Vasu et al., ICCV 2023, https://arxiv.org/abs/2303.14189 (original code
https://github.com/apple/ml-fastvit ``MHSA`` / ``AttentionBlock``; timm ``Attention`` /
``AttentionBlock`` in ``timm/models/fastvit.py``); attention from Vaswani et al.,
https://arxiv.org/abs/1706.03762.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .conv_ffn import ConvFFN, DropPath, LayerScale2d

__all__ = ['Attention', 'AttentionBlock']


class Attention(nn.Module):
    """Multi-head self-attention over all positions of an NCHW map.

    As in `FastViT <https://arxiv.org/abs/2303.14189>`_: heads of ``head_dim`` (32)
    channels, no qkv bias, biased output projection; computed with
    ``torch.nn.functional.scaled_dot_product_attention``.

    Args:
        dim: channels (a multiple of ``head_dim``).
        head_dim: channels per head.
        qkv_bias: bias in the qkv projection.
        attn_drop: attention dropout (training only).
        proj_drop: dropout after the output projection.
    """

    def __init__(self, dim: int, head_dim: int = 32, qkv_bias: bool = False,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % head_dim:
            raise ValueError(f'dim ({dim}) must be a multiple of head_dim ({head_dim})')
        self.head_dim = head_dim
        self.num_heads = dim // head_dim
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        N = H * W
        x = x.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, N, C)
        # (B, N, 3C) -> (B, N, 3, heads, head_dim) -> (3, B, heads, N, head_dim)
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(B, N, C)  # (B, heads, N, hd) -> (B, N, C)
        x = self.proj_drop(self.proj(x))
        return x.transpose(1, 2).reshape(B, C, H, W)  # (B, N, C) -> (B, C, H, W)


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
        deploy: build the ConvFFN depthwise conv already fused.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4.0, head_dim: int = 32,
                 dilation: int = 1, drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init_value: Optional[float] = 1e-5, deploy: bool = False):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)
        self.token_mixer = Attention(dim, head_dim=head_dim, proj_drop=drop)
        self.layer_scale_1 = (LayerScale2d(dim, layer_scale_init_value)
                              if layer_scale_init_value is not None else nn.Identity())
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio), dilation=dilation, drop=drop,
                           deploy=deploy)
        self.layer_scale_2 = (LayerScale2d(dim, layer_scale_init_value)
                              if layer_scale_init_value is not None else nn.Identity())
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        nn.init.trunc_normal_(self.token_mixer.qkv.weight, std=0.02)
        nn.init.trunc_normal_(self.token_mixer.proj.weight, std=0.02)
        nn.init.zeros_(self.token_mixer.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.layer_scale_1(self.token_mixer(self.norm(x))))
        return x + self.drop_path2(self.layer_scale_2(self.mlp(x)))
