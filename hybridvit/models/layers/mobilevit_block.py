"""MobileViT v1 building blocks: inverted residual (MV2) and the MobileViT block.

Paper: "MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer",
Mehta & Rastegari, ICLR 2022, https://arxiv.org/abs/2110.02178.
Original code: https://github.com/apple/ml-cvnets (``cvnets/modules/mobilevit_block.py``,
``cvnets/layers/multi_head_attention.py``); the layer arrangement matches timm's
``mobilevit_xxs/xs/s`` (``timm/models/mobilevit.py`` + ``byobnet.py``) so that its weights load
one-to-one. Written from scratch for hybridvit.

Every conv-BN(-act) unit is a :class:`~hybridvit.models.layers.conv_bn.ConvNormAct`, so
``reparameterize()`` on each of them (see ``MobileViT.switch_to_deploy``) folds all BatchNorms;
MobileViT v1 has no multi-branch blocks. The attention is timm's ``Attention`` (fused qkv laid out
``[q, k, v]`` as in cvnets, so their weights load unchanged).
"""
from typing import Dict

import torch
import torch.nn.functional as F
from timm.layers import Attention, make_divisible
from torch import nn

from hybridvit.utils.errors import UserError
from .conv_bn import ConvNormAct, build_act

__all__ = ['InvertedResidual', 'TransformerLayer',
           'MobileViTBlock']


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted residual ("MV2"): 1x1 expand -> 3x3 depthwise -> 1x1 linear project.

    Paper: MobileNetV2, https://arxiv.org/abs/1801.04381 (used by MobileViT,
    https://arxiv.org/abs/2110.02178). The residual is added when ``stride == 1`` and
    ``in_channels == out_channels``; the projection has no activation.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the depthwise conv (1 or 2).
        expand_ratio: hidden width = ``make_divisible(in_channels * expand_ratio)`` (timm's
            MobileNetV2 rounding, so channel counts match the cvnets / timm checkpoints).
        dilation: dilation of the depthwise conv.
        norm_cfg: mmcv config of the BatchNorms.
        act_cfg: mmcv config of the activation after the expand and depthwise convs.
        deploy: build BN-free (fused) convs.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 expand_ratio: float = 4.0, dilation: int = 1,
                 norm_cfg: Dict = dict(type='BN'), act_cfg: Dict = dict(type='SiLU'),
                 deploy: bool = False):
        super().__init__()
        if stride not in (1, 2):
            raise UserError(f'InvertedResidual stride must be 1 or 2, got {stride}')
        hidden = make_divisible(in_channels * expand_ratio)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand_conv = ConvNormAct(in_channels, hidden, 1, norm_cfg=norm_cfg,
                                       act_cfg=act_cfg, deploy=deploy)
        self.dw_conv = ConvNormAct(hidden, hidden, 3, stride=stride, dilation=dilation,
                                   groups=hidden, norm_cfg=norm_cfg, act_cfg=act_cfg,
                                   deploy=deploy)
        self.project_conv = ConvNormAct(hidden, out_channels, 1, norm_cfg=norm_cfg,
                                        act_cfg=None, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project_conv(self.dw_conv(self.expand_conv(x)))
        return out + x if self.use_residual else out


class TransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer: ``x + MHSA(LN(x))``, then ``x + FFN(LN(x))``.

    Args:
        dim: token dimension.
        num_heads: attention heads.
        mlp_ratio: FFN hidden width = ``dim * mlp_ratio`` (2 in MobileViT v1).
        act_cfg: mmcv config of the FFN activation (SiLU in MobileViT v1).
        drop: dropout after the attention projection and in the FFN.
        attn_drop: dropout on the attention weights.
    """

    def __init__(self, dim: int, num_heads: int = 4, mlp_ratio: float = 2.0,
                 act_cfg: Dict = dict(type='SiLU'), drop: float = 0.0,
                 attn_drop: float = 0.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=True, attn_drop=attn_drop,
                              proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential()
        self.mlp.add_module('fc1', nn.Linear(dim, hidden))
        self.mlp.add_module('act', build_act(act_cfg))
        if drop > 0:
            self.mlp.add_module('drop1', nn.Dropout(drop))
        self.mlp.add_module('fc2', nn.Linear(hidden, dim))
        if drop > 0:
            self.mlp.add_module('drop2', nn.Dropout(drop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileViTBlock(nn.Module):
    """MobileViT block: local conv features, global transformer over patches, conv fusion.

    Paper: https://arxiv.org/abs/2110.02178 (Fig. 1b). ``conv_local`` (3x3 conv-BN-act) and
    ``conv_embed`` (1x1 conv to ``transformer_dim``, no norm) give the local representation;
    the map is unfolded into ``patch_size x patch_size`` patches so that each of the ``P``
    pixel positions of a patch attends over the ``N`` patches; ``depth`` transformer layers and
    a LayerNorm follow; the result is folded back, projected to ``in_channels`` by
    ``conv_proj`` (1x1 conv-BN-act), concatenated with the block input and fused by a 3x3
    conv-BN-act (``conv_fusion``).

    A feature map whose size is not a multiple of ``patch_size`` is bilinearly resized up to
    the next multiple before unfolding and back after folding (as cvnets and timm do), so any
    input size works.

    Args:
        in_channels: input (= output) channels.
        transformer_dim: token dimension ``d``.
        depth: number of transformer layers.
        num_heads: attention heads.
        mlp_ratio: FFN width ratio.
        patch_size: square patch side.
        dilation: dilation of ``conv_local`` (used for output stride 16 / 8; ``conv_fusion``
            stays undilated, as in cvnets and timm).
        norm_cfg: mmcv config of the conv BatchNorms.
        act_cfg: mmcv activation config for the convs and the FFN.
        drop: transformer dropout.
        attn_drop: attention-weight dropout.
        deploy: build BN-free (fused) convs.
    """

    def __init__(self, in_channels: int, transformer_dim: int, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 2.0, patch_size: int = 2,
                 dilation: int = 1, norm_cfg: Dict = dict(type='BN'),
                 act_cfg: Dict = dict(type='SiLU'), drop: float = 0.0,
                 attn_drop: float = 0.0, deploy: bool = False):
        super().__init__()
        if patch_size < 1:
            raise UserError(f'MobileViTBlock: patch_size must be >= 1, got {patch_size}')
        self.patch_size = patch_size
        self.conv_local = ConvNormAct(in_channels, in_channels, 3, dilation=dilation,
                                      norm_cfg=norm_cfg, act_cfg=act_cfg, deploy=deploy)
        self.conv_embed = nn.Conv2d(in_channels, transformer_dim, 1, bias=False)
        self.transformer = nn.Sequential(*[
            TransformerLayer(transformer_dim, num_heads, mlp_ratio, act_cfg=act_cfg,
                             drop=drop, attn_drop=attn_drop) for _ in range(depth)])
        self.norm = nn.LayerNorm(transformer_dim)
        self.conv_proj = ConvNormAct(transformer_dim, in_channels, 1, norm_cfg=norm_cfg,
                                     act_cfg=act_cfg, deploy=deploy)
        self.conv_fusion = ConvNormAct(2 * in_channels, in_channels, 3, norm_cfg=norm_cfg,
                                       act_cfg=act_cfg, deploy=deploy)

    def _global(self, x: torch.Tensor) -> torch.Tensor:
        """Unfold into patches, run the transformer, fold back (same shape as ``x``)."""
        batch, dim, height, width = x.shape
        p = self.patch_size
        # round up to a multiple of the patch (integer arithmetic keeps ONNX tracing dynamic)
        new_h, new_w = (height + p - 1) // p * p, (width + p - 1) // p * p
        # a trace records Python branches as constants: while tracing, always record the resize
        # (exact when the size is already a multiple), so an exported graph takes any size
        resized = torch.jit.is_tracing() or (new_h, new_w) != (height, width)
        if resized:
            x = F.interpolate(x, size=(new_h, new_w), mode='bilinear', align_corners=False)
        n_h, n_w = new_h // p, new_w // p
        # [B, d, n_h*p, n_w*p] -> [B, d, n_h, p, n_w, p] -> [B, p, p, n_h, n_w, d]
        #   -> [B*P, N, d] with P = p*p pixel positions and N = n_h*n_w patches
        x = x.reshape(batch, dim, n_h, p, n_w, p).permute(0, 3, 5, 2, 4, 1)
        x = x.reshape(batch * p * p, n_h * n_w, dim)
        x = self.norm(self.transformer(x))
        # [B*P, N, d] -> [B, p, p, n_h, n_w, d] -> [B, d, n_h, p, n_w, p] -> [B, d, H', W']
        x = x.reshape(batch, p, p, n_h, n_w, dim).permute(0, 5, 3, 1, 4, 2)
        x = x.reshape(batch, dim, new_h, new_w)
        if resized:
            x = F.interpolate(x, size=(height, width), mode='bilinear', align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_embed(self.conv_local(x))
        y = self.conv_proj(self._global(y))
        return self.conv_fusion(torch.cat((x, y), dim=1))
