"""The per-task adapter: everything a tool needs to know about one task, in one object.

A config's ``default_scope`` (``mmseg``, ``mmdet``, ``hybridvit``) names its task; the tools
(demo, test, export, reparameterize, benchmark) ask the task's :class:`Task` instead of
branching on the scope. Adding a task is one file: subclass :class:`Task`, fill in the
methods, decorate it with :func:`hybridvit.apis.tasks.register_task`.
"""
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from hybridvit.utils.errors import UserError
from hybridvit.utils.outputs import OutputsAsTuple

__all__ = ['Task', 'ExportPart', 'call_module']


def call_module(module: nn.Module, x: torch.Tensor):
    """``module(x)`` (a module-level function, so that :class:`OutputsAsTuple` pickles)."""
    return module(x)


class ExportPart(NamedTuple):
    """What :meth:`Task.exportable_part` returns.

    Attributes:
        module: eval-mode module returning a flat tuple of tensors.
        prefix: output-name prefix (``'feat'`` gives ``feat0``, ``feat1``, ...; ``''`` keeps the
            dict keys of the outputs, e.g. ``seg_logits`` or ``joints``).
        not_exported: what of the model is NOT in this part (printed by the tools), or None.
    """
    module: OutputsAsTuple
    prefix: str
    not_exported: Optional[str]


class Task:
    """Base class of the task adapters (one instance per task, see ``TASKS``).

    Attributes:
        name: short name used in file names and messages (``'seg'``, ``'det'``, ``'hand'``).
        scope: the configs' ``default_scope``.
        export_shape: default ``(H, W)`` of an export when the config names none.
        shape_multiple: exported input sides must be multiples of this (mmdet pads to 32).
        coreml_parts: parts that :mod:`hybridvit.deploy.coreml_export` can convert.
    """

    name: str = ''
    scope: str = ''
    export_shape: Tuple[int, int] = (512, 512)
    shape_multiple: int = 1
    coreml_parts: Tuple[str, ...] = ('backbone', 'model')

    # ------------------------------------------------------------------ building
    def prepare_config(self, cfg) -> None:
        """Edit a loaded config before the model is built for inference (in place)."""

    def default_dataset_meta(self) -> dict:
        """Dataset meta (classes, palette) when neither the checkpoint nor the config has one."""
        return {}

    # ------------------------------------------------------------------ inference
    def inference(self, model, img_bgr: np.ndarray, **kwargs):
        """One image (HxWx3 BGR uint8) -> the task's data sample."""
        raise NotImplementedError

    # ------------------------------------------------------------------ export / compare
    def part_functions(self) -> Dict[str, Tuple[Callable, str, Optional[str]]]:
        """``{part: (fn(model, x), output prefix, note on what is not exported)}``.

        ``'backbone'`` is common to every task; a task adds its own parts (``'model'``, and
        e.g. a whole-detector part) by extending this dict.
        """
        return {'backbone': (_backbone, 'feat', None)}

    @property
    def parts(self) -> Tuple[str, ...]:
        return tuple(self.part_functions())

    def exportable_part(self, model: nn.Module, part: str) -> ExportPart:
        """The module to export / time / compare for ``part`` of ``model``.

        Raises:
            UserError: the task has no such part, or the model no backbone.
        """
        functions = self.part_functions()
        if part not in functions:
            raise UserError(f'{self.name} models have no exportable part {part!r}; expected '
                            f'one of {sorted(functions)}')
        if part == 'backbone' and not hasattr(model, 'backbone'):
            raise UserError(f'{type(model).__name__} has no backbone to export')
        fn, prefix, note = functions[part]
        return ExportPart(OutputsAsTuple(model, fn), prefix, note)

    def onnx_exporter(self, part: str) -> Optional[Callable]:
        """The task's own ONNX export of ``part``, or None for the generic one (trace
        :meth:`exportable_part`, compare with ONNX Runtime on a random input).

        A task overrides this for a part that is more than a traced module, e.g. the whole
        detector with its pre- and post-processing. The callable is
        ``fn(fused_model, (H, W), out_file, dynamic, opset)``: it exports, checks and prints
        what ``tools/deploy/export_onnx.py`` reports, and raises :class:`UserError` on failure.
        """
        return None

    def comparable_outputs(self, model: nn.Module, inputs: torch.Tensor) -> List[torch.Tensor]:
        """Deterministic tensors that a fused model must reproduce (no grad).

        Args:
            inputs: a normalised batch ``(N, 3, H, W)`` (the data preprocessor's output).
        """
        with torch.no_grad():
            return list(self.exportable_part(model, 'model').module(inputs))

    def export_input_shape(self, cfg) -> Tuple[int, int]:
        """The config's input size, else :attr:`export_shape`."""
        return tuple(self.export_shape)

    def check_input_shape(self, shape: Sequence[int]) -> None:
        """Raise :class:`UserError` for an ``(H, W)`` the exported model cannot take."""
        h, w = shape
        if h < 32 or w < 32:
            raise UserError(f'input shape must be at least 32x32 (the output stride), got '
                            f'{h}x{w}')
        if h % self.shape_multiple or w % self.shape_multiple:
            raise UserError(f'input shape for a {self.name} model must be multiples of '
                            f'{self.shape_multiple}, got {h}x{w}')

    # ------------------------------------------------------------------ results
    def draw(self, img_bgr: np.ndarray, result, meta: dict, score_thr: float = 0.3,
             opacity: float = 0.5) -> Tuple[np.ndarray, str]:
        """``(picture of result over img_bgr, one-line summary)``; the demo and
        ``tools/test.py --show-dir`` both draw with this."""
        raise NotImplementedError

    def test_image(self, inputs: torch.Tensor, sample) -> np.ndarray:
        """The image a test-time ``sample`` is drawn on (default: its original file)."""
        from hybridvit.utils.image_io import read_image_bgr
        return read_image_bgr(sample.img_path)

    def save_extras(self, model, result, out_stem: str) -> List[str]:
        """Write extra result files next to the picture (e.g. a mesh); returns their paths."""
        return []

    def configure_test_outputs(self, cfg, out: str) -> None:
        """Make ``tools/test.py --out OUT`` dump the predictions (edits ``cfg`` in place)."""
        raise UserError(f'{self.name} configs have no test output dump (asked for {out})')


def _backbone(model, x):
    return model.backbone(x)
