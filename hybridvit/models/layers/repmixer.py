"""FastViT token mixers: RepMixer, the conditional positional encoding RepCPE, and a
PoolFormer pooling mixer for ablations; plus the RepMixer MetaFormer block.

Papers: FastViT, Vasu et al., ICCV 2023, https://arxiv.org/abs/2303.14189 (original code
https://github.com/apple/ml-fastvit, ``RepMixer`` / ``RepCPE`` / ``RepMixerBlock``; timm
``timm/models/fastvit.py``); CPE, Chu et al., https://arxiv.org/abs/2102.10882; PoolFormer /
MetaFormer, Yu et al., CVPR 2022, https://arxiv.org/abs/2111.11418
(https://github.com/sail-sg/poolformer).
"""
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from hybridvit.utils.errors import UserError
from .conv_bn import (build_fused_conv, conv_kernel_bias, fuse_into_reparam_conv,
                      identity_kernel)
from .conv_ffn import ConvFFN, DropPath, LayerScale2d
from .mobileone import MobileOneBlock

__all__ = ['RepMixer', 'RepCPE', 'PoolingMixer', 'RepMixerBlock']


class RepMixer(nn.Module):
    """Reparameterisable depthwise token mixer of `FastViT <https://arxiv.org/abs/2303.14189>`_.

    Training: ``x + gamma * (mixer(x) - norm(x))`` where ``mixer`` is a depthwise MobileOne
    conv-BN (kxk + 1x1 + BN identity branches, no activation) and ``norm`` a BN-only
    MobileOne block. Inference: one depthwise kxk conv with bias (``reparam_conv``).

    Args:
        dim: channels.
        kernel_size: depthwise kernel size.
        dilation: depthwise dilation (kept by the fused conv).
        layer_scale_init_value: initial ``gamma``; ``None`` for no layer scale.
        norm_cfg: mmcv config of the BatchNorms (``BN`` or ``SyncBN``).
        deploy: build only ``reparam_conv``.
    """

    def __init__(self, dim: int, kernel_size: int = 3, dilation: int = 1,
                 layer_scale_init_value: Optional[float] = 1e-5,
                 norm_cfg: Dict = dict(type='BN'), deploy: bool = False):
        super().__init__()
        self.dim = dim
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.deploy = deploy
        self.reparam_conv = None
        self.norm = None
        self.mixer = None
        self.layer_scale = None
        if deploy:
            self.reparam_conv = nn.Conv2d(dim, dim, kernel_size,
                                          padding=dilation * (kernel_size // 2),
                                          dilation=dilation, groups=dim, bias=True)
        else:
            self.norm = MobileOneBlock(dim, dim, kernel_size, dilation=dilation, groups=dim,
                                       num_conv_branches=0, use_scale_branch=False,
                                       norm_cfg=norm_cfg, act_cfg=None)
            self.mixer = MobileOneBlock(dim, dim, kernel_size, dilation=dilation, groups=dim,
                                        norm_cfg=norm_cfg, act_cfg=None)
            if layer_scale_init_value is not None:
                self.layer_scale = LayerScale2d(dim, layer_scale_init_value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            return self.reparam_conv(x)
        branch = self.mixer(x) - self.norm(x)
        if self.layer_scale is not None:
            branch = self.layer_scale(branch)
        return x + branch

    @torch.no_grad()
    def get_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Depthwise weight ``(dim, 1, k, k)`` and bias of the equivalent single conv."""
        if self.reparam_conv is not None:
            return conv_kernel_bias(self.reparam_conv)
        w_mix, b_mix = self.mixer.get_kernel_bias()
        w_norm, b_norm = self.norm.get_kernel_bias()
        if self.layer_scale is not None:
            gamma = self.layer_scale.gamma.reshape(-1)  # (dim, 1, 1) -> (dim,)
        else:
            gamma = torch.ones_like(b_mix)
        w_id = identity_kernel(self.dim, self.dim, self.kernel_size, w_mix)
        weight = w_id + gamma.reshape(-1, 1, 1, 1) * (w_mix - w_norm)
        bias = gamma * (b_mix - b_norm)
        return weight, bias

    def reparameterize(self) -> None:
        """Replace mixer, norm and layer scale by ``reparam_conv`` (idempotent)."""
        fuse_into_reparam_conv(self, ('norm', 'mixer', 'layer_scale'), 1, self.dilation,
                               self.dim)


class RepCPE(nn.Module):
    """Reparameterisable conditional positional encoding (`CPE
    <https://arxiv.org/abs/2102.10882>`_ as used in `FastViT <https://arxiv.org/abs/2303.14189>`_).

    Training: ``x + pos_enc(x)`` with a depthwise kxk conv with bias. Inference: one
    depthwise conv (identity folded into the centre tap).

    Args:
        dim: channels.
        kernel_size: depthwise kernel size (FastViT: 7).
        dilation: dilation (kept by the fused conv).
        deploy: build only ``reparam_conv``.
    """

    def __init__(self, dim: int, kernel_size: int = 7, dilation: int = 1,
                 deploy: bool = False):
        super().__init__()
        self.dim = dim
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.deploy = deploy
        conv = nn.Conv2d(dim, dim, kernel_size, padding=dilation * (kernel_size // 2),
                         dilation=dilation, groups=dim, bias=True)
        self.reparam_conv = conv if deploy else None
        self.pos_enc = None if deploy else conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            return self.reparam_conv(x)
        return x + self.pos_enc(x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the identity into ``reparam_conv`` (idempotent)."""
        if self.reparam_conv is None:
            weight = self.pos_enc.weight + identity_kernel(self.dim, self.dim, self.kernel_size,
                                                           self.pos_enc.weight)
            self.reparam_conv = build_fused_conv(weight, self.pos_enc.bias, 1, self.dilation,
                                                 self.dim, training=self.training)
            self.pos_enc = None
        self.deploy = True


class PoolingMixer(nn.Module):
    """PoolFormer pooling token mixer with the RepMixer interface (`PoolFormer
    <https://arxiv.org/abs/2111.11418>`_).

    Computes ``x + gamma * (pool(x) - x)`` with a kxk stride-1 average pool that ignores the
    padding (``count_include_pad=False``). It replaces RepMixer for the deployment
    ablation; it has nothing to fuse.

    NOTE: PoolFormer applies a norm before the pool; like RepMixer (whose fused form has no
    norm either) this mixer has none.

    Args:
        dim: channels.
        pool_size: pooling window (odd).
        layer_scale_init_value: initial ``gamma``; ``None`` for no layer scale.
    """

    def __init__(self, dim: int, pool_size: int = 3,
                 layer_scale_init_value: Optional[float] = 1e-5):
        super().__init__()
        self.pool = nn.AvgPool2d(pool_size, stride=1, padding=pool_size // 2,
                                 count_include_pad=False)
        self.layer_scale = (LayerScale2d(dim, layer_scale_init_value)
                            if layer_scale_init_value is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.pool(x) - x
        if self.layer_scale is not None:
            branch = self.layer_scale(branch)
        return x + branch


class RepMixerBlock(nn.Module):
    """FastViT MetaFormer block with a RepMixer (or pooling) token mixer.

    ``x = token_mixer(x)`` (the mixer holds its own residual), then
    ``x = x + drop_path(gamma * ConvFFN(x))``. See `FastViT
    <https://arxiv.org/abs/2303.14189>`_.

    Args:
        dim: channels.
        kernel_size: RepMixer kernel size.
        mlp_ratio: ConvFFN expansion ratio.
        dilation: dilation of the RepMixer and ConvFFN depthwise convs.
        drop: dropout in the ConvFFN.
        drop_path: stochastic depth rate.
        layer_scale_init_value: initial layer scale, ``None`` for none.
        token_mixer: ``'repmixer'`` or ``'pooling'``.
        norm_cfg: mmcv config of the BatchNorms.
        act_cfg: mmcv config of the ConvFFN activation.
        deploy: build the fused convs only.
    """

    def __init__(self, dim: int, kernel_size: int = 3, mlp_ratio: float = 4.0,
                 dilation: int = 1, drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init_value: Optional[float] = 1e-5, token_mixer: str = 'repmixer',
                 norm_cfg: Dict = dict(type='BN'), act_cfg: Dict = dict(type='GELU'),
                 deploy: bool = False):
        super().__init__()
        if token_mixer == 'repmixer':
            self.token_mixer = RepMixer(dim, kernel_size, dilation=dilation,
                                        layer_scale_init_value=layer_scale_init_value,
                                        norm_cfg=norm_cfg, deploy=deploy)
        elif token_mixer == 'pooling':
            self.token_mixer = PoolingMixer(dim, kernel_size,
                                            layer_scale_init_value=layer_scale_init_value)
        else:
            raise UserError(f"RepMixerBlock: token_mixer must be 'repmixer' or 'pooling', got "
                            f'{token_mixer!r}')
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio), dilation=dilation, drop=drop,
                           norm_cfg=norm_cfg, act_cfg=act_cfg, deploy=deploy)
        self.layer_scale = (LayerScale2d(dim, layer_scale_init_value)
                            if layer_scale_init_value is not None else nn.Identity())
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.token_mixer(x)
        return x + self.drop_path(self.layer_scale(self.mlp(x)))
