"""MobileViTv2 / v3 (DeepLabv3 / PSPNet) and FastViT-MCi (Semantic FPN) segmentation configs: each
runs one optimiser step and one ``predict`` on a tiny input; the configs say ml-cvnets' / the
paper's protocol; fused == unfused and the deploy twin loads the fused weights strictly.

``tests/seg/test_seg_configs.py`` already builds every config and runs one forward pass.
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
V2 = sorted(glob.glob(osp.join(ROOT, 'configs/seg/*_mobilevitv2-*.py')))
V3 = sorted(glob.glob(osp.join(ROOT, 'configs/seg/*_mobilevitv3-*.py')))
MCI = sorted(glob.glob(osp.join(ROOT, 'configs/seg/fpn_fastvit-mci*.py')))
TRAINABLE = [p for p in V2 + V3 + MCI if not p.endswith('_deploy.py')]
SIZE = (64, 64)


def _build(path):
    import hybridvit.models  # noqa: F401
    from mmseg.registry import MODELS
    cfg = Config.fromfile(path)
    init_default_scope('mmseg')
    cfg.model.backbone.init_cfg = None  # never download in tests
    cfg.model.data_preprocessor.size = SIZE
    return cfg, revert_sync_batchnorm(MODELS.build(cfg.model))


def _batch(num_classes, n=2):
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, *SIZE), generator=gen, dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=SIZE, ori_shape=SIZE, pad_shape=SIZE))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, *SIZE), generator=gen))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('path', TRAINABLE, ids=[osp.basename(p) for p in TRAINABLE])
def test_one_training_step_and_predict(path):
    cfg, model = _build(path)
    num_classes = cfg.model.decode_head.num_classes
    model.train()
    optim = torch.optim.SGD(model.parameters(), lr=0.01)
    data = model.data_preprocessor(_batch(num_classes), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    expected = {'decode.loss_ce', 'decode.acc_seg'}
    if cfg.model.get('auxiliary_head'):
        expected |= {'aux.loss_ce', 'aux.acc_seg'}
    assert expected <= set(losses)
    total, _ = model.parse_losses(losses)
    total.backward()
    grads = {n: p.grad for n, p in model.backbone.named_parameters()}
    reached = {n for n, g in grads.items() if g is not None and bool(g.abs().sum() > 0)}
    # the gradient reaches the stem, every stage and nearly every tensor; a few have an exactly
    # zero gradient by construction (e.g. MobileViTv2: the scale of an MV2 projection BN feeding
    # only a depthwise conv + train-mode BN, which normalises the scale away)
    for prefix in ['stem.'] + [f'stages.{i}.' for i in range(len(model.backbone.stages))]:
        assert any(n.startswith(prefix) for n in reached), prefix
    assert len(reached) >= 0.95 * len(grads), sorted(set(grads) - reached)
    before = model.decode_head.conv_seg.weight.detach().clone()
    optim.step()
    assert not torch.equal(model.decode_head.conv_seg.weight, before)
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(_batch(num_classes, n=1), False)
        pred = model.predict(data['inputs'], data['data_samples'])[0]
    seg = pred.pred_sem_seg.data
    assert seg.shape == (1, *SIZE) and int(seg.max()) < num_classes
    assert pred.seg_logits.data.shape == (num_classes, *SIZE)


@pytest.mark.parametrize('path', [p for p in V2 if not p.endswith('_deploy.py')
                                  and 'mini' not in p],
                         ids=lambda p: osp.basename(p))
def test_mobilevitv2_configs_follow_cvnets(path):
    cfg = Config.fromfile(path)
    model = cfg.model
    assert model.backbone.type == 'hybridvit.MobileViTv2'
    assert model.data_preprocessor.mean == [0.0] * 3 and model.data_preprocessor.std == [255.0] * 3
    width = model.backbone.arch
    assert f"mobilevitv2_{width.replace('.', '').ljust(3, '0')}." in \
        model.backbone.init_cfg.checkpoint
    assert model.decode_head.channels == 512 and model.decode_head.dropout_ratio == 0.1
    assert model.auxiliary_head.loss_decode.loss_weight == 0.4
    assert model.auxiliary_head.channels == max(model.auxiliary_head.in_channels // 4, 128)
    assert cfg.optim_wrapper.clip_grad.max_norm == 10.0
    assert cfg.custom_hooks[0].type == 'EMAHook' and cfg.custom_hooks[0].momentum == 5e-4
    if 'ade20k' in path:
        assert model.backbone.output_stride == 8 and model.decode_head.num_classes == 150
        assert cfg.optim_wrapper.optimizer.type == 'SGD' and cfg.optim_wrapper.optimizer.lr == 0.02
        assert cfg.train_cfg.max_iters == 120 * 20210 // 16  # 120 epochs at batch 16
        assert cfg.train_dataloader.batch_size * 4 == 16
    else:
        assert model.backbone.output_stride == 16 and model.decode_head.num_classes == 21
        assert cfg.optim_wrapper.optimizer.type == 'AdamW'
        assert cfg.optim_wrapper.optimizer.lr == 5e-4
        assert cfg.train_dataloader.batch_size * 4 == 128
    if model.decode_head.type == 'ASPPHead':
        rates = (1, 12, 24, 36) if 'ade20k' in path else (1, 6, 12, 18)
        assert tuple(model.decode_head.dilations) == rates
    else:
        assert model.decode_head.type == 'PSPHead'
        assert tuple(model.decode_head.pool_scales) == (1, 2, 3, 6)


@pytest.mark.parametrize('path', V3, ids=lambda p: osp.basename(p))
def test_mobilevitv3_configs(path):
    cfg = Config.fromfile(path)
    backbone = cfg.model.backbone
    assert backbone.type == 'hybridvit.MobileViTv3'
    assert cfg.model.data_preprocessor.mean == [0.0] * 3
    assert cfg.model.data_preprocessor.std == [255.0] * 3
    assert backbone.init_cfg.checkpoint.endswith('/checkpoint_ema_best.pt')  # authors' release
    if backbone.arch in ('xxs', 'xs', 's'):  # MobileViT v1 recipe (authors' v1 configs)
        assert backbone.output_stride == 16 and not backbone.final_expansion
        assert cfg.model.decode_head.channels == 256
        assert tuple(cfg.model.decode_head.dilations) == (1, 6, 12, 18)
    else:  # MobileViTv2 / ml-cvnets recipe (authors' v2 configs)
        assert backbone.output_stride == (8 if 'ade20k' in path else 16)
        assert cfg.model.decode_head.channels == 512
        assert cfg.custom_hooks[0].type == 'EMAHook'


@pytest.mark.parametrize('path', [p for p in MCI if not p.endswith('_deploy.py')],
                         ids=lambda p: osp.basename(p))
def test_mci_fpn_configs(path):
    cfg = Config.fromfile(path)
    backbone = cfg.model.backbone
    assert backbone.arch in ('mci0', 'mci1', 'mci2')
    assert backbone.init_cfg.checkpoint.endswith(f'mobileclip_s{backbone.arch[-1]}.pt')
    # MobileCLIP normalisation: RGB in [0, 1]
    assert cfg.model.data_preprocessor.mean == [0.0] * 3
    assert cfg.model.data_preprocessor.std == [255.0] * 3
    assert cfg.optim_wrapper.optimizer.lr == 2e-4 and cfg.train_cfg.max_iters == 40000


@pytest.mark.parametrize('name', ['deeplabv3_mobilevitv2-050_4xb32-4k_voc12aug-512x512.py',
                                  'fpn_fastvit-mci0_8xb4-40k_ade20k-512x512.py'])
def test_fused_segmentor_loads_into_the_deploy_twin(name):
    from hybridvit.models.utils import reparameterize_model
    from hybridvit.models.utils.checkpoint import load_state_dict_strictly
    _, model = _build(osp.join(ROOT, 'configs/seg', name))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
    model.eval()
    x = torch.randn(1, 3, 64, 96)
    fused = reparameterize_model(model)
    _, deploy = _build(osp.join(ROOT, 'configs/seg', name.replace('.py', '_deploy.py')))
    load_state_dict_strictly(deploy.eval(), fused.state_dict(), source='fused')
    with torch.no_grad():
        ref, out, dep = model._forward(x), fused._forward(x), deploy._forward(x)
    assert (ref - out).abs().max() / ref.abs().max() < 1e-4
    torch.testing.assert_close(dep, out)
