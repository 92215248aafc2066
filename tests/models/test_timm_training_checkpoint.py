"""FastViT checkpoints as Apple released them: files written by timm's ``CheckpointSaver``.

Apple trained FastViT with timm's ``train.py``; its ``CheckpointSaver`` stores ``epoch``,
``arch``, ``state_dict`` (Apple's own key layout), ``optimizer``, ``version``, ``args`` (an
``argparse.Namespace``), ``state_dict_ema`` with ``--model-ema``, and ``metric``. Such a file must
load through ``init_cfg`` without ``--trust-checkpoint``, taking ``state_dict`` as timm's
``validate.py`` does (``use_ema=True`` picks the EMA copy); a file that can run code is refused.
"""
import argparse
import os
import re

import pytest
import timm
import torch

import hybridvit.compat as compat
from hybridvit.models.backbones import FastViT
from hybridvit.models.utils import CheckpointMismatchError, read_state_dict
from hybridvit.models.utils.fastvit_converters import timm_to_official


def _timm_weights(seed):
    torch.manual_seed(seed)
    model = timm.create_model('fastvit_t8', pretrained=False)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    return model, model.state_dict()


def _checkpoint_saver_file(path, with_ema=True):
    """What ``timm.utils.CheckpointSaver._save`` writes (Apple's ml-fastvit ``train.py``)."""
    model, weights = _timm_weights(0)
    _, ema_weights = _timm_weights(1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    args = argparse.Namespace(model='fastvit_t8', lr=1e-3, epochs=300, sched='cosine',
                              model_ema=with_ema, model_ema_decay=0.9995, input_size=None,
                              mean=None, drop_path=0.0, distillation_type='hard',
                              output='./output')
    state = {'epoch': 299, 'arch': 'fastvit_t8', 'state_dict': timm_to_official(weights),
             'optimizer': optimizer.state_dict(), 'version': 2, 'args': args}
    if with_ema:
        state['state_dict_ema'] = timm_to_official(ema_weights)
    state['metric'] = 76.2
    torch.save(state, path)
    return weights, ema_weights


def _features(weights, x):
    feat = timm.create_model('fastvit_t8', pretrained=False, features_only=True).eval()
    # features_only models name the stages ``stem_0`` / ``stages_1`` ...
    flat = {re.sub(r'^(stem|stages)\.(\d+)\.', r'\1_\2.', k): v for k, v in weights.items()}
    missing, _ = feat.load_state_dict(flat, strict=False)
    assert not missing
    with torch.no_grad():
        return feat(x)


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert ((g - e).norm() / e.norm()).item() < 1e-4


def test_checkpoint_saver_file_loads_state_dict_through_init_cfg(tmp_path, monkeypatch):
    import hybridvit.models.utils.checkpoint as checkpoint_utils
    logged = []
    monkeypatch.setattr(checkpoint_utils, 'print_log', lambda msg, **kw: logged.append(msg))
    path = tmp_path / 'fastvit_t8.pth.tar'
    weights, ema_weights = _checkpoint_saver_file(path)
    x = torch.randn(1, 3, 64, 64)

    model = FastViT('t8', out_norm=False,
                    init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()  # no trust flag needed
    with torch.no_grad():
        got = model.eval()(x)
    _assert_same(got, _features(weights, x))  # "state_dict", as timm's validate.py loads
    assert any('holds an EMA copy' in msg for msg in logged), logged

    ema = FastViT('t8', out_norm=False,
                  init_cfg=dict(type='Pretrained', checkpoint=str(path), use_ema=True))
    ema.init_weights()
    with torch.no_grad():
        got_ema = ema.eval()(x)
    _assert_same(got_ema, _features(ema_weights, x))
    assert not torch.allclose(got_ema[-1], got[-1])


def test_use_ema_without_an_ema_copy_names_the_file(tmp_path):
    path = tmp_path / 'no_ema.pth.tar'
    weights, _ = _checkpoint_saver_file(path, with_ema=False)
    state_dict = read_state_dict(str(path))
    assert set(state_dict) == set(timm_to_official(weights))
    with pytest.raises(CheckpointMismatchError, match='no_ema.pth.tar.*state_dict_ema'):
        read_state_dict(str(path), use_ema=True)


class _Shell:
    """Unpickles to ``os.system(...)``: a file that runs a command when it is loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_file_with_a_pickled_callable_is_still_refused(tmp_path):
    path = tmp_path / 'evil.pth.tar'
    marker = tmp_path / 'ran'
    _, weights = _timm_weights(0)
    torch.save({'state_dict': timm_to_official(weights),
                'args': argparse.Namespace(model='fastvit_t8'), 'hook': _Shell(marker)}, path)
    model = FastViT('t8', out_norm=False, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(compat.UnsafeCheckpointError, match=r'evil.pth.tar.*(posix|os)\.system'):
        model.init_weights()
    assert not marker.exists()
