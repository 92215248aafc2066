"""mmengine checkpoints save and resume on torch >= 2.6, with ``weights_only=True`` kept."""
import argparse
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


def test_arbitrary_pickled_object_is_refused_unless_trusted(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'args': argparse.Namespace(lr=1)}, path)
    with pytest.raises(compat.UnsafeCheckpointError, match='evil.pth.*Namespace'):
        CheckpointLoader.load_checkpoint(path)
    compat.trust_checkpoint(path)
    with pytest.warns(UserWarning, match='weights_only=False'):
        ckpt = CheckpointLoader.load_checkpoint(path)
    assert ckpt['args'].lr == 1


def test_safetensors_and_missing_file(tmp_path):
    from safetensors.torch import save_file
    path = str(tmp_path / 'weights.safetensors')
    save_file({'a': torch.arange(3.)}, path)
    assert torch.equal(CheckpointLoader.load_checkpoint(path)['a'], torch.arange(3.))
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        CheckpointLoader.load_checkpoint(osp.join(str(tmp_path), 'nope.pth'))
