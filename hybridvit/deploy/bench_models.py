"""Build the models a benchmark compares, from small picklable specs (so that a spawned child
process can rebuild the same model for the memory measurement).

A spec is a dict:

* ``source``: ``'backbone'`` (hybridvit backbone by variant name, e.g. ``'fastvit-t8'``,
  ``'mobilevit-xxs'``; ``kwargs`` are passed to the class), ``'timm'`` (timm's
  ``features_only=True`` model of the same variant: the reference implementation,
  https://github.com/huggingface/pytorch-image-models) or ``'config'`` (``config``,
  ``checkpoint`` or ``None``, ``part`` as in :func:`hybridvit.deploy.exportable_part`);
* ``fused``: fuse with ``reparameterize_model`` (timm: ``timm.utils.reparameterize_model``);
* ``engine``: ``'torch'`` (eager, :data:`hybridvit.deploy.benchmark.EAGER`) or ``'ort'``
  (:data:`~hybridvit.deploy.benchmark.ORT`; ``onnx``: ``{resolution: path}``, exported by the
  caller).

Weights are random (seeded) unless a config checkpoint is given; timing does not depend on them.
"""
import warnings
from typing import Callable, Dict, Tuple

import torch
from torch import nn

from .benchmark import EAGER, ORT, ort_callable, torch_callable
from .fold_norms import fold_output_norms
from .onnx_export import exportable_part

__all__ = ['BACKBONES', 'DetPredict', 'timm_name', 'build_torch_module', 'build_callable']

# variant -> (hybridvit class, arch, outputs matching timm's features_only model)
BACKBONES: Dict[str, Tuple[str, str, tuple]] = {
    **{f'fastvit-{a}': ('FastViT', a, (0, 1, 2, 3))
       for a in ('t8', 't12', 's12', 'sa12', 'sa24', 'sa36', 'ma36', 'mci0', 'mci1', 'mci2')},
    **{f'mobilevit-{a}': ('MobileViT', a, (0, 1, 2, 3, 4)) for a in ('xxs', 'xs', 's')},
    **{f'mobilevitv2-{n}': ('MobileViTv2', w, (0, 1, 2, 3, 4))
       for n, w in (('050', '0.5'), ('075', '0.75'), ('100', '1.0'), ('125', '1.25'),
                    ('150', '1.5'), ('175', '1.75'), ('200', '2.0'))},
}


def timm_name(variant: str) -> str:
    """``'fastvit-t8'`` -> ``'fastvit_t8'`` (timm's model name)."""
    if variant not in BACKBONES:
        raise ValueError(f'unknown backbone {variant!r}; expected one of {sorted(BACKBONES)}')
    return variant.replace('-', '_')


def _build_backbone(variant: str, kwargs: dict) -> nn.Module:
    from hybridvit.models.backbones import FastViT, MobileViT, MobileViTv2
    if variant not in BACKBONES:
        raise ValueError(f'unknown backbone {variant!r}; expected one of {sorted(BACKBONES)}')
    cls_name, arch, out_indices = BACKBONES[variant]
    cls = {'FastViT': FastViT, 'MobileViT': MobileViT, 'MobileViTv2': MobileViTv2}[cls_name]
    return cls(arch=arch, out_indices=out_indices, **kwargs)


def _build_config_model(spec: dict) -> nn.Module:
    from hybridvit.apis import init_model
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='no checkpoint given')
        return init_model(spec['config'], spec.get('checkpoint'),
                          cfg_options=spec.get('cfg_options'))


def _fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold BatchNorms into the preceding convs (mmcv's ``fuse_conv_bn``, as the ``--fuse-conv-bn``
    option of mmdet/mmseg's test tools): the fair eager baseline for ResNet models."""
    from mmcv.cnn import fuse_conv_bn
    return fuse_conv_bn(model)


def build_torch_module(spec: dict) -> nn.Module:
    """The eager module of ``spec`` (eval mode, fused if ``spec['fused']``) returning a tuple."""
    torch.manual_seed(spec.get('seed', 0))
    source = spec['source']
    if source == 'backbone':
        model = _build_backbone(spec['name'], spec.get('kwargs', {})).eval()
        if spec.get('fused'):
            from hybridvit.models.utils import reparameterize_model
            model = reparameterize_model(model, inplace=True)
        return exportable_part(model, None, 'backbone').module.eval()
    if source == 'timm':
        import timm
        model = timm.create_model(spec['name'], pretrained=False, features_only=True).eval()
        if spec.get('fused'):
            from timm.utils import reparameterize_model as timm_reparameterize
            model = timm_reparameterize(model)
        return exportable_part(model, None, 'backbone').module.eval()
    if source == 'config':
        from hybridvit.apis import get_task
        from hybridvit.models.utils import reparameterize_model
        model = _build_config_model(spec)
        task = get_task(model)
        if spec.get('fused'):
            model = reparameterize_model(model, inplace=True)
            if spec.get('part', 'model') == 'model':
                fold_output_norms(model)
        if spec.get('fuse_conv_bn'):
            model = _fuse_conv_bn(model)
        module, _, _ = exportable_part(model, task, spec.get('part', 'model'))
        return module.eval()
    raise ValueError(f"spec source must be 'backbone', 'timm' or 'config', got {source!r}")


class DetPredict:
    """``model.test_step`` on one fixed random image: the full mmdet inference path (data
    preprocessor, backbone, neck, RPN + NMS, RoI box and mask heads, post-processing).

    Args:
        model: an mmdet detector (eval mode).
        shape: ``(H, W)`` of the image (already resized and padded to 32, as after the test
            pipeline).
    """

    def __init__(self, model: nn.Module, shape: Tuple[int, int]):
        from mmdet.structures import DetDataSample
        self.model = model
        gen = torch.Generator().manual_seed(0)
        img = torch.randint(0, 256, (3, *shape), generator=gen, dtype=torch.uint8)
        sample = DetDataSample(metainfo=dict(img_shape=tuple(shape), ori_shape=tuple(shape),
                                             scale_factor=(1.0, 1.0), img_id=0, img_path=''))
        self.data = dict(inputs=[img], data_samples=[sample])

    def __call__(self, x=None):
        with torch.inference_mode():
            return self.model.test_step(self.data)


def build_callable(spec: dict, resolution: int, threads: int) -> Callable:
    """A callable ``x -> outputs`` for ``spec`` (used by the memory child process too)."""
    if spec.get('part') == 'predict':
        from hybridvit.models.utils import reparameterize_model
        torch.manual_seed(spec.get('seed', 0))
        model = _build_config_model(spec)
        if spec.get('fused'):
            model = reparameterize_model(model, inplace=True)
            fold_output_norms(model)
        return DetPredict(model.eval(), spec['shape'])
    if spec.get('engine', EAGER) == ORT:
        return ort_callable(spec['onnx'][resolution], threads)
    return torch_callable(build_torch_module(spec))
