"""FastViT backbone for dense prediction (mmdet / mmseg / hand mesh).

Paper: "FastViT: A Fast Hybrid Vision Transformer using Structural Reparameterization",
Vasu, Gabriel, Zhu, Tuzel, Ranjan, ICCV 2023, https://arxiv.org/abs/2303.14189.
Original code: https://github.com/apple/ml-fastvit; module names follow timm's port
(``timm/models/fastvit.py``) so timm checkpoints load with near-identity key mapping.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from hybridvit.registry import MODELS
from hybridvit.utils.errors import UserError
from ..layers.attention import AttentionBlock
from ..layers.conv_bn import build_norm
from ..layers.large_kernel import ReparamLargeKernelConv
from ..layers.mobileone import MobileOneBlock
from ..layers.repmixer import RepCPE, RepMixerBlock
from ..utils.fastvit_converters import convert_fastvit_state_dict
from .base import HybridBackbone

__all__ = ['FastViT']

_R, _A = 'repmixer', 'attention'


class PatchEmbed(nn.Module):
    """FastViT downsampling: 7x7 large-kernel conv (groups = in channels, parallel 3x3,
    no activation) followed by a 1x1 MobileOne block with GELU.

    MobileCLIP's MCi encoders (https://arxiv.org/abs/2311.17049, timm ``fastvit_mci*``) add a
    squeeze-excite (``use_se``) and the activation (``lkc_use_act``) after the large-kernel conv.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        patch_size: large kernel size.
        stride: 2 (or 1 in a dilated stage).
        dilation: large-kernel dilation.
        norm_cfg: mmcv config of the BatchNorms.
        act_cfg: mmcv config of the 1x1 block's activation.
        use_se: squeeze-excite after the large-kernel conv (MCi).
        lkc_use_act: apply ``act_cfg`` after the large-kernel conv too (MCi).
        deploy: build the fused convs only.
    """

    def __init__(self, in_channels: int, out_channels: int, patch_size: int = 7,
                 stride: int = 2, dilation: int = 1, norm_cfg: Dict = dict(type='BN'),
                 act_cfg: Dict = dict(type='GELU'), use_se: bool = False,
                 lkc_use_act: bool = False, deploy: bool = False):
        super().__init__()
        self.proj = nn.Sequential(
            ReparamLargeKernelConv(in_channels, out_channels, patch_size, stride=stride,
                                   groups=in_channels, small_kernel=3, dilation=dilation,
                                   norm_cfg=norm_cfg, act_cfg=act_cfg if lkc_use_act else None,
                                   use_se=use_se, deploy=deploy),
            MobileOneBlock(out_channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg,
                           deploy=deploy))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class FastViTStage(nn.Module):
    """One FastViT stage: optional downsampling, optional RepCPE, then the blocks.

    Args:
        downsample: the :class:`PatchEmbed` or ``None``.
        pos_emb: the :class:`RepCPE` or ``None``.
        blocks: the stage's blocks.
    """

    def __init__(self, downsample: Optional[nn.Module], pos_emb: Optional[nn.Module],
                 blocks: List[nn.Module]):
        super().__init__()
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.pos_emb = pos_emb if pos_emb is not None else nn.Identity()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.pos_emb(self.downsample(x)))


@MODELS.register_module()
class FastViT(HybridBackbone):
    """FastViT backbone (`FastViT <https://arxiv.org/abs/2303.14189>`_).

    MobileOne stem (stride 4), four stages of RepMixer blocks (SA/MA: attention blocks with
    a 7x7 RepCPE in stage 4) separated by large-kernel patch embeddings; returns the
    stage outputs at strides 4/8/16/32 (channels = ``embed_dims``), each through its own
    BatchNorm when ``out_norm``. Multi-branch blocks fuse with :meth:`switch_to_deploy`
    or :func:`hybridvit.models.utils.reparameterize_model`.

    Args:
        arch: ``'t8'``, ``'t12'``, ``'s12'``, ``'sa12'``, ``'sa24'``, ``'sa36'``, ``'ma36'``,
            ``'mci0'``, ``'mci1'``, ``'mci2'`` or a dict with keys ``layers``, ``embed_dims``,
            ``mlp_ratios``, ``token_mixers`` (``'repmixer'`` / ``'attention'`` per stage),
            ``pos_embs`` (``None`` / ``'repcpe'`` per stage) and ``layer_scale_init_value``, optionally
            ``se_downsamples`` (4 bools: squeeze-excite in stage i's downsampling) and
            ``lkc_use_act`` (activation after the downsampling large-kernel conv). ``'mci0'``,
            ``'mci1'``, ``'mci2'`` are the MobileCLIP image encoders
            (https://arxiv.org/abs/2311.17049, timm ``fastvit_mci0..2``).
        in_channels: input channels.
        out_indices: stages to output (0..3, negatives count from the end); outputs come
            in stage order.
        out_norm: one BatchNorm per output (``norm{i}``); ``False`` returns raw stage
            outputs.
        output_stride: 32, or 16 (stage 4 keeps stride 16: its patch embedding gets
            stride 1 and it and every spatial conv in stage 4 dilation 2).
        frozen_stages: -1 none, 0 the stem, i the stem and stages 1..i (and their output
            norms); frozen parameters get ``requires_grad=False`` and stay in eval mode.
        norm_eval: keep every BatchNorm in eval mode during training.
        with_cp: gradient checkpointing per block (saves memory, costs time).
        drop_rate: dropout in the ConvFFNs / attention projection.
        drop_path_rate: stochastic depth, linear over all blocks from 0 to this value.
        token_mixer: ``'repmixer'`` or ``'pooling'`` (PoolFormer ``pool(x) - x``, replaces
            RepMixer in the RepMixer stages; ablation only, no pretrained weights).
        norm_cfg: mmcv config of every BatchNorm, including the output norms
            (``dict(type='SyncBN')`` for multi-GPU runs).
        act_cfg: mmcv config of the activations (GELU in FastViT).
        deploy: build fused convs only (to load fused checkpoints).
        init_cfg: mmengine init config; ``dict(type='Pretrained', checkpoint=...,
            prefix=..., use_ema=False)`` loads official apple/ml-fastvit, timm or hybridvit
            checkpoints (unfused ones also into a ``deploy=True`` model).
    """

    arch_zoo = {
        't8': dict(layers=(2, 2, 4, 2), embed_dims=(48, 96, 192, 384), mlp_ratios=(3,) * 4,
                   token_mixers=(_R,) * 4, pos_embs=(None,) * 4, layer_scale_init_value=1e-5),
        't12': dict(layers=(2, 2, 6, 2), embed_dims=(64, 128, 256, 512), mlp_ratios=(3,) * 4,
                    token_mixers=(_R,) * 4, pos_embs=(None,) * 4, layer_scale_init_value=1e-5),
        's12': dict(layers=(2, 2, 6, 2), embed_dims=(64, 128, 256, 512), mlp_ratios=(4,) * 4,
                    token_mixers=(_R,) * 4, pos_embs=(None,) * 4, layer_scale_init_value=1e-5),
        'sa12': dict(layers=(2, 2, 6, 2), embed_dims=(64, 128, 256, 512), mlp_ratios=(4,) * 4,
                     token_mixers=(_R, _R, _R, _A), pos_embs=(None, None, None, 'repcpe'),
                     layer_scale_init_value=1e-5),
        'sa24': dict(layers=(4, 4, 12, 4), embed_dims=(64, 128, 256, 512), mlp_ratios=(4,) * 4,
                     token_mixers=(_R, _R, _R, _A), pos_embs=(None, None, None, 'repcpe'),
                     layer_scale_init_value=1e-5),
        'sa36': dict(layers=(6, 6, 18, 6), embed_dims=(64, 128, 256, 512), mlp_ratios=(4,) * 4,
                     token_mixers=(_R, _R, _R, _A), pos_embs=(None, None, None, 'repcpe'),
                     layer_scale_init_value=1e-6),
        'ma36': dict(layers=(6, 6, 18, 6), embed_dims=(76, 152, 304, 608), mlp_ratios=(4,) * 4,
                     token_mixers=(_R, _R, _R, _A), pos_embs=(None, None, None, 'repcpe'),
                     layer_scale_init_value=1e-6),
        # MobileCLIP image encoders (arXiv 2311.17049; timm fastvit_mci0..2): SE in the last two
        # downsamplings, activation after their large-kernel conv, mlp ratio 3
        'mci0': dict(layers=(2, 6, 10, 2), embed_dims=(64, 128, 256, 512), mlp_ratios=(3,) * 4,
                     token_mixers=(_R, _R, _R, _A), pos_embs=(None, None, None, 'repcpe'),
                     layer_scale_init_value=1e-5, se_downsamples=(False, False, True, True),
                     lkc_use_act=True),
        'mci1': dict(layers=(4, 12, 20, 4), embed_dims=(64, 128, 256, 512), mlp_ratios=(3,) * 4,
                     token_mixers=(_R, _R, _R, _A), pos_embs=(None, None, None, 'repcpe'),
                     layer_scale_init_value=1e-5, se_downsamples=(False, False, True, True),
                     lkc_use_act=True),
        'mci2': dict(layers=(4, 12, 24, 4), embed_dims=(80, 160, 320, 640), mlp_ratios=(3,) * 4,
                     token_mixers=(_R, _R, _R, _A), pos_embs=(None, None, None, 'repcpe'),
                     layer_scale_init_value=1e-5, se_downsamples=(False, False, True, True),
                     lkc_use_act=True),
    }
    arch_keys = ('layers', 'embed_dims', 'mlp_ratios', 'token_mixers', 'pos_embs',
                 'layer_scale_init_value')
    arch_defaults = dict(se_downsamples=(False,) * 4, lkc_use_act=False)
    num_stages = 4
    pretrained_missing_ok = (r'^norm\d+\.',)  # dense-prediction norms: not in ImageNet weights

    def __init__(self,
                 arch: Union[str, Dict] = 'sa12',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm: bool = True,
                 output_stride: int = 32,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0,
                 token_mixer: str = 'repmixer',
                 norm_cfg: Dict = dict(type='BN'),
                 act_cfg: Dict = dict(type='GELU'),
                 deploy: bool = False,
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None):
        super().__init__(arch, out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval,
                         with_cp=with_cp, deploy=deploy, init_cfg=init_cfg)
        if output_stride not in (16, 32):
            raise UserError(f'FastViT: output_stride must be 32 or 16, got {output_stride!r}')
        if token_mixer not in ('repmixer', 'pooling'):
            raise UserError(f"FastViT: token_mixer must be 'repmixer' or 'pooling', got "
                            f'{token_mixer!r}')
        if not 0.0 <= drop_path_rate < 1.0:
            raise UserError(f'FastViT: drop_path_rate must be in [0, 1), got {drop_path_rate}')
        self.out_norm = out_norm
        self.output_stride = output_stride
        self.token_mixer = token_mixer

        layers = self.arch_settings['layers']
        dims = self.arch_settings['embed_dims']
        ls_init = self.arch_settings['layer_scale_init_value']
        norm_act = dict(norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.stem = nn.Sequential(
            MobileOneBlock(in_channels, dims[0], 3, stride=2, deploy=deploy, **norm_act),
            MobileOneBlock(dims[0], dims[0], 3, stride=2, groups=dims[0], deploy=deploy,
                           **norm_act),
            MobileOneBlock(dims[0], dims[0], 1, deploy=deploy, **norm_act))

        dpr = torch.linspace(0, drop_path_rate, sum(layers)).split(list(layers))
        stages, strides, stride = [], [], 4
        for i in range(self.num_stages):
            dilated = output_stride == 16 and i == self.num_stages - 1
            dilation = 2 if dilated else 1
            downsample = None
            if i > 0:
                downsample = PatchEmbed(dims[i - 1], dims[i], 7, stride=1 if dilated else 2,
                                        dilation=dilation,
                                        use_se=self.arch_settings['se_downsamples'][i],
                                        lkc_use_act=self.arch_settings['lkc_use_act'],
                                        deploy=deploy, **norm_act)
                stride *= 1 if dilated else 2
            pos_emb = (RepCPE(dims[i], 7, dilation=dilation, deploy=deploy)
                       if self.arch_settings['pos_embs'][i] is not None else None)
            blocks = []
            for j in range(layers[i]):
                if self.arch_settings['token_mixers'][i] == _A:
                    blocks.append(AttentionBlock(
                        dims[i], self.arch_settings['mlp_ratios'][i], dilation=dilation, drop=drop_rate,
                        drop_path=float(dpr[i][j]), layer_scale_init_value=ls_init,
                        deploy=deploy, **norm_act))
                else:
                    blocks.append(RepMixerBlock(
                        dims[i], 3, self.arch_settings['mlp_ratios'][i], dilation=dilation,
                        drop=drop_rate, drop_path=float(dpr[i][j]),
                        layer_scale_init_value=ls_init, token_mixer=token_mixer,
                        deploy=deploy, **norm_act))
            stages.append(FastViTStage(downsample, pos_emb, blocks))
            strides.append(stride)
        self.stages = nn.Sequential(*stages)

        self.out_channels = [dims[i] for i in self.out_indices]
        self.out_strides = [strides[i] for i in self.out_indices]
        if out_norm:
            for i in self.out_indices:
                self.add_module(f'norm{i}', build_norm(norm_cfg, dims[i]))
        self._freeze_stages()

    @classmethod
    def check_arch(cls, arch: Dict) -> None:
        cls.check_arch_lengths(arch, {key: cls.num_stages for key in (
            'layers', 'embed_dims', 'mlp_ratios', 'token_mixers', 'pos_embs',
            'se_downsamples')})
        for mixer in arch['token_mixers']:
            if mixer not in (_R, _A):
                raise UserError(f"FastViT arch['token_mixers'] entries must be 'repmixer' or "
                                f"'attention', got {mixer!r}")
        for pe in arch['pos_embs']:
            if pe not in (None, 'repcpe'):
                raise UserError(f"FastViT arch['pos_embs'] entries must be None or 'repcpe', "
                                f'got {pe!r}')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Return the maps of ``out_indices`` (NCHW, strides 4/8/16/32)."""
        x = self.run_checkpointed(self.stem, x)
        outs = []
        for i in range(self.out_indices[-1] + 1):  # stages after the last output are skipped
            stage = self.stages[i]
            x = stage.pos_emb(stage.downsample(x))
            for block in stage.blocks:
                x = self.run_checkpointed(block, x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x) if self.out_norm else x)
        return tuple(outs)

    def frozen_modules(self) -> List[nn.Module]:
        """The stem, stages ``1..frozen_stages`` and their output norms."""
        modules = [self.stem]
        for i in range(self.frozen_stages):
            modules.append(self.stages[i])
            if self.out_norm and i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
        return modules

    def convert_state_dict(self, state_dict, source):
        """Official apple/ml-fastvit, timm or hybridvit layouts -> hybridvit names."""
        return convert_fastvit_state_dict(state_dict, deploy=self.deploy)
