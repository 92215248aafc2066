"""The backbone contract of :class:`hybridvit.models.backbones.base.HybridBackbone`, checked the
same way for every family (timm-style parametrised contract tests).

A new family adds one line to ``FAMILIES``.
"""
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hybridvit.models.backbones.base import HybridBackbone
from hybridvit.models.utils.checkpoint import CheckpointMismatchError
from hybridvit.registry import MODELS
from hybridvit.utils.errors import UserError

# (registered type, small arch, stage count, input size)
FAMILIES = [
    ('hybridvit.FastViT', 't8', 4, (64, 80)),
    ('hybridvit.MobileViT', 'xxs', 5, (64, 80)),
    ('hybridvit.MobileViTv2', '0.5', 5, (64, 80)),
    ('hybridvit.MobileViTv3', 'xxs', 5, (64, 80)),
    ('hybridvit.MobileViTv3', '0.5', 5, (64, 80)),
]


def build(type_, **kwargs):
    return MODELS.build(dict(type=type_, **kwargs))


def randomise_bn(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=gen) * 0.2 + 1)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
    return model


@pytest.mark.parametrize('type_,arch,stages,size', FAMILIES)
def test_is_a_hybrid_backbone_with_validated_arguments(type_, arch, stages, size):
    model = build(type_, arch=arch, out_indices=(-1, 1))
    assert isinstance(model, HybridBackbone) and model.num_stages == stages
    assert model.out_indices == (1, stages - 1)
    with torch.no_grad():
        outs = model.eval()(torch.randn(1, 3, *size))
    assert [o.shape[1] for o in outs] == list(model.out_channels)
    cls_name = type_.split('.')[-1]
    with pytest.raises(UserError, match=rf"unknown {cls_name} arch 'nope'; expected one of .*'{arch}'"):
        build(type_, arch='nope')
    with pytest.raises(UserError, match='out_indices'):
        build(type_, arch=arch, out_indices=(stages,))
    with pytest.raises(UserError, match='duplicates'):
        build(type_, arch=arch, out_indices=(0, -stages))
    with pytest.raises(UserError, match='frozen_stages'):
        build(type_, arch=arch, frozen_stages=stages + 1)
    with pytest.raises(UserError, match='missing keys'):
        build(type_, arch=dict(nonsense=1))


@pytest.mark.parametrize('type_,arch,stages,size', FAMILIES)
def test_frozen_stages_survive_train_and_norm_eval(type_, arch, stages, size):
    model = build(type_, arch=arch, frozen_stages=1).train()
    frozen = model.frozen_modules()
    assert model.stem in frozen and model.stages[0] in frozen
    for module in frozen:
        assert all(not m.training for m in module.modules())
        assert all(not p.requires_grad for p in module.parameters())
    assert model.stages[1].training
    assert all(p.requires_grad for p in model.stages[1].parameters())
    model = build(type_, arch=arch, norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and not any(m.training for m in bns)


@pytest.mark.parametrize('type_,arch,stages,size', FAMILIES)
def test_norm_cfg_reaches_every_norm(type_, arch, stages, size):
    """norm_cfg goes through mmcv: a config can say SyncBN (multi-GPU), no BatchNorm2d left."""
    model = build(type_, arch=arch, norm_cfg=dict(type='SyncBN'))
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)


@pytest.mark.parametrize('type_,arch,stages,size', FAMILIES)
def test_unfused_checkpoint_loads_into_deploy_model(type_, arch, stages, size, tmp_path):
    """One rule for every family: an unfused checkpoint fills a deploy=True model through a
    training twin that is fused after loading; outputs equal the fused training model."""
    torch.manual_seed(0)
    train_model = randomise_bn(build(type_, arch=arch)).eval()
    path = str(tmp_path / 'unfused.pth')
    torch.save({'state_dict': train_model.state_dict()}, path)
    deploy = build(type_, arch=arch, deploy=True,
                   init_cfg=dict(type='Pretrained', checkpoint=path))
    deploy.init_weights()
    deploy.eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        expected = train_model(x)
        got = deploy(x)
    for e, g in zip(expected, got):
        assert (e - g).abs().max() <= 1e-4 * e.abs().max()
    # a deploy model cannot be loaded into a training model
    fused_path = str(tmp_path / 'fused.pth')
    torch.save({'state_dict': deploy.state_dict()}, fused_path)
    train_twin = build(type_, arch=arch, init_cfg=dict(type='Pretrained', checkpoint=fused_path))
    with pytest.raises(CheckpointMismatchError, match='deploy=True'):
        train_twin.init_weights()


@pytest.mark.parametrize('type_,arch,stages,size', FAMILIES)
def test_with_cp_gives_the_same_gradients(type_, arch, stages, size):
    torch.manual_seed(0)
    plain = build(type_, arch=arch).train()
    checkpointed = build(type_, arch=arch, with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, *size, requires_grad=True)
    grads = []
    for model in (plain, checkpointed):
        torch.manual_seed(1)
        sum(o.square().mean() for o in model(x)).backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
