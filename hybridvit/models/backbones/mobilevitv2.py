"""MobileViTv2 backbone for dense prediction (mmdet / mmseg).

Paper: "Separable Self-attention for Mobile Vision Transformers", Mehta & Rastegari, TMLR 2023,
https://arxiv.org/abs/2206.02680.
Original code: https://github.com/apple/ml-cvnets (``cvnets/models/classification/mobilevit_v2.py``
and ``config/mobilevit_v2.py``); the architecture and parameter layout match timm's
``mobilevitv2_050`` ... ``mobilevitv2_200``, so timm, cvnets and HF transformers weights load after
key conversion (:mod:`hybridvit.models.utils.mobilevitv2_converters`). Written from scratch for
hybridvit.
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
from timm.layers import make_divisible
from torch import nn

from hybridvit.registry import MODELS
from hybridvit.utils.errors import UserError
from ..layers.mobilevitv2_block import MobileViTv2Block
from ..utils.mobilevitv2_converters import convert_mobilevitv2_state_dict
from .mobilevit_stages import MobileViTFamily, build_mv2_stages, convert_checked

__all__ = ['MobileViTv2']


def mobilevitv2_arch(width: float) -> Dict:
    """The arch row of width multiplier ``width`` by ml-cvnets' rule (``config/mobilevit_v2.py``).

    Stem ``clamp(32 w, 16, 64)`` rounded to a multiple of 8; stage channels
    ``(64, 128, 256, 384, 512) * w`` (L1 rounded to 16, the rest to 8); attention dims half the
    L3..L5 channels; depths 2 / 4 / 3. For the published widths 0.5 .. 2.0 this equals timm's
    ``_mobilevitv2_cfg`` (``int(c * w)``), which the tests check.
    """
    stem = make_divisible(min(max(32 * width, 16), 64), 8, min_value=16)
    chs = [make_divisible(64 * width, 16)] + [make_divisible(c * width, 8)
                                              for c in (128, 256, 384, 512)]
    dims = [make_divisible(c * width, 8) for c in (128, 192, 256)]
    return dict(channels=tuple(chs), transformer_dims=tuple(dims), depths=(2, 4, 3),
                stem_channels=stem)


@MODELS.register_module()
class MobileViTv2(MobileViTFamily):
    """MobileViTv2 backbone: five stages L1..L5 at strides 2, 4, 8, 16, 32.

    Paper: https://arxiv.org/abs/2206.02680. Stem: 3x3 stride-2 conv-BN-SiLU. L1: one MV2
    (inverted residual, expansion 2) block; L2: two MV2 blocks, the first with stride 2; L3-L5:
    a stride-2 MV2 block followed by a :class:`MobileViTv2Block` (separable self-attention over
    2x2 patches, GroupNorm, FFN ratio 2, depths 2 / 4 / 3). The five outputs equal timm's
    ``forward_intermediates`` / ``features_only`` features of ``mobilevitv2_*`` (timm has no
    final expansion conv for v2).

    Inputs are RGB scaled to [0, 1] without mean/std (``mean=[0, 0, 0], std=[255, 255, 255]``
    on 0-255 images), as in the pretraining; configs set this. Any input size works; like cvnets
    and timm, a map that is not a multiple of the patch at L3..L5 is resized up to the next
    multiple (so e.g. a 112x137 input gives 8x10 at stride 16, not 7x9).

    Args:
        arch: ``'0.5'``, ``'0.75'``, ``'1.0'``, ``'1.25'``, ``'1.5'``, ``'1.75'``, ``'2.0'`` (the
            width multiplier; a number such as ``0.5`` is accepted too) or a dict with keys
            ``channels`` (5 ints, L1..L5), ``transformer_dims`` (3 ints), ``depths`` (3 ints), ``stem_channels`` and optionally
            ``expand_ratio`` (2.0), ``mlp_ratio`` (2.0), ``patch_size`` (2).
        out_indices: stages to output, 0 = L1 (stride 2) ... 4 = L5 (stride 32); negatives
            count from the end. Stages after the last requested one are not computed.
        output_stride: 32, 16 or 8. For 16 (8) the stride-2 MV2 block of L5 (and L4) gets
            stride 1 and the following 3x3 convs are dilated (2, then 4), as in cvnets'
            DeepLabv3 and timm's ``output_stride`` (the MV2 depthwise conv keeps the preceding
            dilation, the MobileViTv2 block's local conv takes the new one).
        frozen_stages: ``-1`` freezes nothing; ``i >= 0`` freezes the stem and L1..L(i).
        norm_eval: keep all BatchNorm layers in eval mode while training.
        with_cp: gradient checkpointing per block.
        drop_rate: dropout in the transformer layers.
        attn_drop_rate: dropout on the context scores.
        drop_path_rate: stochastic depth, linear over all transformer layers from 0 to this.
        norm_cfg: mmcv config of the conv BatchNorms (``dict(type='SyncBN')`` multi-GPU).
        act_cfg: mmcv activation config (SiLU).
        transformer_norm_cfg: mmcv config of the transformer norms (GroupNorm, one group).
        deploy: build BN-free convs (fused state dicts; unfused ones are fused after loading).
        init_cfg: ``dict(type='Pretrained', checkpoint=..., prefix=..., use_ema=False)`` loads
            timm, cvnets, HF or hybridvit weights through
            :func:`convert_mobilevitv2_state_dict`; ``None`` initialises as cvnets does.
    """

    arch_zoo = {name: mobilevitv2_arch(float(name))
                for name in ('0.5', '0.75', '1.0', '1.25', '1.5', '1.75', '2.0')}
    arch_keys = ('channels', 'transformer_dims', 'depths', 'stem_channels')
    arch_defaults = dict(expand_ratio=2.0, mlp_ratio=2.0, patch_size=2)
    num_stages = 5
    _mv2_blocks = (1, 2, 1, 1, 1)  # MV2 blocks per stage (L3-L5 add one MobileViTv2 block)

    def __init__(self,
                 arch: Union[str, Dict] = '1.0',
                 out_indices: Sequence[int] = (1, 2, 3, 4),
                 output_stride: int = 32,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0,
                 norm_cfg: Dict = dict(type='BN'),
                 act_cfg: Dict = dict(type='SiLU'),
                 transformer_norm_cfg: Dict = dict(type='GN', num_groups=1),
                 deploy: bool = False,
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None):
        if isinstance(arch, (int, float)) and not isinstance(arch, bool):
            arch = str(float(arch))  # 1 -> '1.0', 0.75 -> '0.75'
        super().__init__(arch, out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         with_cp=with_cp, deploy=deploy, init_cfg=init_cfg)
        self._set_output_stride(output_stride)
        if not 0.0 <= drop_path_rate < 1.0:
            raise UserError(f'MobileViTv2: drop_path_rate must be in [0, 1), got '
                            f'{drop_path_rate}')

        cfg = self.arch_settings
        norm_act = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)
        dpr = torch.linspace(0, drop_path_rate, sum(cfg['depths'])).split(list(cfg['depths']))

        def global_block(i: int, out_ch: int, dilation: int) -> nn.Module:
            return MobileViTv2Block(
                out_ch, cfg['transformer_dims'][i - 2], depth=cfg['depths'][i - 2],
                mlp_ratio=cfg['mlp_ratio'], patch_size=cfg['patch_size'], dilation=dilation,
                transformer_norm_cfg=transformer_norm_cfg, drop=drop_rate,
                attn_drop=attn_drop_rate, drop_path=dpr[i - 2].tolist(), deploy=deploy,
                **norm_act)

        self.stem, self.stages, strides, in_ch = build_mv2_stages(
            cfg['stem_channels'], cfg['channels'], self._mv2_blocks, cfg['expand_ratio'],
            output_stride, global_block, norm_act, deploy)
        self._finish_stages(strides, in_ch, None, norm_act, deploy)  # no final expansion

    @classmethod
    def check_arch(cls, settings: Dict) -> None:
        cls.check_arch_lengths(settings, dict(channels=5, transformer_dims=3, depths=3))

    def convert_state_dict(self, state_dict, source):
        """timm / cvnets / HF / hybridvit layouts -> hybridvit names; classifier and
        segmentation-head keys are dropped.

        Raises:
            CheckpointMismatchError: not a MobileViTv2 layout, or fused (deploy) weights for a
                training model.
        """
        return convert_checked(self, convert_mobilevitv2_state_dict, state_dict, source)
