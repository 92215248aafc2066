"""MobileViTv3 backbone (arXiv 2209.15159): parameter counts of the authors' table, the authors'
checkpoint layout (ml-cvnets names of micronDLA/MobileViTv3), the v3 block equations, fusion.

There is no timm / HF MobileViTv3. The authors' key names used below are those of their code
(``MobileViTv3-v1/cvnets/modules/mobilevit_block.py`` ``MobileViTv3Block``: ``local_rep.conv_3x3``
/ ``conv_1x1``, ``global_rep``, ``conv_proj``, ``fusion``; ``MobileViTv3-v2/...``
``MobileViTBlockv3``: ``local_rep.0`` / ``1``, ``global_rep``, ``conv_proj``; cvnets' ConvLayer
``block.conv`` / ``block.norm``, ``InvertedResidual`` ``block.exp_1x1`` / ``conv_3x3`` /
``red_1x1``, classifier ``classifier.fc`` (v1) / ``classifier.1`` (v2)).
"""
import re

import pytest
import torch
from torch import nn

from hybridvit.models.backbones import MobileViTv3
from hybridvit.models.utils.checkpoint import CheckpointMismatchError
from hybridvit.utils.errors import UserError

DEPTHS = (2, 4, 3)
# ImageNet-1k models incl. the 1000-class classifier, in millions (arXiv 2209.15159, Tables 1
# and 3: XXS 1.2, XS 2.5, S 5.8, 0.5 1.4, 0.75 3.0, 1.0 5.1)
PAPER_PARAMS_M = {'xxs': 1.2, 'xs': 2.5, 's': 5.8, '0.5': 1.4, '0.75': 3.0, '1.0': 5.1}


def _randomise(model: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model


def _to_authors(state_dict, base):
    """hybridvit names -> the authors' (cvnets) names, written from their module tree."""
    out = {}
    for key, value in state_dict.items():
        k = re.sub(r'\.bn\.', '.block.norm.', key)
        k = re.sub(r'\.conv\.', '.block.conv.', k)
        k = re.sub(r'^stem\.', 'conv_1.', k)
        k = re.sub(r'^final_conv\.', 'conv_1x1_exp.', k)
        m = re.match(r'^stages\.(\d+)\.(\d+)\.(.*)$', k)
        if m:
            stage, block, rest = int(m.group(1)), m.group(2), m.group(3)
            rest = re.sub(r'^expand_conv\.', 'block.exp_1x1.', rest)
            rest = re.sub(r'^dw_conv\.', 'block.conv_3x3.', rest)
            rest = re.sub(r'^project_conv\.', 'block.red_1x1.', rest)
            local, embed = (('local_rep.conv_3x3.', 'local_rep.conv_1x1.') if base == 'v1'
                            else ('local_rep.0.', 'local_rep.1.'))
            rest = re.sub(r'^conv_local\.', local, rest)
            rest = re.sub(r'^conv_embed\.weight$', embed + 'block.conv.weight', rest)
            rest = re.sub(r'^conv_fusion\.', 'fusion.', rest)
            t = re.match(r'^transformer\.(\d+)\.(.*)$', rest)
            if t:
                attn = 'pre_norm_mha' if base == 'v1' else 'pre_norm_attn'
                fc2 = '4' if base == 'v1' else '3'
                rules = ((r'^norm1\.', f'{attn}.0.'),
                         (r'^attn\.qkv\.', f'{attn}.1.qkv_proj.'),
                         (r'^attn\.proj\.', f'{attn}.1.out_proj.'),
                         (r'^attn\.(qkv_proj|out_proj)\.', rf'{attn}.1.\1.block.conv.'),
                         (r'^norm2\.', 'pre_norm_ffn.0.'),
                         (r'^mlp\.fc1\.', 'pre_norm_ffn.1.' + ('' if base == 'v1' else
                                                              'block.conv.')),
                         (r'^mlp\.fc2\.', f'pre_norm_ffn.{fc2}.' + ('' if base == 'v1' else
                                                                    'block.conv.')))
                name = t.group(2)
                for pattern, repl in rules:
                    name = re.sub(pattern, repl, name)
                rest = f'global_rep.{t.group(1)}.{name}'
            rest = re.sub(r'^norm\.', f'global_rep.{DEPTHS[stage - 2]}.', rest)
            k = f'layer_{stage + 1}.{block}.{rest}'
        out[k] = value
    return out


@pytest.mark.parametrize('arch', list(PAPER_PARAMS_M))
def test_parameter_counts_equal_the_authors_table(arch):
    model = MobileViTv3(arch, out_indices=(4,))
    classifier = model.out_channels[-1] * 1000 + 1000
    params = sum(p.numel() for p in model.parameters()) + classifier
    assert round(params / 1e6, 1) == PAPER_PARAMS_M[arch], params


@pytest.mark.parametrize('arch', ['xxs', '0.5'])
def test_authors_checkpoint_layout_loads(arch, tmp_path):
    base = MobileViTv3.arch_zoo[arch]['base']
    ref = _randomise(MobileViTv3(arch, out_indices=(0, 1, 2, 3, 4))).eval()
    authors = _to_authors(ref.state_dict(), base)
    last = ref.out_channels[-1]
    head = 'classifier.fc.' if base == 'v1' else 'classifier.1.'
    authors[head + 'weight'] = torch.zeros(1000, last)
    authors[head + 'bias'] = torch.zeros(1000)
    if base == 'v1':
        assert 'layer_3.1.local_rep.conv_3x3.block.conv.weight' in authors
        assert authors['layer_3.1.fusion.block.conv.weight'].shape == (64, 64 + 64, 1, 1)
    else:
        assert 'layer_3.1.global_rep.0.pre_norm_attn.1.qkv_proj.block.conv.weight' in authors
        assert authors['layer_3.1.conv_proj.block.conv.weight'].shape == (128, 2 * 64, 1, 1)
    path = tmp_path / 'checkpoint_ema_best.pt'
    torch.save(authors, path)  # cvnets saves the bare state dict
    model = MobileViTv3(arch, out_indices=(0, 1, 2, 3, 4),
                        init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(model.eval()(x), ref(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_v1_based_block_equations():
    """out = x + fusion([local, proj(global)]) with a depthwise local conv (v3-XXS L3)."""
    block = _randomise(MobileViTv3('xxs', out_indices=(2,))).stages[2][1].eval()
    assert block.conv_local.conv.groups == 64 and block.conv_fusion.conv.kernel_size == (1, 1)
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        local = block.conv_embed(block.conv_local(x))
        expected = x + block.conv_fusion(torch.cat((local, block.conv_proj(block._global(local))),
                                                   1))
        torch.testing.assert_close(block(x), expected)


def test_v2_based_block_adds_the_input():
    model = _randomise(MobileViTv3('0.5', out_indices=(2,))).eval()
    block = model.stages[2][1]
    assert block.fuse_local and block.conv_proj.conv.in_channels == 2 * 64
    with torch.no_grad():
        block.conv_proj.bn.weight.zero_()  # conv_proj(.) == its BN bias: output = x + bias
        block.conv_proj.bn.bias.zero_()
        x = torch.randn(1, 128, 8, 8)
        torch.testing.assert_close(block(x), x)


@pytest.mark.parametrize('arch', ['xxs', '0.75'])
@pytest.mark.parametrize('output_stride', [32, 8])
def test_switch_to_deploy_is_equivalent(arch, output_stride):
    model = _randomise(MobileViTv3(arch, out_indices=(0, 1, 2, 3, 4),
                                   output_stride=output_stride)).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.out_strides == [min(s, output_stride) for s in (2, 4, 8, 16, 32)]
    for a, b in zip(after, before):
        assert (a - b).abs().max() / b.abs().max() < 1e-5


def test_errors_name_the_value(tmp_path):
    with pytest.raises(UserError, match=r"unknown MobileViTv3 arch 'xl'; expected one of 'xxs', "
                                        r"'xs', 's', '0\.5', '0\.75', '1\.0'"):
        MobileViTv3('xl')
    path = tmp_path / 'xs.pt'
    torch.save(_to_authors(MobileViTv3('xs').state_dict(), 'v1'), path)
    model = MobileViTv3('xxs', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError, match=r'shape mismatch.*checkpoint \(\d+'):
        model.init_weights()
