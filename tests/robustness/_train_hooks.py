"""Test-only training hooks, imported by the tiny configs of the robustness tests
(``custom_imports=dict(imports=['_train_hooks'])`` with tests/robustness on PYTHONPATH)."""
import os
import signal

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class KillAtIterHook(Hook):
    """SIGKILL the training process right after iteration ``at_iter`` (1-based): a hard crash
    between checkpoints, no Python clean-up runs."""

    priority = 'LOWEST'

    def __init__(self, at_iter: int):
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class PoisonWeightHook(Hook):
    """Set the first floating-point parameter to NaN at iteration ``at_iter`` (1-based):
    ``when='before'`` (before the forward pass: that iteration's loss is NaN) or ``'after'``
    (after the optimizer step: the loss was finite but the weights saved next are not)."""

    priority = 'HIGHEST'

    def __init__(self, at_iter: int, when: str = 'before'):
        self.at_iter, self.when = at_iter, when

    def _poison(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        with torch.no_grad():
            next(p for p in model.parameters() if p.is_floating_point()).fill_(float('nan'))

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.when == 'before' and runner.iter + 1 == self.at_iter:
            self._poison(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.when == 'after' and runner.iter + 1 == self.at_iter:
            self._poison(runner)
