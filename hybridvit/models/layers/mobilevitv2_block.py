"""MobileViTv2 building blocks: separable (linear) self-attention and the MobileViTv2 block.

Paper: "Separable Self-attention for Mobile Vision Transformers", Mehta & Rastegari, TMLR 2023,
https://arxiv.org/abs/2206.02680.
Original code: https://github.com/apple/ml-cvnets (``cvnets/layers/linear_attention.py``,
``cvnets/modules/mobilevit_block.py`` ``MobileViTBlockv2``); the layer arrangement matches timm's
``mobilevitv2_*`` (``timm/models/mobilevit.py``: ``LinearSelfAttention``,
``LinearTransformerBlock``, ``MobileVitV2Block``) so that its weights load one-to-one. Written
from scratch for hybridvit.

The tokens stay channel-first, ``[B, d, P, N]`` (``P`` pixels per patch, ``N`` patches), so every
projection is a 1x1 conv and the transformer norm is a GroupNorm with one group over
``(d, P, N)`` (cvnets' ``layer_norm_2d``), as in the paper. The conv-BN units are
:class:`~hybridvit.models.layers.conv_bn.ConvNormAct`, which ``reparameterize()`` folds.
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from hybridvit.utils.errors import UserError
from .conv_bn import ConvBN, ConvNormAct, build_act, build_norm

__all__ = ['LinearSelfAttention', 'LinearTransformerLayer', 'MobileViTv2Block']


class LinearSelfAttention(nn.Module):
    """Separable self-attention with linear cost in the number of tokens.

    Paper: https://arxiv.org/abs/2206.02680 (Fig. 4c). One 1x1 conv ``qkv_proj`` gives a
    single-channel query ``q`` (context scores), keys ``k`` and values ``v`` (``d`` channels
    each, in that order, as in cvnets and timm); ``softmax(q)`` over the ``N`` patches weights
    the keys into one context vector per pixel position, which scales ``relu(v)``; a 1x1 conv
    ``out_proj`` follows.

    Args:
        embed_dim: token dimension ``d``.
        attn_drop: dropout on the context scores.
        proj_drop: dropout after ``out_proj``.
    """

    def __init__(self, embed_dim: int, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.embed_dim = embed_dim
        self.qkv_proj = nn.Conv2d(embed_dim, 1 + 2 * embed_dim, 1, bias=True)
        self.attn_drop = nn.Dropout(attn_drop)
        self.out_proj = nn.Conv2d(embed_dim, embed_dim, 1, bias=True)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, d, P, N] -> q [B, 1, P, N], k / v [B, d, P, N]
        query, key, value = self.qkv_proj(x).split([1, self.embed_dim, self.embed_dim], dim=1)
        scores = self.attn_drop(F.softmax(query, dim=-1))  # over the N patches
        context = (key * scores).sum(dim=-1, keepdim=True)  # [B, d, P, 1]
        out = F.relu(value) * context  # [B, d, P, N]
        return self.proj_drop(self.out_proj(out))


class LinearTransformerLayer(nn.Module):
    """Pre-norm transformer layer with separable self-attention, on ``[B, d, P, N]`` tokens.

    ``x + attn(norm1(x))``, then ``x + FFN(norm2(x))`` with a 1x1-conv FFN
    (``fc1`` -> act -> ``fc2``), as cvnets' ``LinearAttnFFN`` and timm's
    ``LinearTransformerBlock``.

    Args:
        dim: token dimension ``d``.
        mlp_ratio: FFN hidden width = ``int(dim * mlp_ratio)``.
        norm_cfg: mmcv config of the two norms (``dict(type='GN', num_groups=1)``).
        act_cfg: mmcv config of the FFN activation (SiLU).
        drop: dropout after the attention projection and in the FFN.
        attn_drop: dropout on the context scores.
        drop_path: stochastic depth of both residual branches.
    """

    def __init__(self, dim: int, mlp_ratio: float = 2.0,
                 norm_cfg: Dict = dict(type='GN', num_groups=1),
                 act_cfg: Dict = dict(type='SiLU'), drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = build_norm(norm_cfg, dim)
        self.attn = LinearSelfAttention(dim, attn_drop=attn_drop, proj_drop=drop)
        self.norm2 = build_norm(norm_cfg, dim)
        self.mlp = nn.Sequential()
        self.mlp.add_module('fc1', nn.Conv2d(dim, hidden, 1, bias=True))
        self.mlp.add_module('act', build_act(act_cfg))
        if drop > 0:
            self.mlp.add_module('drop1', nn.Dropout(drop))
        self.mlp.add_module('fc2', nn.Conv2d(hidden, dim, 1, bias=True))
        if drop > 0:
            self.mlp.add_module('drop2', nn.Dropout(drop))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class MobileViTv2Block(nn.Module):
    """MobileViTv2 block: depthwise local conv, linear-attention transformer over patches.

    Paper: https://arxiv.org/abs/2206.02680 (Sec. 3.2). ``conv_local`` (3x3 depthwise
    conv-BN-act) and ``conv_embed`` (1x1 conv to ``transformer_dim``, no norm) give the local
    representation; the map is unfolded into ``patch_size x patch_size`` patches
    (``[B, d, P, N]``), ``depth`` :class:`LinearTransformerLayer` s and a final norm follow; the
    result is folded back and projected to ``out_channels`` by ``conv_proj`` (1x1 conv-BN, no
    activation). Unlike v1 there is no concatenation with the input and no fusion conv.

    MobileViTv3 (https://arxiv.org/abs/2209.15159, v2-based variants; authors' code
    https://github.com/micronDLA/MobileViTv3 ``MobileViTBlockv3``) is ``fuse_local=True``:
    ``conv_proj`` takes the concatenation of the global (folded) and local (``conv_embed``
    output) features, ``2d -> out_channels``, and the block input is added to its output.

    NOTE: like cvnets and timm, a map whose size is not a multiple of ``patch_size`` is resized
    (bilinear, ``align_corners=True``) up to the next multiple *before* ``conv_local`` and the
    block returns that larger map (v1 resizes back). Shapes therefore equal timm's for any
    input size (e.g. 112x137 gives 8x10 at stride 16).

    Args:
        in_channels: input channels.
        transformer_dim: token dimension ``d`` (``in_channels / 2`` in MobileViTv2).
        out_channels: output channels (default ``in_channels``).
        depth: number of transformer layers.
        mlp_ratio: FFN width ratio.
        patch_size: square patch side.
        dilation: dilation of ``conv_local`` (output stride 16 / 8).
        norm_cfg: mmcv config of the conv BatchNorms.
        act_cfg: mmcv activation config (convs and FFN).
        transformer_norm_cfg: mmcv config of the transformer norms (GroupNorm with one group).
        drop: transformer dropout.
        attn_drop: context-score dropout.
        drop_path: stochastic depth of the transformer layers (one rate, or one per layer).
        fuse_local: MobileViTv3 fusion (local + global into ``conv_proj``, input residual;
            needs ``out_channels == in_channels``).
        deploy: build BN-free (fused) convs.
    """

    def __init__(self, in_channels: int, transformer_dim: int,
                 out_channels: Optional[int] = None, depth: int = 2, mlp_ratio: float = 2.0,
                 patch_size: int = 2, dilation: int = 1, norm_cfg: Dict = dict(type='BN'),
                 act_cfg: Dict = dict(type='SiLU'),
                 transformer_norm_cfg: Dict = dict(type='GN', num_groups=1),
                 drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: Union[float, Sequence[float]] = 0.0, fuse_local: bool = False,
                 deploy: bool = False):
        super().__init__()
        if patch_size < 1:
            raise UserError(f'MobileViTv2Block: patch_size must be >= 1, got {patch_size}')
        out_channels = out_channels or in_channels
        rates = [float(drop_path)] * depth if isinstance(drop_path, (int, float)) else drop_path
        if len(rates) != depth:
            raise UserError(f'MobileViTv2Block: drop_path needs one rate or {depth}, got '
                            f'{drop_path}')
        if fuse_local and out_channels != in_channels:
            raise UserError('MobileViTv2Block: fuse_local (MobileViTv3) adds the input: '
                            f'out_channels must equal in_channels, got {out_channels} and '
                            f'{in_channels}')
        self.patch_size = patch_size
        self.fuse_local = fuse_local
        self.conv_local = ConvNormAct(in_channels, in_channels, 3, dilation=dilation,
                                      groups=in_channels, norm_cfg=norm_cfg, act_cfg=act_cfg,
                                      deploy=deploy)
        self.conv_embed = nn.Conv2d(in_channels, transformer_dim, 1, bias=False)
        self.transformer = nn.Sequential(*[
            LinearTransformerLayer(transformer_dim, mlp_ratio, norm_cfg=transformer_norm_cfg,
                                   act_cfg=act_cfg, drop=drop, attn_drop=attn_drop,
                                   drop_path=rates[k]) for k in range(depth)])
        self.norm = build_norm(transformer_norm_cfg, transformer_dim)
        self.conv_proj = ConvBN(transformer_dim * (2 if fuse_local else 1), out_channels, 1,
                                norm_cfg=norm_cfg, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        p = self.patch_size
        new_h, new_w = (height + p - 1) // p * p, (width + p - 1) // p * p
        # a trace records Python branches as constants: while tracing always record the resize
        # (exact at an unchanged size with align_corners=True), so an export takes any size
        if torch.jit.is_tracing() or (new_h, new_w) != (height, width):
            x = F.interpolate(x, size=(new_h, new_w), mode='bilinear', align_corners=True)
        local = self.conv_embed(self.conv_local(x))
        batch, dim = local.shape[:2]
        n_h, n_w = new_h // p, new_w // p
        # unfold: [B, d, n_h*p, n_w*p] -> [B, d, n_h, p, n_w, p] -> [B, d, p, p, n_h, n_w]
        #   -> [B, d, P, N] with P = p*p pixel positions and N = n_h*n_w patches
        y = local.reshape(batch, dim, n_h, p, n_w, p).permute(0, 1, 3, 5, 2, 4)
        y = y.reshape(batch, dim, p * p, n_h * n_w)
        y = self.norm(self.transformer(y))
        # fold: [B, d, P, N] -> [B, d, p, p, n_h, n_w] -> [B, d, n_h, p, n_w, p] -> [B, d, H', W']
        y = y.reshape(batch, dim, p, p, n_h, n_w).permute(0, 1, 4, 2, 5, 3)
        y = y.reshape(batch, dim, new_h, new_w)
        if not self.fuse_local:
            return self.conv_proj(y)
        # MobileViTv3: [global, local] (cvnets' order) -> 1x1, plus the (resized) input
        return self.conv_proj(torch.cat((y, local), dim=1)) + x
