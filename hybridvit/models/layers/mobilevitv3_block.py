"""MobileViTv3 block, MobileViT-v1-based variant (XXS / XS / S).

Paper: "MobileViTv3: Mobile-Friendly Vision Transformer with Simple and Effective Fusion of Local,
Global and Input Features", Wadekar & Chaurasia, 2022, https://arxiv.org/abs/2209.15159.
Authors' code: https://github.com/micronDLA/MobileViTv3 (``MobileViTv3-v1/cvnets/modules/
mobilevit_block.py``, ``MobileViTv3Block``). Written from scratch for hybridvit. The v2-based
variants (0.5 / 0.75 / 1.0) use :class:`~.mobilevitv2_block.MobileViTv2Block` with
``fuse_local=True``.
"""
from typing import Dict

import torch

from .conv_bn import ConvNormAct
from .mobilevit_block import MobileViTBlock

__all__ = ['MobileViTv3Block']


class MobileViTv3Block(MobileViTBlock):
    """MobileViT v1 block with the three MobileViTv3 changes (arXiv 2209.15159, Fig. 1b).

    1. ``conv_local`` is a 3x3 *depthwise* conv-BN-act;
    2. ``conv_fusion`` is a 1x1 conv-BN-act over the concatenation of the *local* features
       (``conv_embed`` output, ``transformer_dim`` channels) and the projected global features
       (``in_channels``), in that order as in the authors' code;
    3. the block input is added to the output.

    The unfold / transformer / fold path is v1's (:class:`MobileViTBlock`, resize to a multiple of
    the patch and back), and so are the parameter names, so the authors' cvnets-layout
    checkpoints convert with the v1 rules.

    NOTE: the authors' segmentation backbone does not pass the dilation to this block (its local
    conv stays undilated at output stride 16 / 8); here ``dilation`` dilates ``conv_local`` as in
    v1 and v2 (no parameter changes).

    Args: as :class:`MobileViTBlock`.
    """

    def __init__(self, in_channels: int, transformer_dim: int, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 2.0, patch_size: int = 2,
                 dilation: int = 1, norm_cfg: Dict = dict(type='BN'),
                 act_cfg: Dict = dict(type='SiLU'), drop: float = 0.0,
                 attn_drop: float = 0.0, deploy: bool = False):
        super().__init__(in_channels, transformer_dim, depth=depth, num_heads=num_heads,
                         mlp_ratio=mlp_ratio, patch_size=patch_size, dilation=dilation,
                         norm_cfg=norm_cfg, act_cfg=act_cfg, drop=drop, attn_drop=attn_drop,
                         deploy=deploy)
        # the two convs MobileViTv3 changes (v1's 3x3 dense local / 3x3 fusion are replaced)
        self.conv_local = ConvNormAct(in_channels, in_channels, 3, dilation=dilation,
                                      groups=in_channels, norm_cfg=norm_cfg, act_cfg=act_cfg,
                                      deploy=deploy)
        self.conv_fusion = ConvNormAct(transformer_dim + in_channels, in_channels, 1,
                                       norm_cfg=norm_cfg, act_cfg=act_cfg, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.conv_embed(self.conv_local(x))
        y = self.conv_proj(self._global(local))
        return x + self.conv_fusion(torch.cat((local, y), dim=1))
