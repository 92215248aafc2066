"""INT8 post-training static quantisation of an exported segmentor with ONNX Runtime, and the
mIoU of an ONNX model through mmseg's own post-processing.

Calibration feeds real training images through the config's TEST pipeline and the model's data
preprocessor (what the deployed graph sees); evaluation turns ONNX Runtime logits into
predictions with the segmentor's ``decode_head.predict_by_feat`` + ``postprocess_result`` (resize
to the padded input, crop the padding, resize to the original image) and scores them with
mmseg's ``IoUMetric``, so fp32 ONNX, int8 ONNX and PyTorch are scored identically.
Quantisation: ``onnxruntime.quantization.quantize_static`` (QDQ format, int8 weights per
channel, uint8 activations, MinMax calibration by default).
"""
import copy
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch

__all__ = ['seg_dataset', 'preprocessed_batches', 'CalibrationReader', 'quantize_int8',
           'seg_miou']


def seg_dataset(cfg, split: str = 'val', max_samples: Optional[int] = None):
    """The config's val dataset, or (``split='train'``) the training images with the TEST
    pipeline (no augmentation). ``max_samples`` keeps the first N."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    from mmseg.registry import DATASETS
    ds_cfg = copy.deepcopy(cfg.val_dataloader.dataset)
    if split == 'train':
        ds_cfg.data_prefix = copy.deepcopy(cfg.train_dataloader.dataset.data_prefix)
    elif split != 'val':
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    if max_samples is not None:
        ds_cfg.indices = max_samples
    return DATASETS.build(ds_cfg)


def preprocessed_batches(model, dataset) -> Iterator[dict]:
    """``{'inputs': (1, 3, H, W) float tensor, 'data_samples': [...]}`` per image."""
    from mmengine.dataset import pseudo_collate
    for i in range(len(dataset)):
        with torch.no_grad():
            yield model.data_preprocessor(pseudo_collate([dataset[i]]), False)


class CalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over preprocessed images.

    Args:
        model: the segmentor (for its data preprocessor).
        dataset: images to calibrate on.
        input_name: the ONNX graph's input name.
    """

    def __init__(self, model, dataset, input_name: str = 'input'):
        self._arrays = [b['inputs'].numpy() for b in preprocessed_batches(model, dataset)]
        self._input_name = input_name
        self._next = 0

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self._next >= len(self._arrays):
            return None
        self._next += 1
        return {self._input_name: self._arrays[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self._arrays)


def quantize_int8(fp32_path: str, int8_path: str, reader: CalibrationReader,
                  method: str = 'minmax', per_channel: bool = True) -> None:
    """Static INT8 quantisation (QDQ) of ``fp32_path`` into ``int8_path``."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    methods = {'minmax': CalibrationMethod.MinMax, 'entropy': CalibrationMethod.Entropy,
               'percentile': CalibrationMethod.Percentile}
    if method not in methods:
        raise ValueError(f'calibration method must be one of {sorted(methods)}, got {method!r}')
    prepared = int8_path + '.pre.onnx'
    quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
    try:
        quantize_static(prepared, int8_path, reader, quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=per_channel, calibrate_method=methods[method])
    finally:
        import os
        if os.path.exists(prepared):
            os.remove(prepared)


def _score(results: List, dataset) -> Dict[str, float]:
    from mmseg.evaluation import IoUMetric
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dataset.metainfo
    metric.process({}, [r.to_dict() for r in results])
    return {k: float(v) for k, v in metric.compute_metrics(metric.results).items()}


def seg_miou(model, dataset, session=None) -> Dict[str, float]:
    """mIoU (and aAcc, mAcc) of ``session`` (an ONNX Runtime session giving the logits) or,
    without a session, of the PyTorch ``model`` itself, on ``dataset``."""
    results = []
    for batch in preprocessed_batches(model, dataset):
        samples = batch['data_samples']
        with torch.no_grad():
            if session is None:
                results += model.predict(batch['inputs'], samples)
                continue
            name = session.get_inputs()[0].name
            logits = torch.from_numpy(session.run(None, {name: batch['inputs'].numpy()})[0])
            metas = [s.metainfo for s in samples]
            seg_logits = model.decode_head.predict_by_feat(logits, metas)
            results += model.postprocess_result(seg_logits, samples)
    return _score(results, dataset)
