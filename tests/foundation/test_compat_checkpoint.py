"""mmengine checkpoints save and resume on torch >= 2.6, with ``weights_only=True`` kept."""
import argparse
import os
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader

import hybridvit.compat as compat


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        out = self.linear(inputs).squeeze(-1)
        if mode == 'loss':
            labels = torch.stack(labels) if isinstance(labels, list) else labels
            return dict(loss=((out - labels) ** 2).mean())
        return out


class ToyDataset(torch.utils.data.Dataset):
    metainfo = dict(classes=('a', 'b'))

    def __len__(self):
        return 8

    def __getitem__(self, idx):
        x = torch.tensor([idx / 8.0, 1.0])
        return dict(inputs=x, labels=x[0] * 2 - 1)


def _runner(work_dir, max_epochs, resume=False):
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyDataset(), sampler=dict(type='DefaultSampler', shuffle=True),
                              batch_size=4, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        randomness=dict(seed=0),
        resume=resume,
        default_scope='mmengine',
        experiment_name=f'toy_{max_epochs}_{resume}',
    )


def test_runner_checkpoint_resumes(tmp_path):
    _runner(tmp_path, max_epochs=2).train()
    ckpt = tmp_path / 'epoch_2.pth'
    assert ckpt.exists()
    # the message hub holds HistoryBuffer objects: plain weights_only loading refuses them
    with pytest.raises(Exception, match='HistoryBuffer|Unsupported global'):
        torch.load(ckpt, weights_only=True)
    loaded = CheckpointLoader.load_checkpoint(str(ckpt), map_location='cpu')
    assert loaded['meta']['epoch'] == 2

    runner = _runner(tmp_path, max_epochs=3, resume=True)
    runner.train()
    assert runner.epoch == 3
    assert (tmp_path / 'epoch_3.pth').exists()


class _RunsCode:
    """Unpickles to ``os.getcwd()``: any callable a file names would run the same way."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_arbitrary_pickled_object_is_refused_unless_trusted(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'args': argparse.Namespace(lr=1),
                'payload': _RunsCode()}, path)
    with pytest.raises(compat.UnsafeCheckpointError, match=r'evil.pth.*(posix|os)\.getcwd'):
        CheckpointLoader.load_checkpoint(path)
    compat.trust_checkpoint(path)
    with pytest.warns(UserWarning, match='weights_only=False'):
        ckpt = CheckpointLoader.load_checkpoint(path)
    assert ckpt['args'].lr == 1
    assert ckpt['payload'] == os.getcwd()


def test_argparse_namespace_loads_without_trust(tmp_path):
    """timm's CheckpointSaver stores its ``args`` as an ``argparse.Namespace`` (data only)."""
    path = str(tmp_path / 'timm_train.pth.tar')
    args = argparse.Namespace(model='fastvit_t8', lr=1e-3, sched='cosine', epochs=300,
                              input_size=None, mean=(0.485, 0.456, 0.406), model_ema=True)
    torch.save({'epoch': 3, 'state_dict': {'w': torch.ones(1)}, 'args': args}, path)
    ckpt = CheckpointLoader.load_checkpoint(path)
    assert isinstance(ckpt['args'], argparse.Namespace)
    assert vars(ckpt['args']) == vars(args)


def test_safetensors_and_missing_file(tmp_path):
    from safetensors.torch import save_file
    path = str(tmp_path / 'weights.safetensors')
    save_file({'a': torch.arange(3.)}, path)
    assert torch.equal(CheckpointLoader.load_checkpoint(path)['a'], torch.arange(3.))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        CheckpointLoader.load_checkpoint(osp.join(str(tmp_path), 'nope.pth'))


def test_no_mmengine_attribute_is_rebound():
    """compat extends mmengine through its registries only."""
    import mmengine.runner.checkpoint as mm_checkpoint
    import mmengine.runner.runner as mm_runner

    import hybridvit.models  # noqa: F401  (everything a config imports)
    assert mm_runner.save_checkpoint is mm_checkpoint.save_checkpoint
    assert mm_checkpoint.save_checkpoint.__module__ == 'mmengine.runner.checkpoint'


def test_atomic_backend_leaves_no_partial_file(tmp_path):
    from mmengine.fileio import get_file_backend
    backend = get_file_backend(str(tmp_path), backend_args=dict(backend=compat.ATOMIC_BACKEND))
    target = tmp_path / 'sub' / 'epoch_1.pth'
    backend.put(b'0123', str(target))
    assert target.read_bytes() == b'0123'

    # a write that fails half-way (as on a full disk) keeps the old file, leaves no temp file
    import builtins
    real_open = builtins.open

    def failing_open(path, mode='r', *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        if 'w' in mode and str(path).startswith(str(tmp_path / 'sub' / '.epoch_1.pth')):
            handle.write(b'01')
            handle.close()
            raise OSError('No space left on device')
        return handle

    builtins.open = failing_open
    try:
        with pytest.raises(OSError, match='No space'):
            backend.put(b'456789', str(target))
    finally:
        builtins.open = real_open
    assert target.read_bytes() == b'0123'
    assert sorted(p.name for p in (tmp_path / 'sub').iterdir()) == ['epoch_1.pth']


def test_tools_point_the_checkpoint_hook_at_the_atomic_backend(tmp_path):
    from mmengine.config import Config

    from hybridvit.engine.runner_setup import add_default_hooks
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1))))
    add_default_hooks(cfg)
    assert cfg.default_hooks.checkpoint.backend_args == dict(backend=compat.ATOMIC_BACKEND)
    # a backend the user chose (e.g. object storage) is left alone
    own = Config(dict(default_hooks=dict(checkpoint=dict(
        type='CheckpointHook', backend_args=dict(backend='petrel')))))
    add_default_hooks(own)
    assert own.default_hooks.checkpoint.backend_args == dict(backend='petrel')
    # and a real run writes its checkpoints through it
    runner = _runner(tmp_path, max_epochs=1)
    hook = next(h for h in runner.hooks if type(h).__name__ == 'CheckpointHook')
    hook.backend_args = dict(backend=compat.ATOMIC_BACKEND)
    runner.train()
    assert type(hook.file_backend).__name__ == 'AtomicLocalBackend'
    assert (tmp_path / 'epoch_1.pth').exists()
