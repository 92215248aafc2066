"""MobileViT v1 backbone for dense prediction (mmdet / mmseg).

Paper: "MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer",
Mehta & Rastegari, ICLR 2022, https://arxiv.org/abs/2110.02178.
Original code: https://github.com/apple/ml-cvnets; the architecture and parameter layout match
timm's ``mobilevit_xxs/xs/s`` (https://github.com/huggingface/pytorch-image-models), so timm
and cvnets weights load after key conversion
(:mod:`hybridvit.models.utils.mobilevit_converters`). Written from scratch for hybridvit.
"""
from typing import Dict, List, Optional, Sequence, Union

from torch import nn

from hybridvit.registry import MODELS
from hybridvit.utils.errors import UserError
from ..layers.mobilevit_block import MobileViTBlock
from ..utils.mobilevit_converters import convert_mobilevit_state_dict
from .mobilevit_stages import MobileViTFamily, build_mv2_stages, convert_checked

__all__ = ['MobileViT']


@MODELS.register_module()
class MobileViT(MobileViTFamily):
    """MobileViT v1 backbone: five stages L1..L5 at strides 2, 4, 8, 16, 32.

    Paper: https://arxiv.org/abs/2110.02178. Stem: 3x3 stride-2 conv-BN-SiLU (16 ch). L1: one
    MV2 (inverted residual) block; L2: three MV2 blocks, the first with stride 2; L3-L5: a
    stride-2 MV2 block followed by a :class:`MobileViTBlock` (transformer over 2x2 patches,
    4 heads, FFN ratio 2, pre-norm LayerNorm). ``final_expansion`` appends the 1x1 conv-BN-SiLU
    expansion (320 / 384 / 640 ch) to L5's output, which is what timm's ``features_only``
    model returns as its last feature (module ``final_conv``); the first four outputs equal
    timm's ``stages.0``..``stages.3`` features.

    Inputs are RGB scaled to [0, 1] without mean/std (i.e. ``mean=[0, 0, 0],
    std=[255, 255, 255]`` on 0-255 images), as in the pretraining; configs set this. Any input
    size works: the MobileViT blocks resize maps that are not a multiple of the patch size.

    Args:
        arch: ``'xxs'``, ``'xs'``, ``'s'`` or a dict with keys ``channels`` (5 ints, L1..L5),
            ``transformer_dims`` (3 ints, L3..L5), ``depths`` (3 ints), ``expand_ratio``,
            ``final_channels`` and optionally ``stem_channels`` (16), ``num_heads`` (4),
            ``mlp_ratio`` (2.0), ``patch_size`` (2).
        out_indices: stages to output, 0 = L1 (stride 2) ... 4 = L5 (stride 32); negative
            indices count from the end. Stages after the last requested one are not computed.
        output_stride: 32, 16 or 8. For 16 (8) the stride-2 MV2 block of L5 (and L4) gets
            stride 1 and the following 3x3 convs are dilated (2, then 4), as in cvnets'
            DeepLabv3 and timm's ``output_stride``: the MV2 depthwise conv keeps the
            preceding dilation, the MobileViT block's local 3x3 conv takes the new one.
        final_expansion: apply the final 1x1 expansion conv to the L5 output (turn off for
            DeepLabv3, as cvnets does; its weights are then ignored when loading).
        frozen_stages: ``-1`` freezes nothing; ``i >= 0`` freezes the stem and L1..L(i)
            (so ``0`` = stem only, ``5`` = everything incl. the final expansion): their
            parameters get ``requires_grad=False`` and their modules stay in eval mode.
        norm_eval: keep all BatchNorm layers in eval mode while training (frozen statistics).
        with_cp: gradient checkpointing per block (saves memory, costs a recomputation).
        drop_rate: dropout in the transformer layers (cvnets: 0.05 for xxs, 0.1 otherwise,
            at ImageNet pretraining).
        attn_drop_rate: dropout on the attention weights.
        norm_cfg: mmcv config of every BatchNorm (``dict(type='SyncBN')`` for multi-GPU runs).
        act_cfg: mmcv config of the activations (SiLU in MobileViT).
        deploy: build BN-free convs (load fused state dicts, or unfused ones: they are fused
            after loading, through a training twin).
        init_cfg: ``dict(type='Pretrained', checkpoint=..., prefix=..., use_ema=False)``
            loads timm, cvnets or hybridvit weights (``.pth``/``.pt``/``.safetensors``, path
            or URL) through :func:`convert_mobilevit_state_dict`; any other init_cfg is
            handled by mmengine; ``None`` initialises convs / linears as cvnets does.
    """

    arch_zoo = {
        'xxs': dict(channels=(16, 24, 48, 64, 80), transformer_dims=(64, 80, 96),
                    depths=(2, 4, 3), expand_ratio=2.0, final_channels=320),
        'xs': dict(channels=(32, 48, 64, 80, 96), transformer_dims=(96, 120, 144),
                   depths=(2, 4, 3), expand_ratio=4.0, final_channels=384),
        's': dict(channels=(32, 64, 96, 128, 160), transformer_dims=(144, 192, 240),
                  depths=(2, 4, 3), expand_ratio=4.0, final_channels=640),
    }
    arch_keys = ('channels', 'transformer_dims', 'depths', 'expand_ratio', 'final_channels')
    arch_defaults = dict(stem_channels=16, num_heads=4, mlp_ratio=2.0, patch_size=2)
    num_stages = 5
    _mv2_blocks = (1, 3, 1, 1, 1)  # MV2 blocks per stage (L3-L5 add one MobileViT block)

    def __init__(self,
                 arch: Union[str, Dict] = 's',
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
                 deploy: bool = False,
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None):
        super().__init__(arch, out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         with_cp=with_cp, deploy=deploy, init_cfg=init_cfg)
        self._set_output_stride(output_stride)
        self.final_expansion = final_expansion

        cfg = self.arch_settings
        norm_act = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)

        def global_block(i: int, out_ch: int, dilation: int) -> nn.Module:
            return MobileViTBlock(
                out_ch, cfg['transformer_dims'][i - 2], depth=cfg['depths'][i - 2],
                num_heads=cfg['num_heads'], mlp_ratio=cfg['mlp_ratio'],
                patch_size=cfg['patch_size'], dilation=dilation, drop=drop_rate,
                attn_drop=attn_drop_rate, deploy=deploy, **norm_act)

        self.stem, self.stages, strides, in_ch = build_mv2_stages(
            cfg['stem_channels'], cfg['channels'], self._mv2_blocks, cfg['expand_ratio'],
            output_stride, global_block, norm_act, deploy)
        self._finish_stages(strides, in_ch, cfg['final_channels'] if final_expansion else None,
                            norm_act, deploy)

    @classmethod
    def check_arch(cls, settings: Dict) -> None:
        cls.check_arch_lengths(settings, dict(channels=5, transformer_dims=3, depths=3))
        for dim in settings['transformer_dims']:
            if dim % settings['num_heads']:
                raise UserError(f'MobileViT arch transformer_dims {settings["transformer_dims"]} '
                                f'must be divisible by num_heads={settings["num_heads"]}')

    def convert_state_dict(self, state_dict, source):
        """timm / cvnets / hybridvit layouts -> hybridvit names; classifier keys (and the final
        expansion's when ``final_expansion=False``) are dropped.

        Raises:
            CheckpointMismatchError: not a MobileViT v1 layout, or fused (deploy) weights for a
                training model.
        """
        return convert_checked(self, convert_mobilevit_state_dict, state_dict, source)
