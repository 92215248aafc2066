"""FastViT-MCi0/1/2 (MobileCLIP image encoders, https://arxiv.org/abs/2311.17049): equality
with timm's ``fastvit_mci*`` features through ``init_cfg`` (timm layout and MobileCLIP's
``image_encoder.model.*`` layout with official names), SE + activation in the downsamplings,
fusion."""
import re

import pytest
import timm
import torch
from timm.models.fastvit import checkpoint_filter_fn
from torch import nn

from hybridvit.models.backbones import FastViT
from hybridvit.models.utils import reparameterize_model
from hybridvit.models.utils.fastvit_converters import timm_to_official

ARCHS = ['mci0', 'mci1', 'mci2']


def _randomise(model: nn.Module) -> nn.Module:
    """Random BN statistics / affine and O(1) layer scales so every branch matters."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.num_features, generator=g))
        for name, p in model.named_parameters():
            if name.endswith('gamma'):
                p.copy_(0.3 + 0.5 * torch.rand(p.shape, generator=g))
    return model


def _assert_close(got, expected, tol=1e-4):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        err = ((a - b).abs().max() / b.abs().max()).item()
        assert err < tol, f'relative error {err:.2e}'


def _pretrained(path, **kwargs) -> FastViT:
    model = FastViT(init_cfg=dict(type='Pretrained', checkpoint=str(path)), out_norm=False,
                    **kwargs)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('arch', ARCHS)
def test_mci_matches_timm_forward_intermediates(arch, tmp_path):
    torch.manual_seed(0)
    ref = _randomise(timm.create_model(f'fastvit_{arch}', pretrained=False)).eval()
    sd = ref.state_dict()
    assert any('.downsample.proj.0.se.fc1.' in k for k in sd)
    torch.save(sd, tmp_path / 'timm.pth')
    ours = _pretrained(tmp_path / 'timm.pth', arch=arch)
    # same parameters as timm without its classifier (final_conv + head)
    head = sum(p.numel() for n, p in ref.named_parameters()
               if n.startswith(('head', 'final_conv')))
    assert sum(p.numel() for p in ours.parameters()) == \
        sum(p.numel() for p in ref.parameters()) - head
    for size in ((64, 64), (64, 96)):
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            _assert_close(ours(x), ref.forward_intermediates(x, intermediates_only=True))


@pytest.fixture(scope='module')
def mci0_state():
    torch.manual_seed(0)
    ref = _randomise(timm.create_model('fastvit_mci0', pretrained=False)).eval()
    return ref, ref.state_dict()


def test_mobileclip_image_tower_checkpoint(mci0_state, tmp_path):
    """MobileCLIP layout: official names under ``image_encoder.model.`` beside a text tower;
    timm's own ``checkpoint_filter_fn`` maps the same file back to timm's names."""
    ref, sd = mci0_state
    clip = {f'image_encoder.model.{k}': v for k, v in timm_to_official(sd).items()}
    assert 'image_encoder.model.network.5.proj.0.se.reduce.weight' in clip
    clip['text_encoder.transformer.0.weight'] = torch.zeros(2)
    clip['logit_scale'] = torch.zeros(())
    back = checkpoint_filter_fn({'state_dict': dict(clip)}, ref)
    assert set(back) == set(sd)
    torch.save({'state_dict': clip}, tmp_path / 'mobileclip_s0.pt')
    ours = _pretrained(tmp_path / 'mobileclip_s0.pt', arch='mci0')
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        _assert_close(ours(x), ref.forward_intermediates(x, intermediates_only=True))


@pytest.mark.parametrize('output_stride', [32, 16])
def test_mci_fused_equals_unfused(mci0_state, tmp_path, output_stride):
    _, sd = mci0_state
    torch.save(sd, tmp_path / 'timm.pth')
    ours = _pretrained(tmp_path / 'timm.pth', arch='mci0', output_stride=output_stride)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        unfused = ours(x)
        fused = reparameterize_model(ours)
        assert fused.stages[3].downsample.proj[0].large_conv is None
        assert isinstance(fused.stages[3].downsample.proj[0].se.fc1, nn.Conv2d)  # SE kept
        _assert_close(fused(x), unfused, tol=1e-5)
        deploy = _pretrained(tmp_path / 'timm.pth', arch='mci0', output_stride=output_stride,
                             deploy=True)
        _assert_close(deploy(x), unfused, tol=1e-5)


def test_mci_rows_leave_the_other_rows_alone():
    t8 = FastViT('t8')
    assert t8.arch_settings['se_downsamples'] == (False,) * 4
    assert not t8.arch_settings['lkc_use_act']
    assert all(isinstance(s.downsample.proj[0].se, nn.Identity) for s in t8.stages[1:])
    assert all(isinstance(s.downsample.proj[0].act, nn.Identity) for s in t8.stages[1:])
    mci = FastViT('mci0')
    assert [not isinstance(s.downsample.proj[0].se, nn.Identity) for s in mci.stages[1:]] == \
        [False, True, True]
    assert all(isinstance(s.downsample.proj[0].act, nn.GELU) for s in mci.stages[1:])


def test_open_clip_trunk_prefix_and_dropped_text_tower(mci0_state):
    """open_clip MobileCLIP checkpoints hold timm names under ``visual.trunk.``."""
    from hybridvit.models.utils.fastvit_converters import convert_fastvit_state_dict
    _, sd = mci0_state
    clip = {f'visual.trunk.{k}': v for k, v in sd.items()}
    clip['text.token_embedding.weight'] = torch.zeros(2)
    converted, dropped = convert_fastvit_state_dict(clip)
    expected, expected_dropped = convert_fastvit_state_dict(sd)
    assert list(converted) == list(expected)
    assert dropped == ['text.token_embedding.weight'] + expected_dropped
