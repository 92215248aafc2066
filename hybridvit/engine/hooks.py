"""Training hooks that make interrupted runs resume exactly and stop on a diverged loss."""
import os.path as osp
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop

from hybridvit.registry import HOOKS

__all__ = ['ReproducibleResumeHook', 'NonFiniteLossHook', 'NonFiniteLossError']


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2**32)


@HOOKS.register_module()
class ReproducibleResumeHook(Hook):
    """Make a run resumed with ``--resume`` reach the same weights as an uninterrupted one.

    mmengine 0.10 does not save random states. This hook

    * reseeds Python, NumPy and torch at the start of every epoch from ``(seed, epoch)``, so an
      epoch-based run resumed at an epoch boundary replays exactly (whatever validation or
      dataloader start-up consumed in between);
    * stores the Python / NumPy / torch (and CUDA) RNG states in every checkpoint
      (``checkpoint['rng_state']``);
    * for iteration-based loops (which resume mid-"epoch" and replay the sampler to skip the
      batches already seen, re-consuming the data-augmentation RNG exactly as the first run did),
      restores torch's RNG (used by the model: dropout, drop path) before the first resumed
      iteration.
    """

    priority = 'VERY_HIGH'

    def __init__(self):
        self._pending_state: Optional[dict] = None
        self._pending_iter: Optional[int] = None

    def before_train_epoch(self, runner) -> None:
        seed = runner.seed if runner.seed is not None else 0
        value = _epoch_seed(seed, runner.epoch)
        random.seed(value)
        np.random.seed(value)
        torch.manual_seed(value)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(python=random.getstate(), numpy=np.random.get_state(),
                     torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['rng_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending_state = checkpoint.get('rng_state')
        self._pending_iter = checkpoint.get('meta', {}).get('iter')

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        state, self._pending_state = self._pending_state, None
        if state is None or not isinstance(runner.train_loop, IterBasedTrainLoop):
            return
        if runner.iter != self._pending_iter:  # loaded with load_from, not resumed
            return
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop training when the loss is NaN/inf, before a checkpoint of broken weights is saved.

    Runs before :class:`mmengine.hooks.CheckpointHook` in ``after_train_iter``, so the last
    checkpoint on disk is the last good one; the error names the iteration and that file.
    A step can also turn the weights non-finite while its loss was still finite (an inf
    gradient): every checkpoint's weights are checked before it is written, too.
    """

    priority = 'ABOVE_NORMAL'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state_dict = checkpoint.get('state_dict') or {}
        bad = [k for k, v in state_dict.items()
               if isinstance(v, torch.Tensor) and v.is_floating_point()
               and not bool(torch.isfinite(v).all())]
        if not bad:
            return
        last = osp.join(runner.work_dir, 'last_checkpoint')
        last_ckpt = open(last).read().strip() if osp.exists(last) else 'none saved yet'
        meta = checkpoint.get('meta') or {}
        shown = ', '.join(bad[:3]) + (f' and {len(bad) - 3} more' if len(bad) > 3 else '')
        raise NonFiniteLossError(
            f"non-finite weights after iteration {meta.get('iter', runner.iter)}: "
            f'{shown}; checkpoint not saved, training stopped, last good checkpoint: '
            f'{last_ckpt}')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not outputs:
            return
        values = {k: torch.as_tensor(v).detach() for k, v in outputs.items() if 'loss' in k}
        bad = {k: float(v.float().mean()) for k, v in values.items()
               if not bool(torch.isfinite(v).all())}
        if not bad:
            return
        last = osp.join(runner.work_dir, 'last_checkpoint')
        last_ckpt = open(last).read().strip() if osp.exists(last) else 'none saved yet'
        raise NonFiniteLossError(
            f'non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}): '
            f'{bad}; training stopped, last good checkpoint: {last_ckpt}')
