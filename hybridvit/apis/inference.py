"""One inference entry point for the three tasks (detection, segmentation, hand mesh).

    model = init_model('configs/seg/...py', 'work_dirs/.../iter_300.pth', device='cpu')
    result = inference_model(model, 'demo/demo.jpg')   # SegDataSample / DetDataSample / hand sample

The config's ``default_scope`` picks the task adapter (:mod:`hybridvit.apis.tasks`).
Checkpoints are loaded strictly (a clear :class:`CheckpointMismatchError` otherwise); without a
checkpoint the weights are random (a warning says so) and nothing is ever downloaded (backbone
``init_cfg`` is dropped).
"""
import os.path as osp
import warnings
from typing import Optional, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import CheckpointLoader

from hybridvit.models.utils.checkpoint import load_state_dict_strictly
from hybridvit.utils.cli import UserError
from hybridvit.utils.image_io import read_image_bgr, to_bgr_uint8

from .tasks import get_task

__all__ = ['init_model', 'inference_model', 'MIN_IMAGE_SIDE']

# the backbones' output stride: smaller inputs have no stride-32 feature map
MIN_IMAGE_SIDE = 32


def _drop_pretrained(model_cfg) -> None:
    model_cfg.pop('pretrained', None)
    for key in ('backbone', 'neck'):
        if isinstance(model_cfg.get(key), dict):
            model_cfg[key].init_cfg = None
    model_cfg.init_cfg = None


def _default_dataset_meta(cfg: Config) -> Optional[dict]:
    for loader in ('test_dataloader', 'val_dataloader'):
        ds = cfg.get(loader, {}).get('dataset', {}) if cfg.get(loader) else {}
        while isinstance(ds, dict) and 'dataset' in ds:
            ds = ds['dataset']
        if isinstance(ds, dict) and ds.get('metainfo'):
            return dict(ds['metainfo'])
    return None


def init_model(config: Union[str, Config], checkpoint: Optional[str] = None,
               device: str = 'cpu', cfg_options: Optional[dict] = None):
    """Build the model of ``config`` and load ``checkpoint`` strictly (eval mode).

    A ``.onnx`` checkpoint of a whole detector (``tools/deploy/export_onnx.py``) gives the ONNX
    Runtime backend instead (:class:`hybridvit.deploy.detector_onnx.OnnxDetector`), which
    :func:`inference_model` runs the same way.
    """
    if isinstance(config, str):
        if not osp.isfile(config):
            raise UserError(f'config file not found: {config}')
        config = Config.fromfile(config)
    if cfg_options:
        config.merge_from_dict(cfg_options)
    task = get_task(config)
    if checkpoint is not None and str(checkpoint).endswith('.onnx'):  # ONNX Runtime backend
        from hybridvit.deploy.detector_onnx import init_onnx_detector
        return init_onnx_detector(config, checkpoint, _default_dataset_meta(config)
                                  or task.default_dataset_meta())
    _drop_pretrained(config.model)
    task.prepare_config(config)
    init_default_scope(config.get('default_scope'))
    import hybridvit.models  # noqa: F401  (register hybridvit modules)
    from mmengine.registry import MODELS
    model = MODELS.build(config.model)

    meta = {}
    if checkpoint is not None:
        raw = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
        state_dict = raw.get('state_dict', raw) if isinstance(raw, dict) else raw
        meta = raw.get('meta', {}) if isinstance(raw, dict) else {}
        state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                      for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
        load_state_dict_strictly(model, state_dict, source=checkpoint)
    else:
        warnings.warn(f'no checkpoint given for {osp.basename(str(config.filename))}: the '
                      'weights are random, predictions are meaningless')
    model.dataset_meta = (meta.get('dataset_meta') or _default_dataset_meta(config)
                          or task.default_dataset_meta())
    model.cfg = config
    model.to(device)
    model.eval()
    return model


def _as_bgr(img) -> np.ndarray:
    if isinstance(img, str):
        return read_image_bgr(img)
    if isinstance(img, np.ndarray):
        return to_bgr_uint8(img)
    raise UserError(f'expected an image path or an HxW[xC] array, got {type(img).__name__}')


def inference_model(model, img, bbox=None):
    """Run ``model`` (from :func:`init_model`) on an image path or BGR array.

    Args:
        bbox: hand mesh only: ``(x1, y1, x2, y2)`` crop of the hand (default: whole image).

    Returns:
        ``SegDataSample`` / ``DetDataSample`` / the hand-mesh data sample.
    """
    img = _as_bgr(img)
    min_side = MIN_IMAGE_SIDE
    if min(img.shape[:2]) < min_side:
        raise UserError(f'image is {img.shape[1]}x{img.shape[0]} pixels; the networks need at '
                        f'least {min_side}x{min_side} (their output stride)')
    return get_task(model).inference(model, img, bbox=bbox)
