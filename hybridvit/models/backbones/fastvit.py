"""FastViT backbone for dense prediction (mmdet / mmseg / hand mesh).

Paper: "FastViT: A Fast Hybrid Vision Transformer using Structural Reparameterization",
Vasu, Gabriel, Zhu, Tuzel, Ranjan, ICCV 2023, https://arxiv.org/abs/2303.14189.
Original code: https://github.com/apple/ml-fastvit; module names follow timm's port
(``timm/models/fastvit.py``) so timm checkpoints load with near-identity key mapping.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hybridvit.registry import MODELS
from ..layers.attention import AttentionBlock
from ..layers.large_kernel import ReparamLargeKernelConv
from ..layers.mobileone import MobileOneBlock
from ..layers.repmixer import RepCPE, RepMixerBlock
from ..utils.checkpoint import load_state_dict_strictly, read_state_dict
from ..utils.fastvit_converters import (convert_fastvit_state_dict,
                                        is_reparameterized_state_dict)
from ..utils.reparameterize import reparameterize_model

__all__ = ['FastViT']

_R, _A = 'repmixer', 'attention'


class PatchEmbed(nn.Module):
    """FastViT downsampling: 7x7 large-kernel conv (groups = in channels, parallel 3x3,
    no activation) followed by a 1x1 MobileOne block with GELU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        patch_size: large kernel size.
        stride: 2 (or 1 in a dilated stage).
        dilation: large-kernel dilation.
        deploy: build the fused convs only.
    """

    def __init__(self, in_channels: int, out_channels: int, patch_size: int = 7,
                 stride: int = 2, dilation: int = 1, deploy: bool = False):
        super().__init__()
        self.proj = nn.Sequential(
            ReparamLargeKernelConv(in_channels, out_channels, patch_size, stride=stride,
                                   groups=in_channels, small_kernel=3, dilation=dilation,
                                   deploy=deploy),
            MobileOneBlock(out_channels, out_channels, 1, deploy=deploy))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class FastViTStage(nn.Module):
    """One FastViT stage: optional downsampling, optional RepCPE, then the blocks.

    Args:
        downsample: the :class:`PatchEmbed` or ``None``.
        pos_emb: the :class:`RepCPE` or ``None``.
        blocks: the stage's blocks.
        with_cp: gradient-checkpoint each block in training.
    """

    def __init__(self, downsample: Optional[nn.Module], pos_emb: Optional[nn.Module],
                 blocks: List[nn.Module], with_cp: bool = False):
        super().__init__()
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.pos_emb = pos_emb if pos_emb is not None else nn.Identity()
        self.blocks = nn.Sequential(*blocks)
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_emb(self.downsample(x))
        if self.with_cp and self.training and x.requires_grad:
            for block in self.blocks:
                x = cp.checkpoint(block, x, use_reentrant=False)
            return x
        return self.blocks(x)


@MODELS.register_module()
class FastViT(BaseModule):
    """FastViT backbone (`FastViT <https://arxiv.org/abs/2303.14189>`_).

    MobileOne stem (stride 4), four stages of RepMixer blocks (SA/MA: attention blocks with
    a 7x7 RepCPE in stage 4) separated by large-kernel patch embeddings; returns the
    stage outputs at strides 4/8/16/32 (channels = ``embed_dims``), each through its own
    BatchNorm when ``out_norm``. Multi-branch blocks fuse with :meth:`switch_to_deploy`
    or :func:`hybridvit.models.utils.reparameterize_model`.

    Args:
        arch: ``'t8'``, ``'t12'``, ``'s12'``, ``'sa12'``, ``'sa24'``, ``'sa36'``, ``'ma36'``
            or a dict with keys ``layers``, ``embed_dims``, ``mlp_ratios``,
            ``token_mixers`` (``'repmixer'`` / ``'attention'`` per stage), ``pos_embs``
            (``None`` / ``'repcpe'`` per stage) and ``layer_scale_init_value``.
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
        deploy: build fused convs only (to load fused checkpoints).
        init_cfg: mmengine init config; ``dict(type='Pretrained', checkpoint=...,
            prefix=...)`` loads official apple/ml-fastvit, timm or hybridvit checkpoints.
    """

    arch_settings = {
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
    }
    num_stages = 4

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
                 deploy: bool = False,
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch = self._parse_arch(arch)
        self.out_indices = self._parse_out_indices(out_indices)
        if output_stride not in (16, 32):
            raise ValueError(f'output_stride must be 32 or 16, got {output_stride!r}')
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be an int in [-1, {self.num_stages}], '
                             f'got {frozen_stages!r}')
        if token_mixer not in ('repmixer', 'pooling'):
            raise ValueError(f"token_mixer must be 'repmixer' or 'pooling', got {token_mixer!r}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f'drop_path_rate must be in [0, 1), got {drop_path_rate}')
        self.out_norm = out_norm
        self.output_stride = output_stride
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.token_mixer = token_mixer
        self.deploy = deploy

        layers = self.arch['layers']
        dims = self.arch['embed_dims']
        ls_init = self.arch['layer_scale_init_value']
        self.stem = nn.Sequential(
            MobileOneBlock(in_channels, dims[0], 3, stride=2, deploy=deploy),
            MobileOneBlock(dims[0], dims[0], 3, stride=2, groups=dims[0], deploy=deploy),
            MobileOneBlock(dims[0], dims[0], 1, deploy=deploy))

        dpr = torch.linspace(0, drop_path_rate, sum(layers)).split(list(layers))
        stages, strides, stride = [], [], 4
        for i in range(self.num_stages):
            dilated = output_stride == 16 and i == self.num_stages - 1
            dilation = 2 if dilated else 1
            downsample = None
            if i > 0:
                downsample = PatchEmbed(dims[i - 1], dims[i], 7, stride=1 if dilated else 2,
                                        dilation=dilation, deploy=deploy)
                stride *= 1 if dilated else 2
            pos_emb = (RepCPE(dims[i], 7, dilation=dilation, deploy=deploy)
                       if self.arch['pos_embs'][i] is not None else None)
            blocks = []
            for j in range(layers[i]):
                if self.arch['token_mixers'][i] == _A:
                    blocks.append(AttentionBlock(
                        dims[i], self.arch['mlp_ratios'][i], dilation=dilation, drop=drop_rate,
                        drop_path=float(dpr[i][j]), layer_scale_init_value=ls_init,
                        deploy=deploy))
                else:
                    blocks.append(RepMixerBlock(
                        dims[i], 3, self.arch['mlp_ratios'][i], dilation=dilation,
                        drop=drop_rate, drop_path=float(dpr[i][j]),
                        layer_scale_init_value=ls_init, token_mixer=token_mixer,
                        deploy=deploy))
            stages.append(FastViTStage(downsample, pos_emb, blocks, with_cp=with_cp))
            strides.append(stride)
        self.stages = nn.Sequential(*stages)

        self.out_channels = [dims[i] for i in self.out_indices]
        self.out_strides = [strides[i] for i in self.out_indices]
        self._last_stage = max(self.out_indices)
        if out_norm:
            for i in self.out_indices:
                self.add_module(f'norm{i}', nn.BatchNorm2d(dims[i]))
        self._freeze_stages()

    # ------------------------------------------------------------------ config parsing
    def _parse_arch(self, arch: Union[str, Dict]) -> Dict:
        if isinstance(arch, str):
            if arch.lower() not in self.arch_settings:
                raise ValueError(f'unknown FastViT arch {arch!r}; expected one of '
                                 f'{sorted(self.arch_settings)} or a dict')
            return copy.deepcopy(self.arch_settings[arch.lower()])
        if not isinstance(arch, dict):
            raise ValueError(f'arch must be a name or a dict, got {type(arch).__name__}')
        required = {'layers', 'embed_dims', 'mlp_ratios', 'token_mixers', 'pos_embs',
                    'layer_scale_init_value'}
        missing = required - set(arch)
        if missing:
            raise ValueError(f'arch dict is missing keys {sorted(missing)}; '
                             f'it needs {sorted(required)}')
        arch = copy.deepcopy(dict(arch))
        for key in ('layers', 'embed_dims', 'mlp_ratios', 'token_mixers', 'pos_embs'):
            if len(arch[key]) != self.num_stages:
                raise ValueError(f'arch[{key!r}] must have {self.num_stages} entries, got '
                                 f'{arch[key]!r}')
        for mixer in arch['token_mixers']:
            if mixer not in (_R, _A):
                raise ValueError(f"arch['token_mixers'] entries must be 'repmixer' or "
                                 f"'attention', got {mixer!r}")
        for pe in arch['pos_embs']:
            if pe not in (None, 'repcpe'):
                raise ValueError(f"arch['pos_embs'] entries must be None or 'repcpe', "
                                 f'got {pe!r}')
        return arch

    def _parse_out_indices(self, out_indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        if not isinstance(out_indices, (list, tuple)) or not out_indices:
            raise ValueError(f'out_indices must be a non-empty sequence of ints, '
                             f'got {out_indices!r}')
        result = []
        for idx in out_indices:
            if not isinstance(idx, int) or not -self.num_stages <= idx < self.num_stages:
                raise ValueError(f'out_indices entries must be ints in '
                                 f'[-{self.num_stages}, {self.num_stages - 1}], got {idx!r} '
                                 f'in {out_indices!r}')
            result.append(idx % self.num_stages)
        if len(set(result)) != len(result):
            raise ValueError(f'out_indices has duplicates after resolving negatives: '
                             f'{out_indices!r} -> {result}')
        return tuple(sorted(result))  # outputs come in stage order

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x) if self.out_norm else x)
            if i == self._last_stage:
                break
        return tuple(outs)

    # ------------------------------------------------------------------ training state
    def _freeze_stages(self) -> None:
        frozen = []
        if self.frozen_stages >= 0:
            frozen.append(self.stem)
        for i in range(self.frozen_stages):
            frozen.append(self.stages[i])
            if self.out_norm and i in self.out_indices:
                frozen.append(getattr(self, f'norm{i}'))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'FastViT':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def switch_to_deploy(self) -> None:
        """Fuse every multi-branch block in place (idempotent)."""
        reparameterize_model(self, inplace=True)
        self.deploy = True

    # ------------------------------------------------------------------ weights
    def init_weights(self) -> None:
        """Load ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` through the
        FastViT key converter (official / timm / hybridvit layouts; missing / unexpected
        keys raise :class:`CheckpointMismatchError`), else defer to ``BaseModule``."""
        cfg = self.init_cfg
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained'):
            super().init_weights()
            return
        checkpoint = cfg.get('checkpoint')
        if not checkpoint:
            raise ValueError("init_cfg type='Pretrained' needs a 'checkpoint' path or URL")
        state_dict = read_state_dict(checkpoint, prefix=cfg.get('prefix'))
        state_dict, dropped = convert_fastvit_state_dict(state_dict, deploy=self.deploy)
        target = self
        if self.deploy and is_reparameterized_state_dict(state_dict) is False:
            # Unfused weights for a deploy model: load into a training twin, then fuse.
            target = self._training_twin()
        load_state_dict_strictly(target, state_dict, source=str(checkpoint),
                                 allowed_missing=[r'^norm\d+\.'], dropped=dropped)
        if target is not self:
            self.load_state_dict(reparameterize_model(target, inplace=True).state_dict())
        self._is_init = True

    def _training_twin(self) -> 'FastViT':
        twin_args = dict(arch=self.arch, out_indices=self.out_indices, out_norm=self.out_norm,
                         output_stride=self.output_stride, token_mixer=self.token_mixer,
                         in_channels=self.stem[0].in_channels, deploy=False)
        twin = FastViT(**twin_args)
        if self.out_norm:  # keep the (possibly initialised) output norms
            for i in self.out_indices:
                getattr(twin, f'norm{i}').load_state_dict(
                    getattr(self, f'norm{i}').state_dict())
        return twin
