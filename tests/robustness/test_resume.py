"""A training run killed with SIGKILL between checkpoints and resumed with ``--resume`` reaches
the same weights as an uninterrupted run (ReproducibleResumeHook + atomic checkpoint writes).

Semantic FPN + FastViT-T8 on a 4-image mini ADE20K set, 64x64 crops, batch 2, CPU,
``num_workers=0``, drop path 0.2 and decode-head dropout 0.5 (so the torch RNG matters).
"""
import glob
import os.path as osp
import signal

import pytest
import torch

from _tiny import run_tool, write_seg_config
from hybridvit.compat import load_any_checkpoint
from hybridvit.datasets.generators import make_mini_ade

KILL_CONFIG = """_base_ = {base!r}
custom_imports = dict(imports=['hybridvit.models', 'hybridvit.engine', '_train_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='KillAtIterHook', at_iter={at_iter})]
"""


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('resume') / 'mini_ade')
    make_mini_ade(root, num_train=4, num_val=1, image_size=80, seed=1, quiet=True)
    return root


def _weights(path):
    ckpt = load_any_checkpoint(path)
    return {k: v for k, v in ckpt['state_dict'].items() if isinstance(v, torch.Tensor)}, ckpt


def _max_abs_diff(a, b):
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0
               for k in a)


def _train(config, work_dir, *extra):
    return run_tool(['tools/train.py', config, '--work-dir', work_dir, *extra])


def _kill_and_resume(tmp_path, config, at_iter, expect_last, final):
    kill_config = osp.join(str(tmp_path), 'kill.py')
    with open(kill_config, 'w') as f:
        f.write(KILL_CONFIG.format(base=config, at_iter=at_iter))
    ref_dir, dir_ = str(tmp_path / 'reference'), str(tmp_path / 'interrupted')

    ref = _train(config, ref_dir)
    assert ref.returncode == 0, ref.stderr[-3000:]

    killed = _train(kill_config, dir_)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-3000:])
    assert not glob.glob(osp.join(dir_, '*.tmp*'))
    with open(osp.join(dir_, 'last_checkpoint')) as f:
        last = f.read().strip()
    assert osp.basename(last) == expect_last
    weights, ckpt = _weights(last)  # complete: loads, has RNG states and finite weights
    assert 'rng_state' in ckpt
    assert all(bool(torch.isfinite(v).all()) for v in weights.values() if v.is_floating_point())
    assert not osp.exists(osp.join(dir_, final))

    resumed = _train(config, dir_, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'Auto resumed from the latest checkpoint {last}' in resumed.stdout
    assert not glob.glob(osp.join(dir_, '*.tmp*'))

    expected, _ = _weights(osp.join(ref_dir, final))
    got, _ = _weights(osp.join(dir_, final))
    diff = _max_abs_diff(expected, got)
    assert diff <= 1e-6, diff
    # the run really trained (so equality is not trivial)
    start, _ = _weights(last)
    assert _max_abs_diff(start, got) > 1e-4


def test_resume_iter_based_after_sigkill(tmp_path, ade_root):
    """12 iterations, checkpoints every 4; killed after iteration 6; resumed from iter_4."""
    config = write_seg_config(tmp_path, ade_root, max_iters=12, interval=4)
    _kill_and_resume(tmp_path, config, at_iter=6, expect_last='iter_4.pth', final='iter_12.pth')


@pytest.mark.slow  # ~50 s: three more training runs
def test_resume_epoch_based_after_sigkill(tmp_path, ade_root):
    """4 epochs of 2 iterations, a checkpoint every epoch; killed in epoch 3; resumed from
    epoch_2 (the hook reseeds every epoch, so the replay does not depend on what ran before)."""
    config = write_seg_config(tmp_path, ade_root, by_epoch=True, max_epochs=4, interval=1)
    _kill_and_resume(tmp_path, config, at_iter=5, expect_last='epoch_2.pth', final='epoch_4.pth')
