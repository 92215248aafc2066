"""FastViT backbone: equality with timm, checkpoint layouts, fusion, backbone contract."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from timm.models.fastvit import checkpoint_filter_fn
from torch import nn

from hybridvit.models.backbones import FastViT
from hybridvit.models.utils import CheckpointMismatchError, reparameterize_model
from hybridvit.models.utils.fastvit_converters import (
    convert_fastvit_state_dict, detect_fastvit_format, official_to_timm, timm_to_official)
from hybridvit.registry import MODELS

ARCHS = ['t8', 't12', 's12', 'sa12', 'sa24', 'sa36', 'ma36']
REPO = Path(__file__).resolve().parents[2]


def randomise(model: nn.Module) -> nn.Module:
    """Random BN statistics / affine and O(1) layer scales so every branch matters."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(m.num_features, generator=g))
    for name, p in model.named_parameters():
        if name.endswith('gamma') or re.search(r'layer_scale(_\d)?$', name):
            p.data.copy_(0.3 + 0.5 * torch.rand(p.shape, generator=g))
    return model


def timm_state_dict(arch):
    with torch.no_grad():
        model = randomise(timm.create_model(f'fastvit_{arch}', pretrained=False))
    return model.state_dict()


def timm_features(arch, state_dict):
    feat = timm.create_model(f'fastvit_{arch}', pretrained=False, features_only=True).eval()
    flat = {re.sub(r'^(stem|stages)\.(\d+)\.', r'\1_\2.', k): v for k, v in state_dict.items()}
    missing, _ = feat.load_state_dict(flat, strict=False)
    assert not missing
    return feat


def rel_err(a, b):
    return ((a - b).norm() / b.norm()).item()


def assert_outputs_close(got, expected, tol=1e-4):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        assert rel_err(g, e) < tol


def pretrained(path, **kwargs):
    model = FastViT(init_cfg=dict(type='Pretrained', checkpoint=str(path)), **kwargs)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('arch', ARCHS)
def test_timm_and_official_layouts_match_timm_features(arch, tmp_path):
    sd = timm_state_dict(arch)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = timm_features(arch, sd)(x)

    # timm layout through init_cfg
    torch.save(sd, tmp_path / 'timm.pth')
    ours = pretrained(tmp_path / 'timm.pth', arch=arch, out_norm=False)
    with torch.no_grad():
        assert_outputs_close(ours(x), expected)

    # official layout: our inverse mapping, checked against timm's own filter
    official = timm_to_official(sd)
    assert detect_fastvit_format(official) == 'official'
    assert not any(k.startswith(('stem.', 'stages.')) for k in official)
    back = checkpoint_filter_fn(dict(official), None)  # model only used for CLIP heads
    assert list(back) == list(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    assert list(official_to_timm(official)) == list(sd)
    torch.save({'state_dict': official}, tmp_path / 'official.pth.tar')
    ours_official = pretrained(tmp_path / 'official.pth.tar', arch=arch, out_norm=False)
    with torch.no_grad():
        assert_outputs_close(ours_official(x), expected)

    # fused == unfused, and the fused state dict loads into a deploy model
    with torch.no_grad():
        unfused = ours(x)
        fused_model = reparameterize_model(ours)
        assert fused_model.deploy and not ours.deploy
        assert_outputs_close(fused_model(x), unfused)
        deploy = FastViT(arch, out_norm=False, deploy=True).eval()
        deploy.load_state_dict(fused_model.state_dict())
        assert_outputs_close(deploy(x), unfused, tol=1e-5)


@pytest.mark.parametrize('arch', ['t8', 'sa12'])
def test_output_stride_16_fusion_and_dilation(arch):
    model = randomise(FastViT(arch, output_stride=16)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        outs = model(x)
        assert [o.shape[-1] for o in outs] == [16, 8, 4, 4]
        assert model.out_strides == [4, 8, 16, 16]
        fused = reparameterize_model(model)
        assert_outputs_close(fused(x), outs)
    lk = fused.stages[3].downsample.proj[0].reparam_conv
    assert lk.stride == (1, 1) and lk.dilation == (2, 2)
    dilations = {m.dilation for m in fused.stages[3].modules()
                 if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1}
    assert dilations == {(2, 2)}


def test_fused_official_checkpoint_needs_deploy(tmp_path):
    sd = timm_state_dict('sa12')
    x = torch.randn(1, 3, 64, 64)
    ref = pretrained(_save(tmp_path / 'a.pth', sd), arch='sa12', out_norm=False)
    # a fused checkpoint in the official layout (lkb_reparam, network.6.reparam_conv)
    fused = timm_to_official(reparameterize_model(ref).state_dict())
    assert any('lkb_reparam' in k for k in fused) and 'network.6.reparam_conv.weight' in fused
    path = _save(tmp_path / 'fused.pth', fused)
    with pytest.raises(CheckpointMismatchError, match='deploy=True'):
        pretrained(path, arch='sa12', out_norm=False)
    deploy = pretrained(path, arch='sa12', out_norm=False, deploy=True)
    with torch.no_grad():
        assert_outputs_close(deploy(x), ref(x))


def test_timm_fused_checkpoint_with_ffn_bn_loads_into_deploy(tmp_path):
    sd = timm_state_dict('t8')
    timm_model = timm.create_model('fastvit_t8')
    timm_model.load_state_dict(sd)
    fused_sd = timm.utils.reparameterize_model(timm_model).state_dict()
    assert any('.mlp.conv.bn.' in k for k in fused_sd)  # timm keeps this BN
    deploy = pretrained(_save(tmp_path / 'f.pth', fused_sd), arch='t8', out_norm=False,
                        deploy=True)
    ref = pretrained(_save(tmp_path / 'u.pth', sd), arch='t8', out_norm=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_outputs_close(deploy(x), ref(x))


def test_unfused_checkpoint_into_deploy_model(tmp_path):
    sd = timm_state_dict('t8')
    path = _save(tmp_path / 'u.pth', sd)
    ref = pretrained(path, arch='t8')
    deploy = pretrained(path, arch='t8', deploy=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert_outputs_close(deploy(x), ref(x))


def test_safetensors_and_prefix(tmp_path):
    import safetensors.torch as safetensors
    sd = timm_state_dict('t8')
    path = tmp_path / 'w.safetensors'
    safetensors.save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    from_st = pretrained(path, arch='t8', out_norm=False)
    torch.save({'state_dict': {'backbone.' + k: v for k, v in sd.items()}}, tmp_path / 'd.pth')
    model = FastViT('t8', out_norm=False, init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'd.pth'), prefix='backbone.'))
    model.init_weights()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert_outputs_close(model.eval()(x), from_st(x), tol=1e-7)


def test_wrong_arch_checkpoint_lists_shapes(tmp_path):
    path = _save(tmp_path / 't8.pth', timm.create_model('fastvit_t8').state_dict())
    with pytest.raises(CheckpointMismatchError, match=r'shape mismatch.*\(48,'):
        pretrained(path, arch='s12')


def test_unknown_layout_rejected():
    with pytest.raises(CheckpointMismatchError, match='unrecognised'):
        convert_fastvit_state_dict({'foo.weight': torch.zeros(1)})


@pytest.mark.parametrize('size', [(511, 511), (112, 137)])
@pytest.mark.parametrize('output_stride', [32, 16])
def test_shapes_for_odd_sizes(size, output_stride):
    model = FastViT('t8', output_stride=output_stride).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    h, w = size
    expected = []
    for stride in model.out_strides:
        expected.append((math.ceil(h / stride), math.ceil(w / stride)))
    assert [tuple(o.shape[-2:]) for o in outs] == expected
    assert [o.shape[1] for o in outs] == model.out_channels == [48, 96, 192, 384]


def test_out_indices_and_arch_validation():
    model = FastViT('t8', out_indices=(-1, 1))
    assert model.out_indices == (1, 3) and model.out_channels == [96, 384]
    assert hasattr(model, 'norm3') and not hasattr(model, 'norm0')
    outs = model.eval()(torch.randn(1, 3, 32, 32))
    assert [o.shape[1] for o in outs] == [96, 384]
    with pytest.raises(ValueError, match='out_indices'):
        FastViT('t8', out_indices=(4,))
    with pytest.raises(ValueError, match='out_indices'):
        FastViT('t8', out_indices=(-5,))
    with pytest.raises(ValueError, match='duplicates'):
        FastViT('t8', out_indices=(3, -1))
    with pytest.raises(ValueError, match="'xl99'"):
        FastViT('xl99')
    with pytest.raises(ValueError, match='output_stride'):
        FastViT('t8', output_stride=8)
    with pytest.raises(ValueError, match='missing keys'):
        FastViT(dict(layers=(1, 1, 1, 1)))
    custom = FastViT(dict(layers=(1, 1, 1, 1), embed_dims=(32, 32, 64, 64),
                          mlp_ratios=(2,) * 4, token_mixers=('repmixer',) * 3 + ('attention',),
                          pos_embs=(None, None, None, 'repcpe'), layer_scale_init_value=1e-5))
    assert custom.out_channels == [32, 32, 64, 64]
    assert isinstance(custom.stages[1].downsample, nn.Module)  # 32 -> 32 still downsamples
    assert custom.eval()(torch.randn(1, 3, 32, 32))[1].shape[-1] == 4


def test_arch_table_matches_timm_param_counts():
    # REFERENCE §2: unfused params with head (timm); our backbone has no head/final conv
    for arch in ['t8', 'sa12']:
        ours = sum(p.numel() for p in FastViT(arch, out_norm=False).parameters())
        t = timm.create_model(f'fastvit_{arch}')
        head = sum(p.numel() for n, p in t.named_parameters()
                   if n.startswith(('head', 'final_conv')))
        assert ours == sum(p.numel() for p in t.parameters()) - head


def test_frozen_stages_and_norm_eval():
    model = FastViT('t8', frozen_stages=2, norm_eval=False)
    model.train()
    frozen = [model.stem, model.stages[0], model.stages[1], model.norm0, model.norm1]
    for m in frozen:
        assert not m.training and all(not p.requires_grad for p in m.parameters())
        assert all(not sub.training for sub in m.modules())
    assert model.stages[2].training and all(p.requires_grad for p in model.stages[2].parameters())
    sum(o.sum() for o in model(torch.randn(2, 3, 32, 32))).backward()
    assert all(p.grad is None for m in frozen for p in m.parameters())
    assert all(p.grad is not None for p in model.stages[3].parameters())

    model = FastViT('t8', norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert model.stages[0].blocks[0].mlp.fc1.training
    with pytest.raises(ValueError, match='frozen_stages'):
        FastViT('t8', frozen_stages=5)


def test_with_cp_and_drop_path():
    model = FastViT('t8', drop_path_rate=0.1)
    rates = [b.drop_path.drop_prob for s in model.stages for b in s.blocks
             if hasattr(b.drop_path, 'drop_prob')]
    assert rates[-1] == pytest.approx(0.1) and len(rates) == 9  # 10 blocks, first is 0
    ref = FastViT('t8').train()
    cp = FastViT('t8', with_cp=True).train()
    cp.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 32, 32)
    out_ref, out_cp = ref(x), cp(x)
    assert_outputs_close(out_cp, out_ref, tol=1e-6)
    sum(o.sum() for o in out_ref).backward()
    sum(o.sum() for o in out_cp).backward()
    g_ref = ref.stages[2].blocks[0].mlp.fc1.weight.grad
    assert rel_err(cp.stages[2].blocks[0].mlp.fc1.weight.grad, g_ref) < 1e-5


def test_pooling_token_mixer_and_switch_to_deploy():
    model = randomise(FastViT('sa12', token_mixer='pooling')).eval()
    assert not any(n.endswith('token_mixer.mixer') for n, _ in model.named_modules())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model.switch_to_deploy()
        model.switch_to_deploy()
        assert_outputs_close(model(x), ref)
    assert model.deploy


def test_registry_build_and_init_without_pretrained():
    torch.manual_seed(0)
    model = MODELS.build(dict(type='FastViT', arch='T8', out_indices=(2, 3)))
    assert isinstance(model, FastViT) and model.out_channels == [192, 384]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not model.is_init
    model.init_weights()  # no init_cfg: nothing to load, mmengine re-draws nothing
    assert model.is_init
    after = model.state_dict()
    assert list(after) == list(before)
    changed = [k for k in before if not torch.equal(after[k], before[k])]
    assert changed == []
    # the weights are the constructor's: ConvFFN 1x1 convs ~ trunc_normal(std=0.02), zero bias
    fc = [m for name, m in model.named_modules() if name.endswith(('.fc1', '.fc2'))]
    assert len(fc) == 2 * (2 + 2 + 4 + 2)  # T8: 10 blocks, one ConvFFN each
    weights = torch.cat([m.weight.flatten() for m in fc])
    assert abs(weights.std().item() - 0.02) < 0.001 and abs(weights.mean().item()) < 0.001
    assert all(torch.count_nonzero(m.bias) == 0 for m in fc)


def test_converter_cli(tmp_path):
    sd = timm_state_dict('t8')
    src = _save(tmp_path / 'official.pth.tar', {'state_dict': timm_to_official(sd)})
    dst = tmp_path / 'out.pth'
    tool = REPO / 'tools' / 'model_converters' / 'fastvit_to_hybridvit.py'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    run = subprocess.run([sys.executable, str(tool), str(src), str(dst), '--arch', 't8'],
                         capture_output=True, text=True, cwd=REPO, env=env)
    assert run.returncode == 0, run.stderr
    converted = torch.load(dst, map_location='cpu')['state_dict']
    assert set(converted) == {k for k in sd if not k.startswith(('head', 'final_conv'))}
    fused_dst = tmp_path / 'fused.safetensors'
    run = subprocess.run([sys.executable, str(tool), str(src), str(fused_dst), '--arch', 't8',
                          '--fuse'], capture_output=True, text=True, cwd=REPO, env=env)
    assert run.returncode == 0, run.stderr
    deploy = pretrained(fused_dst, arch='t8', out_norm=False, deploy=True)
    ref = pretrained(dst, arch='t8', out_norm=False)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert_outputs_close(deploy(x), ref(x))
    bad = subprocess.run([sys.executable, str(tool), str(src), str(dst), '--arch', 's12'],
                         capture_output=True, text=True, cwd=REPO, env=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    missing = subprocess.run([sys.executable, str(tool), str(tmp_path / 'nope.pth'), str(dst)],
                             capture_output=True, text=True, cwd=REPO, env=env)
    assert missing.returncode == 2 and 'nope.pth' in missing.stderr


def _save(path, obj):
    torch.save(obj, path)
    return path
