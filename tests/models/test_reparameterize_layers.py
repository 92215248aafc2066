"""Fused == unfused for every reparameterisable layer (eval mode, random BN statistics)."""
import copy

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hybridvit.models.layers import (ConvBN, ConvFFN, ConvNormAct, MobileOneBlock, PoolingMixer,
                                     RepCPE, ReparamLargeKernelConv, RepMixer, RepMixerBlock)
from hybridvit.models.utils import reparameterize_model
from hybridvit.utils.errors import UserError

C = 8


def randomise_bn(module: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine parameters (and layer scales), so fusion bugs show."""
    for m in module.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.normal_(m.weight, 1.0, 0.3)
            nn.init.normal_(m.bias, 0.0, 0.3)
    for name, p in module.named_parameters():
        if name.endswith('gamma'):
            p.data.uniform_(0.2, 1.0)
    return module


def assert_fusion_exact(module: nn.Module, x: torch.Tensor) -> nn.Module:
    module = randomise_bn(module).eval()
    with torch.no_grad():
        expected = module(x)
        fused = reparameterize_model(module)
        got = fused(x)
    assert not fused.training
    assert got.shape == expected.shape
    rel = (got - expected).norm() / expected.norm()
    assert rel < 1e-5, rel
    # idempotent: a second call changes nothing
    state = copy.deepcopy(fused.state_dict())
    for m in fused.modules():
        if hasattr(m, 'reparameterize'):
            m.reparameterize()
    assert state.keys() == fused.state_dict().keys()
    for k, v in fused.state_dict().items():
        assert torch.equal(v, state[k])
    with torch.no_grad():
        assert torch.equal(fused(x), got)
    return fused


def no_bn_left(module: nn.Module) -> bool:
    return not any(isinstance(m, _BatchNorm) for m in module.modules())


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('dilation', [1, 2])
@pytest.mark.parametrize('groups', [1, C])
@pytest.mark.parametrize('act', [None, 'SiLU'])
def test_conv_norm_act(stride, dilation, groups, act):
    m = ConvNormAct(C, 2 * C, 3, stride=stride, dilation=dilation, groups=groups,
                    act_cfg=dict(type=act) if act else None)
    fused = assert_fusion_exact(m, torch.randn(2, C, 13, 11))
    assert fused.bn is None and fused.conv.bias is not None
    assert fused.conv.dilation == (dilation, dilation) and fused.conv.stride == (stride, stride)
    assert isinstance(fused.act, nn.SiLU if act else nn.Identity)


def test_norm_cfg_syncbn_builds_and_fuses():
    """norm_cfg goes through mmcv's build_norm_layer: SyncBN is built (and folds like BN)."""
    m = MobileOneBlock(C, C, 3, norm_cfg=dict(type='SyncBN'))
    assert isinstance(m.identity, nn.SyncBatchNorm)
    assert isinstance(m.conv_kxk[0].bn, nn.SyncBatchNorm)
    # SyncBN runs as BN in eval mode on CPU: the fused conv reproduces it
    assert_fusion_exact(m, torch.randn(2, C, 9, 9))
    with pytest.raises(UserError, match='ConvNormAct folds a BatchNorm.*GroupNorm'):
        ConvNormAct(C, C, 3, norm_cfg=dict(type='GN', num_groups=2))


def test_conv_bn_bias_folded_and_deploy_layout():
    m = ConvBN(C, C, 5, bias=True)
    assert m.act.__class__ is nn.Identity
    fused = assert_fusion_exact(m, torch.randn(1, C, 9, 9))
    deploy = ConvBN(C, C, 5, deploy=True)
    assert deploy.state_dict().keys() == fused.state_dict().keys()
    with pytest.raises(UserError, match=rf'^ConvNormAct: in_channels \({C}\) and out_channels '
                                        r'\(6\) must be divisible by groups \(4\)$'):
        ConvNormAct(C, 6, 3, groups=4)


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('dilation', [1, 2])
@pytest.mark.parametrize('groups', [1, C])
@pytest.mark.parametrize('kernel_size', [1, 3])
@pytest.mark.parametrize('use_identity', [True, False])
def test_mobileone_block(stride, dilation, groups, kernel_size, use_identity):
    m = MobileOneBlock(C, C, kernel_size, stride=stride, dilation=dilation, groups=groups,
                       num_conv_branches=2, use_identity=use_identity)
    assert (m.identity is not None) == (use_identity and stride == 1)
    fused = assert_fusion_exact(m, torch.randn(2, C, 12, 15))
    assert no_bn_left(fused) and fused.deploy
    deploy = MobileOneBlock(C, C, kernel_size, stride=stride, dilation=dilation, groups=groups,
                            deploy=True)
    assert deploy.state_dict().keys() == fused.state_dict().keys()
    assert deploy.reparam_conv.dilation == fused.reparam_conv.dilation


def test_mobileone_channel_change_and_bn_only():
    assert_fusion_exact(MobileOneBlock(C, 2 * C, 3, stride=2), torch.randn(1, C, 10, 10))
    bn_only = MobileOneBlock(C, C, 3, groups=C, num_conv_branches=0, use_scale_branch=False,
                             act_cfg=None)
    assert bn_only.conv_kxk is None and bn_only.conv_scale is None
    assert_fusion_exact(bn_only, torch.randn(1, C, 7, 7))
    with pytest.raises(UserError, match='MobileOneBlock needs at least one branch'):
        MobileOneBlock(C, C, 3, stride=2, num_conv_branches=0, use_scale_branch=False)


@pytest.mark.parametrize('stride', [1, 2])
@pytest.mark.parametrize('dilation', [1, 2])
@pytest.mark.parametrize('groups', [1, C])
@pytest.mark.parametrize('small_kernel', [3, None])
def test_large_kernel(stride, dilation, groups, small_kernel):
    m = ReparamLargeKernelConv(C, 2 * C, 7, stride=stride, groups=groups,
                               small_kernel=small_kernel, dilation=dilation)
    fused = assert_fusion_exact(m, torch.randn(2, C, 19, 17))
    assert fused.reparam_conv.dilation == (dilation, dilation)
    assert isinstance(fused.act, nn.Identity)  # no activation after the large-kernel conv
    deploy = ReparamLargeKernelConv(C, 2 * C, 7, stride=stride, groups=groups,
                                    dilation=dilation, deploy=True)
    assert deploy.state_dict().keys() == fused.state_dict().keys()


@pytest.mark.parametrize('dilation', [1, 2])
@pytest.mark.parametrize('layer_scale', [1e-5, None])
def test_repmixer(dilation, layer_scale):
    m = RepMixer(C, 3, dilation=dilation, layer_scale_init_value=layer_scale)
    fused = assert_fusion_exact(m, torch.randn(2, C, 10, 9))
    assert fused.mixer is None and fused.norm is None and fused.layer_scale is None
    assert fused.reparam_conv.groups == C and fused.reparam_conv.dilation == (dilation,) * 2
    assert RepMixer(C, 3, dilation=dilation, deploy=True).state_dict().keys() == \
        fused.state_dict().keys()


@pytest.mark.parametrize('dilation', [1, 2])
def test_repcpe(dilation):
    m = RepCPE(C, 7, dilation=dilation)
    nn.init.normal_(m.pos_enc.weight, 0, 0.2)
    fused = assert_fusion_exact(m, torch.randn(2, C, 11, 13))
    assert fused.pos_enc is None
    assert RepCPE(C, 7, dilation=dilation, deploy=True).state_dict().keys() == \
        fused.state_dict().keys()


@pytest.mark.parametrize('token_mixer', ['repmixer', 'pooling'])
@pytest.mark.parametrize('dilation', [1, 2])
def test_repmixer_block_and_ffn(token_mixer, dilation):
    block = RepMixerBlock(C, 3, 3.0, dilation=dilation, token_mixer=token_mixer)
    fused = assert_fusion_exact(block, torch.randn(2, C, 10, 10))
    assert no_bn_left(fused)  # the ConvFFN BN is folded too
    ffn = assert_fusion_exact(ConvFFN(C, 3 * C, dilation=dilation), torch.randn(1, C, 9, 9))
    assert ffn.conv.bn is None


def test_pooling_mixer_is_pool_minus_identity():
    m = PoolingMixer(C, 3, layer_scale_init_value=None)
    x = torch.randn(1, C, 6, 6)
    pool = nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    assert torch.allclose(m(x), pool, atol=1e-6)  # x + (pool(x) - x)


def test_reparameterize_model_keeps_mode_and_copies():
    model = nn.Sequential(MobileOneBlock(C, C, 3), RepMixer(C)).train()
    fused = reparameterize_model(model)
    assert fused is not model and model[0].reparam_conv is None  # original untouched
    assert fused.training and all(m.training for m in fused.modules())
    model.eval()
    same = reparameterize_model(model, inplace=True)
    assert same is model and model[0].reparam_conv is not None
    assert not any(m.training for m in model.modules())
