"""The backbone contract every hybridvit backbone shares, written once.

Follows mmdet's ResNet / Swin and mmpretrain's ``BaseBackbone`` contract: ``arch`` picks a row of
the class's ``arch_zoo`` (or is a dict), ``out_indices`` (negatives allowed) select the returned
stages, ``frozen_stages`` freezes the stem and the first stages (and keeps them in eval mode
through :meth:`train`), ``norm_eval`` keeps every BatchNorm in eval mode, ``with_cp`` enables
gradient checkpointing, ``deploy`` builds the fused (reparameterised) model, and
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` loads a checkpoint through the
family's key converter.

A family subclass provides:

* ``arch_zoo`` (variant table), ``arch_keys`` (required keys of an arch dict),
  ``arch_defaults`` (optional keys and their defaults), ``num_stages``, and optionally
  :meth:`check_arch` (family-specific checks of the parsed ``self.arch_settings``);
* :meth:`frozen_modules` (what ``frozen_stages=i`` freezes);
* :meth:`convert_state_dict` (checkpoint layout -> our names, pure function of the keys);
* optionally ``pretrained_missing_ok`` (regexes of keys a pretrained checkpoint may lack, e.g.
  the dense-prediction output norms).

Loading unfused weights into a ``deploy=True`` model builds a training-time twin of the same
configuration, loads the weights there, fuses it and copies the fused weights over, for every
family the same way (the twin is built from the arguments recorded at construction).
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hybridvit.utils.errors import UserError
from ..utils.checkpoint import load_state_dict_strictly, read_state_dict
from ..utils.reparameterize import reparameterize_model

__all__ = ['HybridBackbone']


class HybridBackbone(BaseModule):
    """Base class of the hybridvit backbones (the OpenMMLab backbone contract).

    Args:
        arch: a name of ``arch_zoo`` or a dict; parsed into ``self.arch_settings`` and checked
            by the family's :meth:`check_arch`.
        out_indices: stages to return (``0 .. num_stages - 1``; negatives count from the end);
            the outputs come in stage order.
        frozen_stages: ``-1`` freezes nothing, ``0`` the stem, ``i`` the stem and stages
            ``1..i`` (see the family's :meth:`frozen_modules`).
        norm_eval: keep every BatchNorm in eval mode while training.
        with_cp: gradient checkpointing in :meth:`run_checkpointed` (saves memory).
        deploy: the model is built fused (single-branch convs).
        init_cfg: mmengine init config; ``type='Pretrained'`` goes through
            :meth:`load_pretrained` (keys ``checkpoint``, ``prefix`` and ``use_ema``: load
            ``state_dict_ema`` of a timm training checkpoint instead of ``state_dict``).
    """

    arch_zoo: Dict[str, Dict] = {}
    arch_keys: Tuple[str, ...] = ()
    arch_defaults: Dict = {}
    num_stages: int = 0
    pretrained_missing_ok: Tuple[str, ...] = ()

    def __new__(cls, *args, **kwargs):
        # Record the construction arguments: the training twin used to load unfused weights
        # into a deploy model is the same configuration with deploy=False.
        obj = super().__new__(cls)
        object.__setattr__(obj, '_build_args', (args, copy.deepcopy(kwargs)))
        return obj

    def __init__(self,
                 arch: Union[str, Dict],
                 out_indices: Union[int, Sequence[int]],
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 deploy: bool = False,
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self.parse_arch(arch)
        self.check_arch(self.arch_settings)
        self.out_indices = self.parse_out_indices(out_indices)
        if (not isinstance(frozen_stages, int) or isinstance(frozen_stages, bool)
                or not -1 <= frozen_stages <= self.num_stages):
            raise UserError(f'{type(self).__name__}: frozen_stages must be an int in '
                            f'[-1, {self.num_stages}], got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.deploy = deploy

    # ------------------------------------------------------------------ configuration
    @classmethod
    def parse_arch(cls, arch: Union[str, Dict]) -> Dict:
        """Return a copy of the settings of ``arch`` (a name of ``arch_zoo`` or a dict) with the
        defaults filled in.

        Raises:
            UserError: unknown name (the message lists the valid ones), or a dict with missing
                or unknown keys.
        """
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_zoo:
                raise UserError(f'unknown {cls.__name__} arch {arch!r}; expected one of '
                                f'{", ".join(repr(k) for k in cls.arch_zoo)} or a dict')
            arch = cls.arch_zoo[arch.lower()]
        if not isinstance(arch, dict):
            raise UserError(f'{cls.__name__} arch must be a name or a dict, got '
                            f'{type(arch).__name__}')
        missing = [k for k in cls.arch_keys if k not in arch]
        unknown = [k for k in arch if k not in cls.arch_keys and k not in cls.arch_defaults]
        if missing or unknown:
            raise UserError(f'{cls.__name__} arch dict: missing keys {missing}, unknown keys '
                            f'{unknown}; expected {list(cls.arch_keys)} and optionally '
                            f'{list(cls.arch_defaults)}')
        return {**copy.deepcopy(cls.arch_defaults), **copy.deepcopy(dict(arch))}

    @classmethod
    def check_arch(cls, settings: Dict) -> None:
        """Family-specific checks of parsed arch settings (raise :class:`UserError`)."""

    @classmethod
    def check_arch_lengths(cls, settings: Dict, lengths: Dict[str, int]) -> None:
        """Raise :class:`UserError` unless ``len(settings[key]) == n`` for each ``key: n``."""
        for key, length in lengths.items():
            value = settings[key]
            if not isinstance(value, (list, tuple)) or len(value) != length:
                raise UserError(f'{cls.__name__} arch[{key!r}] needs {length} values, got '
                                f'{value!r}')

    def parse_out_indices(self, out_indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        """Resolve negative indices, check the range and duplicates, sort."""
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        name = type(self).__name__
        if not isinstance(out_indices, (list, tuple)) or not out_indices:
            raise UserError(f'{name}: out_indices must be a non-empty sequence of ints, got '
                            f'{out_indices!r}')
        result = []
        for idx in out_indices:
            if (not isinstance(idx, int) or isinstance(idx, bool)
                    or not -self.num_stages <= idx < self.num_stages):
                raise UserError(f'{name}: out_indices entries must be ints in '
                                f'[-{self.num_stages}, {self.num_stages - 1}], got {idx!r} in '
                                f'{tuple(out_indices)!r}')
            idx %= self.num_stages
            if idx in result:
                raise UserError(f'{name}: out_indices {tuple(out_indices)!r} has duplicates '
                                f'after resolving negatives (stage {idx} twice)')
            result.append(idx)
        return tuple(sorted(result))

    # ------------------------------------------------------------------ forward helpers
    def run_checkpointed(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``module(x)``, gradient-checkpointed when ``with_cp`` and training."""
        if self.with_cp and self.training and x.requires_grad:
            return cp.checkpoint(module, x, use_reentrant=False)
        return module(x)

    # ------------------------------------------------------------------ training state
    def frozen_modules(self) -> List[nn.Module]:
        """Modules that ``frozen_stages`` freezes (the family decides)."""
        raise NotImplementedError

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        for module in self.frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'HybridBackbone':
        """Set the mode, then re-freeze frozen stages and (``norm_eval``) every BatchNorm."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def switch_to_deploy(self) -> None:
        """Fuse every reparameterisable block in place (idempotent); outputs are unchanged in
        eval mode."""
        reparameterize_model(self, inplace=True)
        self.deploy = True

    # ------------------------------------------------------------------ weights
    def convert_state_dict(self, state_dict: Dict[str, torch.Tensor], source: str
                           ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
        """Map a checkpoint's keys to this family's names; return ``(state_dict, dropped)``
        where ``dropped`` are keys removed on purpose (classifier heads). ``source`` names the
        file in error messages."""
        raise NotImplementedError

    def init_weights(self) -> None:
        """``type='Pretrained'``: :meth:`load_pretrained`; otherwise mmengine's init."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            checkpoint = cfg.get('checkpoint')
            if not checkpoint:
                raise UserError(f"{type(self).__name__}: init_cfg of type 'Pretrained' needs a "
                                f"'checkpoint' path or URL, got {cfg}")
            self.load_pretrained(checkpoint, prefix=cfg.get('prefix'),
                                 use_ema=cfg.get('use_ema', False))
            self._is_init = True
            return
        super().init_weights()

    def load_pretrained(self, checkpoint: str, prefix: Optional[str] = None,
                        use_ema: bool = False) -> None:
        """Read ``checkpoint``, convert its keys and load it strictly.

        Unfused weights load into a ``deploy=True`` model through a training twin that is
        fused after loading.

        Raises:
            CheckpointMismatchError: missing / unexpected / mis-shaped keys (all listed).
        """
        state_dict = read_state_dict(checkpoint, prefix=prefix, use_ema=use_ema)
        state_dict, dropped = self.convert_state_dict(state_dict, source=str(checkpoint))
        target = self
        if self.deploy and not set(state_dict) <= set(self.state_dict()):
            target = self.training_twin()
        load_state_dict_strictly(target, state_dict, source=str(checkpoint),
                                 allowed_missing=self.pretrained_missing_ok, dropped=dropped)
        if target is not self:
            fused = reparameterize_model(target, inplace=True).state_dict()
            load_state_dict_strictly(self, fused, source=f'{checkpoint} (fused)')

    def training_twin(self) -> 'HybridBackbone':
        """The same configuration with ``deploy=False`` (for loading unfused weights); keys
        the checkpoint may lack keep this model's values."""
        args, kwargs = self._build_args
        kwargs = dict(copy.deepcopy(kwargs), deploy=False, init_cfg=None)
        twin = type(self)(*copy.deepcopy(args), **kwargs)
        own = self.state_dict()
        twin_state = twin.state_dict()
        keep = {k: v for k, v in own.items() if k in twin_state and v.shape == twin_state[k].shape}
        twin.load_state_dict(keep, strict=False)
        return twin
