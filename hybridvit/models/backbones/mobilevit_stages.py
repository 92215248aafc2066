"""What the MobileViT v1 / v2 / v3 backbones share: the MV2 stage layout with its dilation
schedule, the forward pass, the frozen modules and cvnets' from-scratch initialisation.

All three (https://arxiv.org/abs/2110.02178, https://arxiv.org/abs/2206.02680,
https://arxiv.org/abs/2209.15159) have a 3x3 stride-2 stem and five stages L1..L5 at strides
2..32: MobileNetV2 inverted residuals ("MV2"), the first one strided (except in L1), and in
L3..L5 one family-specific global block after them. For ``output_stride`` 16 (8) the stride-2
MV2 of L5 (and L4) gets stride 1 and the following 3x3 convs are dilated (2, then 4), as in cvnets'
DeepLabv3 and timm: the strided MV2's depthwise conv keeps the preceding dilation, the blocks
after it take the new one.
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hybridvit.utils.errors import UserError
from ..layers.conv_bn import ConvNormAct
from ..layers.mobilevit_block import InvertedResidual
from ..utils.checkpoint import CheckpointMismatchError
from .base import HybridBackbone

__all__ = ['MobileViTFamily', 'build_mv2_stages', 'init_from_scratch', 'convert_checked']

# (stage index, out channels, dilation) -> the global block of L3..L5
GlobalBlockFn = Callable[[int, int, int], nn.Module]


def build_mv2_stages(stem_channels: int, channels: Sequence[int], mv2_blocks: Sequence[int],
                     expand_ratio: float, output_stride: int, global_block: GlobalBlockFn,
                     norm_act: Dict, deploy: bool
                     ) -> Tuple[nn.Module, nn.ModuleList, List[int], int]:
    """Build the stem and the five stages.

    Args:
        stem_channels: stem output channels.
        channels: output channels of L1..L5.
        mv2_blocks: MV2 blocks per stage.
        expand_ratio: MV2 expansion.
        output_stride: 32, 16 or 8.
        global_block: called as ``global_block(i, out_channels, dilation)`` for i = 2, 3, 4.
        norm_act: ``dict(norm_cfg=..., act_cfg=...)`` of the convs.
        deploy: build fused convs.

    Returns:
        ``(stem, stages, strides, last_channels)``: ``strides`` per stage.
    """
    stem = ConvNormAct(3, stem_channels, 3, stride=2, deploy=deploy, **norm_act)
    in_ch, net_stride, dilation = stem_channels, 2, 1
    stages, strides = nn.ModuleList(), []
    for i, out_ch in enumerate(channels):
        stride = 1 if i == 0 else 2
        prev_dilation = dilation
        if stride > 1 and net_stride >= output_stride:
            dilation *= stride
            stride = 1
        net_stride *= stride
        blocks = []
        for j in range(mv2_blocks[i]):
            blocks.append(InvertedResidual(
                in_ch, out_ch, stride=stride if j == 0 else 1, expand_ratio=expand_ratio,
                dilation=prev_dilation if j == 0 else dilation, deploy=deploy, **norm_act))
            in_ch = out_ch
        if i >= 2:
            blocks.append(global_block(i, out_ch, dilation))
        stages.append(nn.Sequential(*blocks))
        strides.append(net_stride)
    return stem, stages, strides, in_ch


class MobileViTFamily(HybridBackbone):
    """Base of the MobileViT v1 / v2 / v3 backbones: subclasses build ``stem`` and ``stages``
    L1..L5 (:func:`build_mv2_stages`) and call :meth:`_finish_stages`, which adds ``final_conv``
    (the 1x1 expansion after L5 of v1 / v3; ``None`` for v2).

    It provides the forward pass, the frozen modules and cvnets' from-scratch initialisation.
    """

    def _set_output_stride(self, output_stride: int) -> None:
        if output_stride not in (8, 16, 32):
            raise UserError(f'{type(self).__name__}: output_stride must be 8, 16 or 32, got '
                            f'{output_stride!r}')
        self.output_stride = output_stride

    def _finish_stages(self, strides: Sequence[int], in_channels: int,
                       final_channels: Optional[int], norm_act: Dict, deploy: bool) -> None:
        """Add the 1x1 expansion after L5 (when ``final_channels``), set ``out_channels`` /
        ``out_strides`` for ``out_indices`` and freeze ``frozen_stages``."""
        stage_channels = list(self.arch_settings['channels'])
        self.final_conv = None
        if final_channels:
            self.final_conv = ConvNormAct(in_channels, final_channels, 1, deploy=deploy,
                                          **norm_act)
            stage_channels[-1] = final_channels
        self.out_channels = [stage_channels[i] for i in self.out_indices]
        self.out_strides = [strides[i] for i in self.out_indices]
        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Return the maps of ``out_indices`` (NCHW, in increasing stride). Stages after the
        last of ``out_indices`` are not computed; ``final_conv`` (if any) follows L5."""
        final_conv = self.final_conv  # set by _finish_stages (None: no final expansion)
        outs = []
        x = self.run_checkpointed(self.stem, x)
        last = self.num_stages - 1
        for i in range(self.out_indices[-1] + 1):
            for block in self.stages[i]:
                x = self.run_checkpointed(block, x)
            if i in self.out_indices:
                if i == last and final_conv is not None:
                    outs.append(self.run_checkpointed(final_conv, x))
                else:
                    outs.append(x)
        return tuple(outs)

    def frozen_modules(self) -> List[nn.Module]:
        """The stem, L1..L(frozen_stages) and, when every stage is frozen, ``final_conv``."""
        modules = [self.stem] + list(self.stages[:self.frozen_stages])
        if self.frozen_stages == self.num_stages and self.final_conv is not None:
            modules.append(self.final_conv)
        return modules

    def init_weights(self) -> None:
        """``Pretrained``: load a checkpoint (base class); no ``init_cfg``: cvnets' init (once)."""
        if self.init_cfg is not None:
            super().init_weights()
            return
        if not self._is_init:
            init_from_scratch(self)
        self._is_init = True


def init_from_scratch(model: nn.Module) -> None:
    """cvnets' initialisation: Kaiming (fan-out) convs, truncated-normal linears, unit norms."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, nn.GroupNorm, _BatchNorm)) and \
                module.weight is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def convert_checked(backbone, convert: Callable[[Dict], Tuple[Dict, List[str]]],
                    state_dict: Dict[str, torch.Tensor], source: str
                    ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """``convert(state_dict)`` for a MobileViT-family backbone, then the checks they share.

    The final expansion's keys are dropped when the backbone has one but built it off
    (``final_conv is None``); BN-fused (deploy) weights for a training model are refused.

    Raises:
        CheckpointMismatchError: the layout is not recognised (the message names ``source``), or
            fused weights for ``deploy=False``.
    """
    try:
        converted, dropped = convert(state_dict)
    except (ValueError, CheckpointMismatchError) as err:
        raise CheckpointMismatchError(f'{source}: {err}') from err
    if hasattr(backbone, 'final_conv') and backbone.final_conv is None:
        for key in [k for k in converted if k.startswith('final_conv.')]:
            del converted[key]
            dropped.append(key)
    has_bn = any('.bn.' in k or k.startswith('bn.') for k in converted)
    if not backbone.deploy and not has_bn and any(k.endswith('conv.bias') for k in converted):
        raise CheckpointMismatchError(
            f'{source} holds BN-fused (deploy) weights: build {type(backbone).__name__} with '
            'deploy=True to load it')
    return converted, dropped
