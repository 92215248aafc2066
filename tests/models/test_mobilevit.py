"""MobileViT v1 backbone: timm / cvnets weight equivalence, deploy fusion, strides, contract."""
import importlib.util
import re
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from hybridvit.models.backbones.mobilevit import MobileViT
from hybridvit.models.utils.checkpoint import CheckpointMismatchError
from hybridvit.models.utils.reparameterize import reparameterize_model
from hybridvit.models.layers.conv_bn import fuse_bn_state_dict
from hybridvit.models.utils.mobilevit_converters import (
    convert_mobilevit_state_dict, detect_mobilevit_format)
from hybridvit.registry import MODELS

ARCHS = ('xxs', 'xs', 's')
DEPTHS = (2, 4, 3)
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- helpers
def _randomise_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so BN handling is really tested."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)


def _timm_model(arch: str) -> nn.Module:
    model = timm.create_model(f'mobilevit_{arch}', pretrained=False)
    _randomise_bn(model)
    return model.eval()


def _timm_features(full: nn.Module, arch: str, output_stride: int = 32) -> nn.Module:
    """timm ``features_only`` model (flattened ``stages_i`` names) with ``full``'s weights."""
    feats = timm.create_model(f'mobilevit_{arch}', pretrained=False, features_only=True,
                              output_stride=output_stride)
    state = {re.sub(r'^stages\.(\d+)', r'stages_\1', k): v
             for k, v in full.state_dict().items() if not k.startswith('head.')}
    feats.load_state_dict(state)
    return feats.eval()


def _timm_to_cvnets(state_dict, depths=DEPTHS, prefix=''):
    """Rename timm keys to ml-cvnets names (independent inverse rules, written from cvnets)."""
    out = {}
    for key, value in state_dict.items():
        k = key
        k = re.sub(r'\.bn\.', '.block.norm.', k)
        k = re.sub(r'\.conv\.', '.block.conv.', k)
        k = re.sub(r'^stem\.', 'conv_1.', k)
        k = re.sub(r'^final_conv\.', 'conv_1x1_exp.', k)
        k = re.sub(r'^head\.fc\.', 'classifier.fc.', k)
        m = re.match(r'^stages\.(\d+)\.(\d+)\.(.*)$', k)
        if m:
            stage, block, rest = int(m.group(1)), m.group(2), m.group(3)
            rest = (rest.replace('conv1_1x1.', 'exp_1x1.').replace('conv2_kxk.', 'conv_3x3.')
                    .replace('conv3_1x1.', 'red_1x1.'))
            if rest.startswith(('exp_1x1', 'conv_3x3', 'red_1x1')):
                rest = 'block.' + rest
            rest = re.sub(r'^conv_kxk\.', 'local_rep.conv_3x3.', rest)
            rest = re.sub(r'^conv_1x1\.weight$', 'local_rep.conv_1x1.block.conv.weight', rest)
            t = re.match(r'^transformer\.(\d+)\.(.*)$', rest)
            if t:
                sub = {'norm1.': 'pre_norm_mha.0.', 'attn.qkv.': 'pre_norm_mha.1.qkv_proj.',
                       'attn.proj.': 'pre_norm_mha.1.out_proj.', 'norm2.': 'pre_norm_ffn.0.',
                       'mlp.fc1.': 'pre_norm_ffn.1.', 'mlp.fc2.': 'pre_norm_ffn.4.'}
                name = t.group(2)
                for src, dst in sub.items():
                    if name.startswith(src):
                        name = dst + name[len(src):]
                rest = f'global_rep.{t.group(1)}.{name}'
            rest = re.sub(r'^norm\.', f'global_rep.{depths[stage - 2]}.', rest)
            rest = re.sub(r'^conv_fusion\.', 'fusion.', rest)
            k = f'layer_{stage + 1}.{block}.{rest}'
        if not k.startswith('classifier'):
            k = prefix + k
        out[k] = value
    return out


def _save(state_dict, path: Path) -> str:
    if path.suffix == '.safetensors':
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    else:
        torch.save({'state_dict': state_dict}, str(path))
    return str(path)


def _pretrained(path, **kwargs) -> MobileViT:
    model = MobileViT(init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs)
    model.init_weights()
    return model.eval()


def _assert_close(ours, ref, tol=1e-4):
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        err = (a - b).abs().max() / b.abs().max().clamp_min(1e-12)
        assert err < tol, f'relative error {err:.2e}'


def _expected_hw(size, stride):
    """Spatial size after log2(stride) stride-2 3x3 convs with padding 1 (ceil division)."""
    while stride > 1:
        size, stride = (size + 1) // 2, stride // 2
    return size


# ---------------------------------------------------------------------------- timm weights
@pytest.fixture(scope='module')
def timm_xxs():
    """One timm xxs model (random weights, randomised BN) shared by the tests of this file."""
    torch.manual_seed(0)
    return _timm_model('xxs')


@pytest.fixture(scope='module')
def xxs_ckpt(timm_xxs, tmp_path_factory):
    return _save(timm_xxs.state_dict(), tmp_path_factory.mktemp('ckpt') / 'mobilevit_xxs.pth')


@pytest.mark.parametrize('arch', ARCHS)
def test_checkpoints_match_timm_features(arch, tmp_path):
    """timm .pth, timm .safetensors and cvnets-layout files all give timm's features."""
    full = _timm_model(arch)
    ref = _timm_features(full, arch)
    # timm's last feature is its `final_conv` (1x1 expansion) output at stride 32
    assert ref.feature_info.module_name()[-1] == 'final_conv'
    cv_sd = _timm_to_cvnets(full.state_dict())
    assert detect_mobilevit_format(cv_sd) == 'cvnets'
    files = [_save(full.state_dict(), tmp_path / f'mobilevit_{arch}.pth'),
             _save(full.state_dict(), tmp_path / f'mobilevit_{arch}.safetensors'),
             _save(cv_sd, tmp_path / f'cvnets_{arch}.pt')]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = ref(x)
        for ckpt in files:
            ours = _pretrained(ckpt, arch=arch, out_indices=(0, 1, 2, 3, 4))
            assert ours.out_channels == ref.feature_info.channels()
            assert ours.out_strides == ref.feature_info.reduction() == [2, 4, 8, 16, 32]
            _assert_close(ours(x), expected)
        default = _pretrained(files[0], arch=arch)  # out_indices (1, 2, 3, 4)
        _assert_close(default(x), expected[1:])


def test_cvnets_deeplab_prefix_and_heads_are_dropped(timm_xxs):
    full = timm_xxs
    cv_sd = _timm_to_cvnets(full.state_dict(), prefix='encoder.')
    cv_sd['seg_head.aspp.weight'] = torch.zeros(1)
    converted, dropped = convert_mobilevit_state_dict(cv_sd)
    assert sorted(dropped) == ['classifier.fc.bias', 'classifier.fc.weight', 'seg_head.aspp.weight']
    expected, _ = convert_mobilevit_state_dict(full.state_dict())
    assert list(converted) == list(expected)
    assert all(torch.equal(converted[k], expected[k]) for k in expected)


def test_detect_format_and_unknown_layout():
    ours = MobileViT('xxs').state_dict()
    assert detect_mobilevit_format(ours) == 'hybridvit'
    assert detect_mobilevit_format(timm.create_model('mobilevit_xxs').state_dict()) == 'timm'
    with pytest.raises(CheckpointMismatchError, match='unrecognised MobileViT'):
        detect_mobilevit_format({'features.0.weight': torch.zeros(1)})


def test_mismatched_checkpoint_is_reported(tmp_path):
    ckpt = _save(_timm_model('xs').state_dict(), tmp_path / 'xs.pth')
    with pytest.raises(CheckpointMismatchError, match='shape mismatch'):
        _pretrained(ckpt, arch='xxs')


def test_final_expansion_off_drops_final_conv(timm_xxs, xxs_ckpt):
    full = timm_xxs
    ours = _pretrained(xxs_ckpt, arch='xxs', final_expansion=False, out_indices=(-1,))
    assert ours.final_conv is None and ours.out_channels == [80]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        (out,) = ours(x)
        ref = full.stages(full.stem(x))
    _assert_close([out], [ref])


# ---------------------------------------------------------------------------- output stride
@pytest.mark.parametrize('output_stride', [16, 8])
def test_output_stride_matches_timm(output_stride, timm_xxs, xxs_ckpt):
    full = timm_xxs
    ours = _pretrained(xxs_ckpt, arch='xxs', out_indices=(0, 1, 2, 3, 4),
                       output_stride=output_stride)
    ref = _timm_features(full, 'xxs', output_stride)
    assert ours.out_strides == ref.feature_info.reduction()
    x = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        _assert_close(ours(x), ref(x))


@pytest.mark.parametrize('output_stride', [32, 16, 8])
@pytest.mark.parametrize('size', [(511, 511), (112, 137)])
def test_shapes_for_odd_sizes(size, output_stride):
    model = MobileViT('xxs', out_indices=(0, 1, 2, 3, 4), output_stride=output_stride).eval()
    strides = [min(s, output_stride) for s in (2, 4, 8, 16, 32)]
    assert model.out_strides == strides
    with torch.no_grad():
        outs = model(torch.rand(1, 3, *size))
    for out, ch, stride in zip(outs, model.out_channels, strides):
        assert out.shape == (1, ch, _expected_hw(size[0], stride), _expected_hw(size[1], stride))
    assert [o.shape[1] for o in outs] == [16, 24, 48, 64, 320]


def test_odd_size_matches_timm(timm_xxs, xxs_ckpt):
    full = timm_xxs
    ours = _pretrained(xxs_ckpt, arch='xxs', out_indices=(0, 1, 2, 3, 4))
    x = torch.rand(1, 3, 112, 137)  # L4 is 7x9, L5 4x5: patch resizing is exercised
    with torch.no_grad():
        _assert_close(ours(x), _timm_features(full, 'xxs')(x))


# ---------------------------------------------------------------------------- deploy
@pytest.mark.parametrize('output_stride', [32, 16, 8])
def test_switch_to_deploy_is_equivalent(output_stride):
    model = MobileViT('xxs', out_indices=(0, 1, 2, 3, 4), output_stride=output_stride)
    model.init_weights()
    _randomise_bn(model)
    model.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        model.switch_to_deploy()  # idempotent
        after = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    _assert_close(after, before, tol=1e-5)


def test_fused_state_dict_loads_into_deploy_model(xxs_ckpt, tmp_path):
    timm_ckpt = xxs_ckpt
    unfused = _pretrained(timm_ckpt, arch='xxs', output_stride=16)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = unfused(x)
        unfused.switch_to_deploy()
        fused_ckpt = _save(unfused.state_dict(), tmp_path / 'fused.pth')
        deploy = _pretrained(fused_ckpt, arch='xxs', output_stride=16, deploy=True)
        _assert_close(deploy(x), ref, tol=1e-5)
        # unfused weights are fused while loading into a deploy model
        deploy2 = _pretrained(timm_ckpt, arch='xxs', output_stride=16, deploy=True)
        _assert_close(deploy2(x), ref, tol=1e-5)
    # fused weights cannot silently load into a training model
    with pytest.raises(CheckpointMismatchError, match='deploy=True'):
        _pretrained(fused_ckpt, arch='xxs')


def test_reparameterize_model_fuses_a_copy():
    model = MobileViT('xxs', out_indices=(4,))
    _randomise_bn(model)
    model.eval()
    fused = reparameterize_model(model)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules()) and fused.deploy
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        _assert_close(fused(x), model(x), tol=1e-5)


def test_fuse_bn_state_dict_matches_module_fusion():
    model = MobileViT('xxs')
    _randomise_bn(model)
    model.eval()
    fused = fuse_bn_state_dict(model.state_dict())
    model.switch_to_deploy()
    ref = model.state_dict()
    assert list(sorted(fused)) == list(sorted(ref))
    for k in ref:
        torch.testing.assert_close(fused[k], ref[k], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- contract
@pytest.mark.parametrize('bad', [(5,), (-6,), (0, 0), (), ('1',)])
def test_invalid_out_indices(bad):
    with pytest.raises(ValueError, match='out_indices'):
        MobileViT('xxs', out_indices=bad)


def test_invalid_arguments_name_the_value():
    with pytest.raises(ValueError, match="'xl'"):
        MobileViT('xl')
    with pytest.raises(ValueError, match='output_stride.*4'):
        MobileViT('xxs', output_stride=4)
    with pytest.raises(ValueError, match='frozen_stages.*6'):
        MobileViT('xxs', frozen_stages=6)
    with pytest.raises(ValueError, match='transformer_dims'):
        MobileViT(dict(channels=(16, 24, 48, 64, 80), depths=(2, 4, 3), expand_ratio=2,
                       final_channels=320))


def test_negative_indices_and_dict_arch():
    arch = dict(MobileViT.arch_zoo['xxs'], num_heads=2)
    model = MobileViT(arch, out_indices=(-1, -3))
    assert model.out_indices == (2, 4) and model.out_channels == [48, 320]
    assert MODELS.build(dict(type='hybridvit.MobileViT', arch='xs')).out_channels == \
        [48, 64, 80, 384]


def test_frozen_stages_get_no_grads_and_stay_eval():
    model = MobileViT('xxs', frozen_stages=2, out_indices=(0, 1, 2))
    model.train()
    frozen = [model.stem, model.stages[0], model.stages[1]]
    assert all(not m.training for f in frozen for m in f.modules())
    assert model.stages[2].training
    model(torch.rand(1, 3, 64, 64))[-1].sum().backward()
    for f in frozen:
        assert all(p.grad is None and not p.requires_grad for p in f.parameters())
    assert all(p.grad is not None for p in model.stages[2].parameters())
    full = MobileViT('xxs', frozen_stages=5).train()
    assert not any(p.requires_grad for p in full.parameters())


def test_norm_eval_keeps_bn_statistics():
    model = MobileViT('xxs', norm_eval=True, out_indices=(2,)).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not bn.training for bn in bns)
    before = [bn.running_mean.clone() for bn in bns]
    model(torch.rand(2, 3, 64, 64))
    assert all(torch.equal(b, bn.running_mean) for b, bn in zip(before, bns))
    assert model.stages[2][1].transformer.training


def test_with_cp_same_output_and_grads():
    torch.manual_seed(0)
    plain = MobileViT('xxs', out_indices=(3,))
    ckpt = MobileViT('xxs', out_indices=(3,), with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    plain.eval(), ckpt.eval()  # same BN behaviour, autograd still on
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    outs = []
    for model in (plain, ckpt):
        model.zero_grad()
        out = model(x)[0]
        out.sum().backward()
        outs.append((out.detach(), model.stages[3][1].conv_fusion.conv.weight.grad.clone()))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])


# ---------------------------------------------------------------------------- CLI
def _load_tool():
    path = REPO / 'tools' / 'model_converters' / 'mobilevit_to_hybridvit.py'
    spec = importlib.util.spec_from_file_location('mobilevit_to_hybridvit', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_converts_and_reports_errors(timm_xxs, xxs_ckpt, tmp_path, capsys):
    tool = _load_tool()
    full = timm_xxs
    src = _save(_timm_to_cvnets(full.state_dict()), tmp_path / 'cvnets.pt')
    dst = tmp_path / 'out.safetensors'
    assert tool.main([src, str(dst), '--arch', 'xxs']) == 0
    assert 'cvnets layout' in capsys.readouterr().out
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        _assert_close(_pretrained(dst, arch='xxs')(x),
                      _pretrained(xxs_ckpt, arch='xxs')(x),
                      tol=1e-7)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []

    assert tool.main([str(tmp_path / 'missing.pth'), str(tmp_path / 'x.pth')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1 and 'missing.pth' in err
    bad = _save({'foo.weight': torch.zeros(1)}, tmp_path / 'bad.pth')
    assert tool.main([bad, str(tmp_path / 'y.pth')]) == 2
    assert 'unrecognised MobileViT' in capsys.readouterr().err
    assert not (tmp_path / 'y.pth').exists()
