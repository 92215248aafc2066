"""ONNX export of fused hybridvit models (backbones, segmentors, hand-mesh estimators, the
backbone + neck of detectors) with an ONNX Runtime check against PyTorch.

Structural reparameterisation (RepVGG https://arxiv.org/abs/2101.03697, MobileOne
https://arxiv.org/abs/2206.04040, FastViT https://arxiv.org/abs/2303.14189) turns the
multi-branch training blocks into single convs; the fused graph is what gets exported. Uses the
TorchScript-based exporter of ``torch.onnx.export`` (``dynamo=False``): the dynamo exporter needs
``onnxscript``, which the pinned stack does not install.

What a ``part`` means per task (see :func:`exportable_part`):

* ``backbone``: the backbone's tuple of NCHW feature maps (outputs ``feat0``, ``feat1``, ...).
* ``model``: segmentor -> decode-head logits (``EncoderDecoder._forward``, output ``seg_logits``,
  1/4 of the input size, before resizing and argmax); hand mesh -> the head's tensor outputs
  (``forward(mode='tensor')``: ``cam``, ``joints``, ``keypoints_2d_norm``, ``verts``);
  detector -> backbone + neck feature maps (``extract_feat``). RPN proposal decoding, NMS and the
  RoI box / mask heads of a two-stage detector are data-dependent and are NOT exported
  (:data:`DET_NOT_EXPORTED`).
"""
import contextlib
import os
import os.path as osp
import types
import warnings
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['DET_NOT_EXPORTED', 'OutputsAsTuple', 'ExportCheck', 'exportable_part',
           'flatten_outputs', 'output_names', 'export_onnx', 'check_onnx', 'ort_session',
           'trace_friendly_shapes', 'parameter_count']

DET_NOT_EXPORTED = ('RPN proposal decoding + NMS, the RoI box / mask heads and their '
                    'post-processing are not exported (data-dependent); the ONNX graph holds '
                    'backbone + neck (extract_feat) only')


def flatten_outputs(out) -> List[Tuple[str, torch.Tensor]]:
    """Flatten a tensor / tuple / list / dict output into ``(name, tensor)`` pairs.

    Dicts are visited in sorted key order (the same order as
    :func:`hybridvit.apis.model_io.comparable_outputs`), sequences in order.
    """
    if isinstance(out, torch.Tensor):
        return [('', out)]
    pairs = []
    if isinstance(out, dict):
        for key in sorted(out):
            pairs += [(f'{key}{"." + n if n else ""}', t) for n, t in flatten_outputs(out[key])]
    elif isinstance(out, (list, tuple)):
        for i, item in enumerate(out):
            pairs += [(f'{i}{"." + n if n else ""}', t) for n, t in flatten_outputs(item)]
    return pairs


class OutputsAsTuple(nn.Module):
    """Wrap ``fn(module, x)`` so that the exported graph returns a flat tuple of tensors.

    Args:
        module: the module whose parameters the graph uses.
        fn: ``fn(module, inputs)`` -> tensor / tuple / dict of tensors.
    """

    def __init__(self, module: nn.Module, fn: Callable[[nn.Module, torch.Tensor], object]):
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(t for _, t in flatten_outputs(self.fn(self.module, x)))


def _call(module, x):
    return module(x)


def _private_forward(model, x):
    return model._forward(x)


def _tensor_mode(model, x):
    return model(x, mode='tensor')


def _extract_feat(model, x):
    return model.extract_feat(x)


def exportable_part(model: nn.Module, task: Optional[str], part: str
                    ) -> Tuple[OutputsAsTuple, str, Optional[str]]:
    """Pick what to export from ``model``.

    Args:
        model: a bare backbone (``task=None``) or a model built by
            :func:`hybridvit.apis.init_model`.
        task: ``None`` (bare backbone), ``'seg'``, ``'det'`` or ``'hand'``.
        part: ``'backbone'`` or ``'model'``.

    Returns:
        ``(module returning a flat tuple, output name prefix, note on what is not exported)``.
    """
    if part not in ('backbone', 'model'):
        raise ValueError(f"part must be 'backbone' or 'model', got {part!r}")
    if task is None:
        return OutputsAsTuple(model, _call), 'feat', None
    if task not in ('seg', 'det', 'hand'):
        raise ValueError(f"task must be None, 'seg', 'det' or 'hand', got {task!r}")
    if part == 'backbone':
        if not hasattr(model, 'backbone'):
            raise ValueError(f'{type(model).__name__} has no backbone to export')
        return OutputsAsTuple(model.backbone, _call), 'feat', None
    if task == 'det':
        return OutputsAsTuple(model, _extract_feat), 'feat', DET_NOT_EXPORTED
    if task == 'hand':
        return OutputsAsTuple(model, _tensor_mode), '', None
    return OutputsAsTuple(model, _private_forward), '', None


def output_names(module: nn.Module, example: torch.Tensor, prefix: str) -> List[str]:
    """ONNX output names: ``{prefix}{i}`` for sequences, dict keys for dict outputs."""
    with torch.no_grad():
        pairs = flatten_outputs(module.fn(module.module, example))
    if prefix:
        return [f'{prefix}{i}' for i in range(len(pairs))]
    if len(pairs) == 1:
        return ['seg_logits']
    return [name.replace('.', '_') for name, _ in pairs]


# ----------------------------------------------------------------------------- MobileViT shapes
def _global_trace_friendly(self, x: torch.Tensor) -> torch.Tensor:
    """``MobileViTBlock._global`` whose patch grid follows the input size in a traced graph.

    The eager version computes the padded size with ``math.ceil`` and resizes only when needed;
    a trace records both as constants, so a graph exported at one size fails at another. Here
    the sizes stay tensor arithmetic and the (possibly identity) resize is always recorded: a
    bilinear resize to the same size is exact, so outputs are unchanged.
    """
    batch, dim, height, width = x.shape
    p = self.patch_size
    new_h, new_w = (height + p - 1) // p * p, (width + p - 1) // p * p
    x = F.interpolate(x, size=(new_h, new_w), mode='bilinear', align_corners=False)
    n_h, n_w = new_h // p, new_w // p
    # [B, d, n_h*p, n_w*p] -> [B, d, n_h, p, n_w, p] -> [B, p, p, n_h, n_w, d] -> [B*P, N, d]
    x = x.reshape(batch, dim, n_h, p, n_w, p).permute(0, 3, 5, 2, 4, 1)
    x = x.reshape(batch * p * p, n_h * n_w, dim)
    x = self.norm(self.transformer(x))
    # [B*P, N, d] -> [B, p, p, n_h, n_w, d] -> [B, d, n_h, p, n_w, p] -> [B, d, H', W']
    x = x.reshape(batch, p, p, n_h, n_w, dim).permute(0, 5, 3, 1, 4, 2)
    x = x.reshape(batch, dim, new_h, new_w)
    return F.interpolate(x, size=(height, width), mode='bilinear', align_corners=False)


def _mmseg_upsample_trace_friendly(self, x: torch.Tensor) -> torch.Tensor:
    """mmseg ``Upsample.forward`` with the output size kept as tensor arithmetic.

    mmseg computes ``int(t * scale_factor)``, which a trace freezes. For an integer factor
    ``t * factor`` is the same size, and the resize is identical.
    """
    factor = int(self.scale_factor)
    size = (x.shape[-2] * factor, x.shape[-1] * factor)
    return F.interpolate(x, size=size, mode=self.mode, align_corners=self.align_corners)


def _shape_patches(model: nn.Module) -> List[Tuple[nn.Module, str, Callable]]:
    from hybridvit.models.layers.mobilevit_block import MobileViTBlock
    patches = []
    for m in model.modules():
        if isinstance(m, MobileViTBlock):
            patches.append((m, '_global', _global_trace_friendly))
        elif (type(m).__name__ == 'Upsample' and type(m).__module__.startswith('mmseg.')
              and not m.size and isinstance(m.scale_factor, float)
              and m.scale_factor.is_integer()):
            patches.append((m, 'forward', _mmseg_upsample_trace_friendly))
    return patches


@contextlib.contextmanager
def trace_friendly_shapes(model: nn.Module) -> Iterator[int]:
    """Temporarily make size computations traceable, for graphs with dynamic input sizes.

    Patches (instances only, restored on exit): every :class:`MobileViTBlock`'s unfold / fold
    (:func:`_global_trace_friendly`) and every mmseg ``Upsample`` with an integer scale factor
    (as in Semantic FPN's head). Yields the number of patched modules.
    """
    patches = _shape_patches(model)
    for module, name, fn in patches:
        setattr(module, name, types.MethodType(fn, module))
    try:
        yield len(patches)
    finally:
        for module, name, _ in patches:
            delattr(module, name)  # falls back to the class attribute


# ----------------------------------------------------------------------------- export + check
def ort_session(model_path: str, threads: int = 1):
    """An ONNX Runtime CPU session with a fixed intra-op thread count (1 inter-op thread)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model_path, sess_options=opts,
                                providers=['CPUExecutionProvider'])


class ExportCheck(dict):
    """Result of :func:`check_onnx` for one input shape: ``shape``, ``max_abs``, ``max_rel``."""

    def __str__(self) -> str:
        return (f'input {"x".join(map(str, self["shape"]))}: max abs diff '
                f'{self["max_abs"]:.3e}, max relative error {self["max_rel"]:.3e}')


def check_onnx(model_path: str, module: nn.Module, inputs: Sequence[torch.Tensor],
               threads: int = 1) -> List[ExportCheck]:
    """Run the ONNX file through ONNX Runtime and compare with ``module`` (PyTorch).

    The relative error is ``max |ort - torch| / max |torch|`` over each output, worst output
    reported (as in :func:`hybridvit.apis.model_io.max_relative_error`).
    """
    sess = ort_session(model_path, threads)
    name = sess.get_inputs()[0].name
    results = []
    for x in inputs:
        with torch.no_grad():
            ref = [t.numpy() for t in module(x)]
        got = sess.run(None, {name: x.numpy()})
        if len(got) != len(ref):
            raise RuntimeError(f'ONNX model gives {len(got)} outputs, PyTorch {len(ref)}')
        max_abs = max_rel = 0.0
        for a, b in zip(ref, got):
            if a.shape != b.shape:
                raise RuntimeError(f'ONNX output shape {b.shape} != PyTorch {a.shape} for '
                                   f'input {tuple(x.shape)}')
            diff = float(np.abs(a - b).max()) if a.size else 0.0
            max_abs = max(max_abs, diff)
            max_rel = max(max_rel, diff / max(float(np.abs(a).max()) if a.size else 0.0, 1e-12))
        results.append(ExportCheck(shape=tuple(x.shape), max_abs=max_abs, max_rel=max_rel))
    return results


def export_onnx(module: OutputsAsTuple, example: torch.Tensor, out_file: str,
                names: Optional[List[str]] = None, dynamic: Union[bool, str] = False,
                opset: int = 17,
                check_inputs: Optional[Sequence[torch.Tensor]] = None, tol: float = 1e-4,
                threads: int = 1) -> List[ExportCheck]:
    """Export ``module`` to ``out_file`` atomically, after checking it in ONNX Runtime.

    The graph is written to a temporary file next to ``out_file``, checked with
    :func:`check_onnx` on ``example`` and ``check_inputs`` (e.g. a second size for a dynamic
    graph); only when every relative error is below ``tol`` is it renamed to ``out_file``,
    otherwise it is deleted and a ``RuntimeError`` raised.

    Args:
        module: eval-mode module returning a flat tuple (see :func:`exportable_part`).
        example: the tracing input ``(N, 3, H, W)``.
        out_file: ``.onnx`` path.
        names: output names (default ``out0``, ``out1``, ...).
        dynamic: ``True``: batch, height and width are dynamic axes; ``'batch'``: only the
            batch axis; ``False``: static shapes.
        opset: ONNX opset.
        check_inputs: extra inputs to compare on.
        tol: maximum relative error allowed.
        threads: ONNX Runtime intra-op threads for the check.

    Returns:
        One :class:`ExportCheck` per checked input.
    """
    import onnx
    module.eval()
    with torch.no_grad():
        n_out = len(module(example))
    names = names or [f'out{i}' for i in range(n_out)]
    if len(names) != n_out:
        raise ValueError(f'{len(names)} output names for {n_out} outputs')
    if dynamic not in (True, False, 'batch'):
        raise ValueError(f"dynamic must be True, False or 'batch', got {dynamic!r}")
    dynamic_axes = None
    if dynamic == 'batch':
        dynamic_axes = {n: {0: 'batch'} for n in ['input'] + names}
    elif dynamic:
        dynamic_axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        with torch.no_grad():
            for name, out in zip(names, module(example)):
                # NCHW maps: batch and spatial axes follow the input; others only the batch
                dynamic_axes[name] = ({0: 'batch', 2: f'{name}_h', 3: f'{name}_w'}
                                      if out.dim() == 4 else {0: 'batch'})
    out_dir = osp.dirname(osp.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    tmp = osp.join(out_dir, f'.{osp.basename(out_file)}.{os.getpid()}.tmp')
    try:
        ctx = trace_friendly_shapes(module) if dynamic is True else contextlib.nullcontext()
        with ctx, warnings.catch_warnings(), torch.no_grad():
            warnings.filterwarnings('ignore', message='.*legacy TorchScript-based ONNX export')
            warnings.filterwarnings('ignore', message='.*The feature will be removed')
            warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
            torch.onnx.export(module, (example,), tmp, dynamo=False, opset_version=opset,
                              input_names=['input'], output_names=names,
                              dynamic_axes=dynamic_axes, do_constant_folding=True)
        onnx.checker.check_model(tmp)
        checks = check_onnx(tmp, module, [example] + list(check_inputs or []), threads)
        worst = max(checks, key=lambda c: c['max_rel'])
        if not worst['max_rel'] < tol:
            raise RuntimeError(f'ONNX Runtime output differs from PyTorch ({worst}; allowed '
                               f'relative error {tol:g}); nothing written')
        os.replace(tmp, out_file)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return checks


def parameter_count(module: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())
