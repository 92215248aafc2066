"""MobileViTv2 backbone: equality with timm's features for every width (timm / cvnets / HF
checkpoint layouts through ``init_cfg``), deploy fusion, output strides, user errors.

Reference key sets: timm's are the real ones (``timm.create_model(..., pretrained=False)``);
the ml-cvnets names are made from timm's by ``_timm_to_cvnets`` (written from cvnets'
``MobileViTBlockv2`` / ``LinearAttnFFN`` / ``InvertedResidual`` module names); the HF names are
made from those cvnets names by ``_cvnets_to_hf``, which applies the published rules of HF
transformers' ``models/mobilevitv2/convert_mlcvnets_to_pytorch.py`` (``create_rename_keys``).
"""
import re
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from hybridvit.models.backbones.mobilevitv2 import MobileViTv2, mobilevitv2_arch
from hybridvit.models.utils.checkpoint import CheckpointMismatchError
from hybridvit.models.utils.mobilevitv2_converters import (convert_mobilevitv2_state_dict,
                                                           detect_mobilevitv2_format)
from hybridvit.registry import MODELS
from hybridvit.utils.errors import UserError

WIDTHS = {'0.5': '050', '0.75': '075', '1.0': '100', '1.25': '125', '1.5': '150',
          '1.75': '175', '2.0': '200'}
DEPTHS = (2, 4, 3)


# ---------------------------------------------------------------------------- helpers
def _randomise_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics / affine parameters and GroupNorm affines."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
            elif isinstance(m, nn.GroupNorm):
                m.weight.copy_(torch.rand(m.num_channels, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_channels, generator=gen) * 0.1)
    return model


def _timm_model(width: str, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return _randomise_bn(timm.create_model(f'mobilevitv2_{WIDTHS[width]}', pretrained=False,
                                           **kwargs)).eval()


def _save(state_dict, path: Path) -> str:
    if path.suffix == '.safetensors':
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    else:
        torch.save({'state_dict': state_dict}, str(path))
    return str(path)


def _pretrained(path, **kwargs) -> MobileViTv2:
    model = MobileViTv2(init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs)
    model.init_weights()
    return model.eval()


def _assert_close(ours, ref, tol=1e-4):
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        err = (a - b).abs().max() / b.abs().max().clamp_min(1e-12)
        assert err < tol, f'relative error {err:.2e}'


def _timm_to_cvnets(state_dict, prefix=''):
    """timm names -> ml-cvnets names (cvnets' module tree: ConvLayer = ``block.conv`` /
    ``block.norm``; MV2 = ``block.exp_1x1`` / ``conv_3x3`` / ``red_1x1``; MobileViTBlockv2 =
    ``local_rep.{0,1}``, ``global_rep.{k,L}``, ``conv_proj``; ``classifier.1`` = the Linear)."""
    out = {}
    for key, value in state_dict.items():
        k = re.sub(r'\.bn\.', '.block.norm.', key)
        k = re.sub(r'\.conv\.', '.block.conv.', k)
        k = re.sub(r'^stem\.', 'conv_1.', k)
        k = re.sub(r'^head\.fc\.', 'classifier.1.', k)
        m = re.match(r'^stages\.(\d+)\.(\d+)\.(.*)$', k)
        if m:
            stage, block, rest = int(m.group(1)), m.group(2), m.group(3)
            rest = re.sub(r'^conv1_1x1\.', 'block.exp_1x1.', rest)
            rest = re.sub(r'^conv2_kxk\.', 'block.conv_3x3.', rest)
            rest = re.sub(r'^conv3_1x1\.', 'block.red_1x1.', rest)
            rest = re.sub(r'^conv_kxk\.', 'local_rep.0.', rest)
            rest = re.sub(r'^conv_1x1\.weight$', 'local_rep.1.block.conv.weight', rest)
            t = re.match(r'^transformer\.(\d+)\.(.*)$', rest)
            if t:
                name = t.group(2)
                for src, dst in (('norm1.', 'pre_norm_attn.0.'),
                                 ('attn.qkv_proj.', 'pre_norm_attn.1.qkv_proj.block.conv.'),
                                 ('attn.out_proj.', 'pre_norm_attn.1.out_proj.block.conv.'),
                                 ('norm2.', 'pre_norm_ffn.0.'),
                                 ('mlp.fc1.', 'pre_norm_ffn.1.block.conv.'),
                                 ('mlp.fc2.', 'pre_norm_ffn.3.block.conv.')):
                    if name.startswith(src):
                        name = dst + name[len(src):]
                rest = f'global_rep.{t.group(1)}.{name}'
            rest = re.sub(r'^norm\.', f'global_rep.{DEPTHS[stage - 2]}.', rest)
            k = f'layer_{stage + 1}.{block}.{rest}'
        out[k if k.startswith('classifier') else prefix + k] = value
    return out


def _cvnets_to_hf(state_dict, model_prefix='mobilevitv2.'):
    """cvnets names -> HF ``MobileViTV2`` names by the rules of HF's
    ``convert_mlcvnets_to_pytorch.py`` (``create_rename_keys``), in the same order."""
    out = {}
    for k, v in state_dict.items():
        n = k[8:] if k.startswith('encoder.') else k
        n = n.replace('.block.', '.').replace('.conv.', '.convolution.')
        n = n.replace('.norm.', '.normalization.')
        n = n.replace('conv_1.', f'{model_prefix}conv_stem.')
        for i in (1, 2):
            n = n.replace(f'layer_{i}.', f'{model_prefix}encoder.layer.{i - 1}.layer.')
        n = n.replace('.exp_1x1.', '.expand_1x1.').replace('.red_1x1.', '.reduce_1x1.')
        for i in (3, 4, 5):
            layer = f'{model_prefix}encoder.layer.{i - 1}.'
            n = n.replace(f'layer_{i}.0.', layer + 'downsampling_layer.')
            n = n.replace(f'layer_{i}.1.local_rep.0.', layer + 'conv_kxk.')
            n = n.replace(f'layer_{i}.1.local_rep.1.', layer + 'conv_1x1.')
        for i, depth in zip((3, 4, 5), DEPTHS):
            for j in range(depth):
                n = n.replace(f'layer_{i}.1.global_rep.{j}.',
                              f'{model_prefix}encoder.layer.{i - 1}.transformer.layer.{j}.')
            n = n.replace(f'layer_{i}.1.global_rep.{depth}.',
                          f'{model_prefix}encoder.layer.{i - 1}.layernorm.')
            n = n.replace(f'layer_{i}.1.conv_proj.',
                          f'{model_prefix}encoder.layer.{i - 1}.conv_projection.')
        for src, dst in (('pre_norm_attn.0.', 'layernorm_before.'),
                         ('pre_norm_attn.1.', 'attention.'),
                         ('pre_norm_ffn.0.', 'layernorm_after.'),
                         ('pre_norm_ffn.1.', 'ffn.conv1.'), ('pre_norm_ffn.3.', 'ffn.conv2.'),
                         ('classifier.1.', 'classifier.'), ('seg_head.', 'segmentation_head.'),
                         ('.aspp_layer.', '.'), ('.aspp_pool.', '.')):
            n = n.replace(src, dst)
        out[n] = v
    return out


# ---------------------------------------------------------------------------- timm equality
@pytest.mark.parametrize('width', list(WIDTHS))
def test_every_width_matches_timm_forward_intermediates(width, tmp_path):
    """Weights from a saved timm state dict through init_cfg; square and non-square inputs."""
    ref = _timm_model(width)
    assert MobileViTv2.arch_zoo[width] == mobilevitv2_arch(float(width))
    ckpt = _save(ref.state_dict(), tmp_path / f'mobilevitv2_{WIDTHS[width]}.pth')
    ours = _pretrained(ckpt, arch=width, out_indices=(0, 1, 2, 3, 4))
    assert ours.out_channels == [f['num_chs'] for f in ref.feature_info]
    assert ours.out_strides == [f['reduction'] for f in ref.feature_info] == [2, 4, 8, 16, 32]
    for size in ((64, 64), (64, 96)):
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            _assert_close(ours(x), ref.forward_intermediates(x, intermediates_only=True))


@pytest.fixture(scope='module')
def timm_050():
    return _timm_model('0.5')


@pytest.fixture(scope='module')
def ckpt_050(timm_050, tmp_path_factory):
    return _save(timm_050.state_dict(), tmp_path_factory.mktemp('v2') / 'mobilevitv2_050.pth')


def test_safetensors_cvnets_and_hf_layouts_give_timm_features(timm_050, tmp_path):
    ref = timm_050
    timm_sd = ref.state_dict()
    cv_sd = _timm_to_cvnets(timm_sd)
    hf_sd = _cvnets_to_hf(cv_sd)
    assert detect_mobilevitv2_format(timm_sd) == 'timm'
    assert detect_mobilevitv2_format(cv_sd) == 'cvnets'
    assert detect_mobilevitv2_format(hf_sd) == 'hf'
    assert 'mobilevitv2.encoder.layer.3.transformer.layer.3.attention.qkv_proj.convolution.weight' \
        in hf_sd
    files = [_save(timm_sd, tmp_path / 'timm.safetensors'), _save(cv_sd, tmp_path / 'cv.pt'),
             _save(hf_sd, tmp_path / 'hf.pth')]
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        expected = ref.forward_intermediates(x, intermediates_only=True)
        for ckpt in files:
            _assert_close(_pretrained(ckpt, arch='0.5', out_indices=(0, 1, 2, 3, 4))(x),
                          expected)


def test_segmentation_checkpoints_drop_heads(timm_050):
    """cvnets DeepLabv3 (``encoder.`` + ``seg_head``) and HF ForSemanticSegmentation
    (``mobilevitv2.`` + ``segmentation_head``) give the timm conversion, heads dropped."""
    expected, _ = convert_mobilevitv2_state_dict(timm_050.state_dict())
    cv_sd = _timm_to_cvnets(timm_050.state_dict(), prefix='encoder.')
    cv_sd['seg_head.aspp.aspp_layer.0.block.conv.weight'] = torch.zeros(1)
    hf_sd = _cvnets_to_hf(cv_sd)
    for sd, heads in ((cv_sd, {'classifier.1.weight', 'classifier.1.bias',
                               'seg_head.aspp.aspp_layer.0.block.conv.weight'}),
                      (hf_sd, {'classifier.weight', 'classifier.bias',
                               'segmentation_head.aspp.0.convolution.weight'})):
        converted, dropped = convert_mobilevitv2_state_dict(sd)
        assert set(dropped) == heads
        assert list(converted) == list(expected)
        assert all(torch.equal(converted[k], expected[k]) for k in expected)


def test_unknown_and_v1_layouts_are_named():
    assert detect_mobilevitv2_format(MobileViTv2('0.5').state_dict()) == 'hybridvit'
    with pytest.raises(CheckpointMismatchError, match='MobileViT v1 checkpoint'):
        detect_mobilevitv2_format(timm.create_model('mobilevit_xxs').state_dict())
    with pytest.raises(CheckpointMismatchError, match='unrecognised MobileViTv2'):
        detect_mobilevitv2_format({'features.0.weight': torch.zeros(1)})


def test_checkpoint_of_another_width_lists_mismatched_shapes(ckpt_050):
    with pytest.raises(CheckpointMismatchError,
                       match=r'shape mismatch.*stem\.conv\.weight: checkpoint \(16, 3, 3, 3\) '
                             r'vs model \(32, 3, 3, 3\)'):
        _pretrained(ckpt_050, arch='1.0')


# ---------------------------------------------------------------------------- output stride
@pytest.mark.parametrize('output_stride', [16, 8])
def test_output_stride_matches_timm(output_stride, timm_050, ckpt_050):
    ref = timm.create_model('mobilevitv2_050', pretrained=False, features_only=True,
                            output_stride=output_stride)
    ref.load_state_dict({re.sub(r'^stages\.(\d+)', r'stages_\1', k): v
                         for k, v in timm_050.state_dict().items() if not k.startswith('head.')})
    ref.eval()
    ours = _pretrained(ckpt_050, arch='0.5', out_indices=(0, 1, 2, 3, 4),
                       output_stride=output_stride)
    assert ours.out_strides == ref.feature_info.reduction()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        _assert_close(ours(x), ref(x))


@pytest.mark.parametrize('output_stride', [32, 16, 8])
def test_shapes_for_odd_sizes(output_stride):
    """Like cvnets / timm, L3..L5 round their size up to a multiple of the 2x2 patch."""
    model = MobileViTv2('0.5', out_indices=(0, 1, 2, 3, 4), output_stride=output_stride).eval()
    assert model.out_strides == [min(s, output_stride) for s in (2, 4, 8, 16, 32)]
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 112, 137))
    expected = {32: [(56, 69), (28, 35), (14, 18), (8, 10), (4, 6)],
                16: [(56, 69), (28, 35), (14, 18), (8, 10), (8, 10)],
                8: [(56, 69), (28, 35), (14, 18), (14, 18), (14, 18)]}[output_stride]
    assert [tuple(o.shape[2:]) for o in outs] == expected
    assert [o.shape[1] for o in outs] == [32, 64, 128, 192, 256]


# ---------------------------------------------------------------------------- deploy
@pytest.mark.parametrize('output_stride', [32, 16, 8])
def test_switch_to_deploy_is_equivalent(output_stride):
    model = _randomise_bn(MobileViTv2('0.75', out_indices=(0, 1, 2, 3, 4),
                                      output_stride=output_stride))
    model.eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        model.switch_to_deploy()  # idempotent
        after = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())  # not foldable, kept
    _assert_close(after, before, tol=1e-5)


def test_fused_checkpoint_needs_a_deploy_model(ckpt_050, tmp_path):
    unfused = _pretrained(ckpt_050, arch='0.5', output_stride=16)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = unfused(x)
        unfused.switch_to_deploy()
        fused = _save(unfused.state_dict(), tmp_path / 'fused.pth')
        _assert_close(_pretrained(fused, arch='0.5', output_stride=16, deploy=True)(x), ref,
                      tol=1e-5)
        _assert_close(_pretrained(ckpt_050, arch='0.5', output_stride=16, deploy=True)(x), ref,
                      tol=1e-5)
    with pytest.raises(CheckpointMismatchError, match='deploy=True'):
        _pretrained(fused, arch='0.5')


# ---------------------------------------------------------------------------- contract
def test_unknown_arch_lists_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown MobileViTv2 arch '3\.0'; expected one of "
                                        r"'0\.5', '0\.75', '1\.0', '1\.25', '1\.5', '1\.75', "
                                        r"'2\.0'"):
        MobileViTv2('3.0')
    assert MobileViTv2(0.75).arch_settings == MobileViTv2('0.75').arch_settings
    assert MobileViTv2(2).out_channels == [256, 512, 768, 1024]
    with pytest.raises(UserError, match='output_stride.*4'):
        MobileViTv2('0.5', output_stride=4)


def test_registry_drop_path_and_frozen_stages():
    model = MODELS.build(dict(type='hybridvit.MobileViTv2', arch='0.5', drop_path_rate=0.1,
                              frozen_stages=2))
    rates = [getattr(layer.drop_path, 'drop_prob', 0.0) for stage in model.stages[2:]
             for layer in stage[1].transformer]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.1, 9))
    model.train()
    assert not model.stages[1].training and model.stages[2].training
    assert not any(p.requires_grad for p in model.stages[1].parameters())
