"""MobileViTv3 backbone for dense prediction (mmdet / mmseg).

Paper: "MobileViTv3: Mobile-Friendly Vision Transformer with Simple and Effective Fusion of Local,
Global and Input Features", Wadekar & Chaurasia, 2022, https://arxiv.org/abs/2209.15159.
Authors' code: https://github.com/micronDLA/MobileViTv3 (patches of ml-cvnets: ``MobileViTv3-v1``
for XXS / XS / S, ``MobileViTv3-v2`` for 0.5 / 0.75 / 1.0). Their checkpoints are in ml-cvnets'
layout and load through the v1 / v2 converters. Written from scratch for hybridvit.
"""
from typing import Dict, List, Optional, Sequence, Union

from torch import nn

from hybridvit.registry import MODELS
from hybridvit.utils.errors import UserError
from ..layers.mobilevitv2_block import MobileViTv2Block
from ..layers.mobilevitv3_block import MobileViTv3Block
from ..utils.mobilevit_converters import convert_mobilevit_state_dict
from ..utils.mobilevitv2_converters import convert_mobilevitv2_state_dict
from .mobilevit_stages import MobileViTFamily, build_mv2_stages, convert_checked
from .mobilevitv2 import mobilevitv2_arch

__all__ = ['MobileViTv3']


@MODELS.register_module()
class MobileViTv3(MobileViTFamily):
    """MobileViTv3 backbone: five stages L1..L5 at strides 2, 4, 8, 16, 32.

    Paper: https://arxiv.org/abs/2209.15159. Two families share the v3 block changes (depthwise
    local conv, fusion of local and global features, input residual):

    * ``'xxs'``, ``'xs'``, ``'s'`` (``base='v1'``): MobileViT v1's layout with wider L3..L5
      (authors' ``*_small_v3`` configurations), multi-head attention with LayerNorm, a 1x1
      fusion (:class:`~hybridvit.models.layers.mobilevitv3_block.MobileViTv3Block`) and the
      final 1x1 expansion ``min(4 * C5, 960)`` (``final_expansion``);
    * ``'0.5'``, ``'0.75'``, ``'1.0'`` (``base='v2'``): MobileViTv2's layout (same channels),
      separable attention with GroupNorm, ``conv_proj`` over [global, local] plus the input
      (:class:`~hybridvit.models.layers.mobilevitv2_block.MobileViTv2Block`, ``fuse_local``).

    Inputs are RGB in [0, 1] (``mean=0, std=255`` on 0-255 images), as in the pretraining.

    Args:
        arch: a name above or a dict with keys ``base`` (``'v1'`` / ``'v2'``), ``channels``
            (5), ``transformer_dims`` (3), ``depths`` (3), ``stem_channels`` and optionally
            ``expand_ratio`` (2.0), ``final_channels`` (``None``: no expansion conv),
            ``num_heads`` (4, v1 only), ``mlp_ratio`` (2.0), ``patch_size`` (2).
        out_indices: stages to output, 0 = L1 (stride 2) ... 4 = L5 (stride 32).
        output_stride: 32, 16 or 8 (dilation instead of the last strides, as in MobileViT /
            MobileViTv2).
        final_expansion: apply the final 1x1 expansion to the L5 output (v1-based archs; off
            for DeepLabv3, its weights are then ignored when loading).
        frozen_stages: ``-1`` none; ``i`` the stem and L1..L(i) (``5`` also the expansion).
        norm_eval: keep every BatchNorm in eval mode while training.
        with_cp: gradient checkpointing per block.
        drop_rate: transformer dropout.
        attn_drop_rate: attention dropout.
        norm_cfg: mmcv config of the conv BatchNorms.
        act_cfg: mmcv activation config (SiLU).
        transformer_norm_cfg: transformer norm of the v2-based archs (GroupNorm, one group).
        deploy: build BN-free convs.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)`` loads the authors' (cvnets
            layout) or hybridvit weights; ``None`` initialises as cvnets does.
    """

    arch_zoo = {
        'xxs': dict(base='v1', channels=(16, 24, 64, 80, 128), transformer_dims=(64, 80, 96),
                    depths=(2, 4, 3), stem_channels=16, expand_ratio=2.0, final_channels=512),
        'xs': dict(base='v1', channels=(32, 48, 96, 160, 160), transformer_dims=(96, 120, 144),
                   depths=(2, 4, 3), stem_channels=16, expand_ratio=4.0, final_channels=640),
        's': dict(base='v1', channels=(32, 64, 128, 256, 320), transformer_dims=(144, 192, 240),
                  depths=(2, 4, 3), stem_channels=16, expand_ratio=4.0, final_channels=960),
        **{name: dict(base='v2', **mobilevitv2_arch(float(name))) for name in ('0.5', '0.75',
                                                                            '1.0')},
    }
    arch_keys = ('base', 'channels', 'transformer_dims', 'depths', 'stem_channels')
    arch_defaults = dict(expand_ratio=2.0, final_channels=None, num_heads=4, mlp_ratio=2.0,
                         patch_size=2)
    num_stages = 5

    def __init__(self,
                 arch: Union[str, Dict] = '1.0',
                 out_indices: Sequence[int] = (1, 2, 3, 4),
                 output_stride: int = 32,
                 final_expansion: bool = True,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0,
                 norm_cfg: Dict = dict(type='BN'),
                 act_cfg: Dict = dict(type='SiLU'),
                 transformer_norm_cfg: Dict = dict(type='GN', num_groups=1),
                 deploy: bool = False,
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None):
        if isinstance(arch, (int, float)) and not isinstance(arch, bool):
            arch = str(float(arch))
        super().__init__(arch, out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         with_cp=with_cp, deploy=deploy, init_cfg=init_cfg)
        self._set_output_stride(output_stride)
        cfg = self.arch_settings
        v1 = cfg['base'] == 'v1'
        norm_act = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)

        def global_block(i: int, out_ch: int, dilation: int) -> nn.Module:
            dim, depth = cfg['transformer_dims'][i - 2], cfg['depths'][i - 2]
            if v1:
                return MobileViTv3Block(
                    out_ch, dim, depth=depth, num_heads=cfg['num_heads'],
                    mlp_ratio=cfg['mlp_ratio'], patch_size=cfg['patch_size'],
                    dilation=dilation, drop=drop_rate, attn_drop=attn_drop_rate,
                    deploy=deploy, **norm_act)
            return MobileViTv2Block(
                out_ch, dim, depth=depth, mlp_ratio=cfg['mlp_ratio'],
                patch_size=cfg['patch_size'], dilation=dilation,
                transformer_norm_cfg=transformer_norm_cfg, drop=drop_rate,
                attn_drop=attn_drop_rate, fuse_local=True, deploy=deploy, **norm_act)

        self.stem, self.stages, strides, in_ch = build_mv2_stages(
            cfg['stem_channels'], cfg['channels'], (1, 3 if v1 else 2, 1, 1, 1),
            cfg['expand_ratio'], output_stride, global_block, norm_act, deploy)
        self._finish_stages(strides, in_ch, cfg['final_channels'] if final_expansion else None,
                            norm_act, deploy)

    @classmethod
    def check_arch(cls, settings: Dict) -> None:
        cls.check_arch_lengths(settings, dict(channels=5, transformer_dims=3, depths=3))
        if settings['base'] not in ('v1', 'v2'):
            raise UserError(f"MobileViTv3 arch['base'] must be 'v1' or 'v2', got "
                            f"{settings['base']!r}")

    def convert_state_dict(self, state_dict, source):
        """Authors' (ml-cvnets layout) / hybridvit weights -> hybridvit names: the v1 rules for
        XXS / XS / S, the v2 rules for 0.5 / 0.75 / 1.0; classifier and head keys dropped."""
        convert = (convert_mobilevit_state_dict if self.arch_settings['base'] == 'v1'
                   else convert_mobilevitv2_state_dict)
        return convert_checked(self, convert, state_dict, source)
