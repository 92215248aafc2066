"""Task adapters: one object per task (segmentation, detection, hand mesh) that builds,
exports, compares, draws and dumps, so that tools never branch on ``default_scope``.

    task = get_task(cfg)            # or get_task(model), get_task('seg')
    part = task.exportable_part(model, 'model')
    vis, summary = task.draw(img, result, model.dataset_meta)

Adding a task: one file with a :class:`Task` subclass decorated with :func:`register_task`,
imported below.
"""
from .base import ExportPart, Task, call_module
from .det import DET_NOT_EXPORTED, DetTask
from .hand import HandTask
from .registry import TASKS, get_task, register_task
from .seg import SegTask

__all__ = ['TASKS', 'Task', 'ExportPart', 'SegTask', 'DetTask', 'HandTask', 'DET_NOT_EXPORTED',
           'get_task', 'register_task', 'call_module']
