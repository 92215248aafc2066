"""ONNX export of fused hybridvit models (backbones, segmentors, hand-mesh estimators, the
backbone + neck of detectors) with an ONNX Runtime check against PyTorch.

Structural reparameterisation (RepVGG https://arxiv.org/abs/2101.03697, MobileOne
https://arxiv.org/abs/2206.04040, FastViT https://arxiv.org/abs/2303.14189) turns the
multi-branch training blocks into single convs; the fused graph is what gets exported. Uses the
TorchScript-based exporter of ``torch.onnx.export`` (``dynamo=False``): the dynamo exporter needs
``onnxscript``, which the pinned stack does not install.

What a ``part`` means per task (the task adapters in :mod:`hybridvit.apis.tasks`; see
:func:`exportable_part`):

* ``backbone``: the backbone's tuple of NCHW feature maps (outputs ``feat0``, ``feat1``, ...).
* ``model``: segmentor -> decode-head logits (``EncoderDecoder._forward``, output ``seg_logits``,
  1/4 of the input size, before resizing and argmax); hand mesh -> the head's tensor outputs
  (``forward(mode='tensor')``: ``cam``, ``joints``, ``keypoints_2d_norm``, ``verts``);
  detector -> backbone + neck feature maps (``extract_feat``). RPN proposal decoding, NMS and the
  RoI box / mask heads of a two-stage detector are data-dependent and are NOT exported
  (:data:`DET_NOT_EXPORTED`).
"""
import contextlib
import types
import warnings
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from hybridvit.apis.tasks import DET_NOT_EXPORTED, ExportPart, call_module, get_task
from hybridvit.utils.atomic import atomic_write
from hybridvit.utils.outputs import OutputsAsTuple, compare_outputs, flatten_outputs

__all__ = ['DET_NOT_EXPORTED', 'OutputsAsTuple', 'ExportCheck', 'exportable_part',
           'flatten_outputs', 'output_names', 'export_onnx', 'check_onnx', 'ort_session',
           'trace_friendly_shapes', 'parameter_count']


def exportable_part(model: nn.Module, task, part: str) -> ExportPart:
    """Pick what to export from ``model``.

    Args:
        model: a bare backbone (``task=None``) or a model built by
            :func:`hybridvit.apis.init_model`.
        task: ``None`` (bare backbone), or anything :func:`hybridvit.apis.get_task` takes (a
            task adapter, a task name such as ``'seg'``, a config or the model itself).
        part: ``'backbone'``, ``'model'`` or another part of the task's adapter
            (:meth:`hybridvit.apis.Task.part_functions`).

    Returns:
        ``(module returning a flat tuple, output name prefix, note on what is not exported)``.
    """
    if task is None:
        if part not in ('backbone', 'model'):
            raise ValueError(f"part must be 'backbone' or 'model', got {part!r}")
        return ExportPart(OutputsAsTuple(model, call_module), 'feat', None)
    return get_task(task).exportable_part(model, part)


def output_names(module: OutputsAsTuple, example: torch.Tensor, prefix: str) -> List[str]:
    """ONNX output names: ``{prefix}{i}`` for sequences (``feat0``, ...), the keys for dict
    outputs (``seg_logits``, ``joints``, ...); nested names joined with ``_``."""
    with torch.no_grad():
        pairs = module.named_outputs(example)
    return [f'{prefix}{name or 0}'.replace('.', '_') for name, _ in pairs]


# ----------------------------------------------------------------------------- traced shapes
def _mmseg_upsample_trace_friendly(self, x: torch.Tensor) -> torch.Tensor:
    """mmseg ``Upsample.forward`` with the output size kept as tensor arithmetic.

    mmseg computes ``int(t * scale_factor)``, which a trace freezes. For an integer factor
    ``t * factor`` is the same size, and the resize is identical.
    """
    factor = int(self.scale_factor)
    size = (x.shape[-2] * factor, x.shape[-1] * factor)
    return F.interpolate(x, size=size, mode=self.mode, align_corners=self.align_corners)


def _shape_patches(model: nn.Module) -> List[Tuple[nn.Module, str, Callable]]:
    return [(m, 'forward', _mmseg_upsample_trace_friendly) for m in model.modules()
            if type(m).__name__ == 'Upsample' and type(m).__module__.startswith('mmseg.')
            and not m.size and isinstance(m.scale_factor, float)
            and m.scale_factor.is_integer()]


@contextlib.contextmanager
def trace_friendly_shapes(model: nn.Module) -> Iterator[int]:
    """Temporarily make mmseg's size computations traceable, for dynamic input sizes.

    Our own blocks trace as they are (e.g. ``MobileViTBlock`` always records its patch-grid
    resize while tracing). Upstream mmseg ``Upsample`` with an integer scale factor (as in
    Semantic FPN's head) computes ``int(t * factor)``, which a trace freezes: those instances
    get :func:`_mmseg_upsample_trace_friendly` as ``forward`` until exit. Yields the number of
    patched modules.
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
    reported (:func:`hybridvit.utils.outputs.compare_outputs`).
    """
    sess = ort_session(model_path, threads)
    name = sess.get_inputs()[0].name
    results = []
    for x in inputs:
        with torch.no_grad():
            ref = list(module(x))
        try:
            diff = compare_outputs(ref, sess.run(None, {name: x.numpy()}))
        except ValueError as err:  # number or shapes of outputs differ
            raise RuntimeError(f'ONNX Runtime vs PyTorch for input {tuple(x.shape)}: '
                               f'{err}') from err
        results.append(ExportCheck(shape=tuple(x.shape), **diff))
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
    with atomic_write(out_file) as tmp:  # renamed to out_file only if the check passes
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
    return checks


def parameter_count(module: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())
