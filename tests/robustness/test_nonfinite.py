"""A diverged run (NaN loss, or NaN weights after a step) stops with exit status 2 and one line
naming the iteration; the last checkpoint on disk is the last good one."""
import glob
import os.path as osp

import pytest
import torch

from _tiny import assert_user_error, run_tool, write_seg_config
from hybridvit.compat import load_any_checkpoint
from hybridvit.datasets.generators import make_mini_ade

POISON = """
custom_imports = dict(imports=['hybridvit.models', 'hybridvit.engine', '_train_hooks'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='PoisonWeightHook', at_iter={at_iter}, when={when!r})]
"""


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('nonfinite') / 'mini_ade')
    make_mini_ade(root, num_train=2, num_val=1, image_size=64, seed=2, quiet=True)
    return root


def _last_checkpoint_is_good(work_dir, expected_name):
    assert not glob.glob(osp.join(work_dir, '*.tmp*'))
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        last = f.read().strip()
    assert osp.basename(last) == expected_name
    state = load_any_checkpoint(last)['state_dict']
    assert all(bool(torch.isfinite(v).all()) for v in state.values()
               if isinstance(v, torch.Tensor) and v.is_floating_point())
    return last


@pytest.mark.parametrize('when,at_iter,needle', [
    ('before', 7, 'non-finite loss at iteration 7'),     # NaN loss between checkpoints
    ('after', 8, 'non-finite weights after iteration 8'),  # finite loss, NaN weights to save
])
def test_nonfinite_stops_with_last_good_checkpoint(tmp_path, ade_root, when, at_iter, needle):
    config = write_seg_config(tmp_path, ade_root, max_iters=12, interval=4,
                              extra=POISON.format(at_iter=at_iter, when=when))
    work_dir = str(tmp_path / 'work')
    proc = run_tool(['tools/train.py', config, '--work-dir', work_dir])
    line = assert_user_error(proc, needle, 'iter_4.pth')
    assert 'last good checkpoint' in line
    _last_checkpoint_is_good(work_dir, 'iter_4.pth')
    assert not osp.exists(osp.join(work_dir, 'iter_8.pth'))
    assert not osp.exists(osp.join(work_dir, 'iter_12.pth'))
