"""CoreML export of fused backbones (``coremltools`` ML Program, ``.mlpackage``).

FastViT (https://arxiv.org/abs/2303.14189) and MobileViT (https://arxiv.org/abs/2110.02178)
report mobile latency of CoreML models; this converts our fused backbones the same way
(``torch.export``, else ``torch.jit.trace``,
-> ``coremltools.convert``). Conversion runs on Linux; running or
profiling the result needs macOS / iOS (``MLModel.predict`` is unavailable elsewhere), so
outputs cannot be checked against PyTorch here.
"""
import warnings
from typing import Sequence

import torch
from torch import nn

from hybridvit.utils.atomic import atomic_write_dir

__all__ = ['CoreMLUnavailable', 'export_coreml']


class CoreMLUnavailable(RuntimeError):
    """coremltools is missing or cannot convert the model."""


def export_coreml(module: nn.Module, shape: Sequence[int], out_file: str,
                  precision: str = 'fp16', min_target: str = 'iOS16') -> list:
    """Convert ``module`` (eval, returning a tensor tuple) and save an ML Program atomically.

    Args:
        module: the fused model part (e.g. from :func:`hybridvit.deploy.exportable_part`).
        shape: input shape ``(N, 3, H, W)``.
        out_file: ``.mlpackage`` directory to write.
        precision: ``'fp16'`` (Neural Engine friendly) or ``'fp32'`` compute precision.
        min_target: minimum deployment target, a ``coremltools.target`` name.

    Returns:
        Names of the model's outputs.
    """
    try:
        import coremltools as ct
    except ImportError as err:
        raise CoreMLUnavailable(f'coremltools is not installed ({err}); '
                                'pip install coremltools==9.0') from err
    if precision not in ('fp16', 'fp32'):
        raise ValueError(f"precision must be 'fp16' or 'fp32', got {precision!r}")
    if not hasattr(ct.target, min_target):
        raise ValueError(f'unknown coremltools deployment target {min_target!r}')
    module.eval()
    example = torch.randn(*shape)
    target = getattr(ct.target, min_target)
    compute = ct.precision.FLOAT16 if precision == 'fp16' else ct.precision.FLOAT32
    errors = []
    mlmodel = None
    # torch.export first: static shapes are specialised away; coremltools 9.0's TorchScript
    # frontend fails on traced size arithmetic with numpy 2 ("only 0-dimensional arrays ...").
    for frontend in ('torch.export', 'torch.jit.trace'):
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
                if frontend == 'torch.export':
                    program = torch.export.export(module, (example,)).run_decompositions({})
                    mlmodel = ct.convert(program, convert_to='mlprogram',
                                         minimum_deployment_target=target,
                                         compute_precision=compute)
                else:
                    traced = torch.jit.trace(module, example)
                    mlmodel = ct.convert(
                        traced, inputs=[ct.TensorType(name='input', shape=tuple(shape))],
                        convert_to='mlprogram', minimum_deployment_target=target,
                        compute_precision=compute)
            break
        except Exception as err:  # noqa: BLE001 - coremltools raises many types
            first = str(err).strip().splitlines()[0] if str(err).strip() else ''
            errors.append(f'{frontend}: {type(err).__name__}: {first[:200]}')
    if mlmodel is None:
        raise CoreMLUnavailable(f'coremltools {ct.__version__} failed to convert with torch '
                                f'{torch.__version__} ({"; ".join(errors)})')
    with atomic_write_dir(out_file) as tmp:  # an .mlpackage is a folder
        mlmodel.save(tmp)
    return [o.name for o in mlmodel.get_spec().description.output]
