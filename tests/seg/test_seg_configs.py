"""Every segmentation config builds and runs; training on generated data learns; fused == unfused."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'seg', '*.py')))
QUICKSTART = osp.join(ROOT, 'configs/seg/fpn_fastvit-t8_1xb4-300it_mini-ade-256x256.py')


def build_segmentor(cfg):
    import hybridvit.models  # noqa: F401
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg.model.backbone.init_cfg = None  # never download in tests
    cfg.model.pretrained = None
    return revert_sync_batchnorm(MODELS.build(cfg.model))


def randomise_bn(model):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=[osp.basename(p) for p in SEG_CONFIGS])
def test_config_builds_and_runs(path):
    cfg = Config.fromfile(path)
    model = build_segmentor(cfg).eval()
    backbone = model.backbone
    neck_in = cfg.model.get('neck', {}).get('in_channels') if cfg.model.get('neck') else None
    if neck_in is not None:
        assert list(neck_in) == list(backbone.out_channels)
    else:  # DeepLabv3: ASPP reads the backbone output named by in_index
        head = cfg.model.decode_head
        assert head.in_channels == backbone.out_channels[head.in_index]
    with torch.no_grad():
        logits = model._forward(torch.randn(1, 3, 64, 64))
    assert logits.shape == (1, cfg.model.decode_head.num_classes, 16, 16) or \
        logits.shape[:2] == (1, cfg.model.decode_head.num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize('path', [p for p in SEG_CONFIGS if '_8xb4-40k_ade20k' in p
                                  and not p.endswith('_deploy.py')
                                  and 'mci' not in p])  # MCi: test_mobilevitv2_mci_seg_configs
def test_fpn_configs_follow_the_paper_protocol(path):
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.type == 'hybridvit.FastViT'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.lr == 2e-4
    assert cfg.optim_wrapper.optimizer.weight_decay == 1e-4
    assert cfg.train_cfg.max_iters == 40000
    assert cfg.train_dataloader.batch_size == 4 and cfg.auto_scale_lr.base_batch_size == 32
    assert cfg.param_scheduler[0].type == 'PolyLR' and cfg.param_scheduler[0].power == 0.9
    assert cfg.crop_size == (512, 512) and cfg.model.decode_head.num_classes == 150
    # FastViT normalisation: ImageNet mean/std on 0-255 RGB
    assert cfg.model.data_preprocessor.mean == [123.675, 116.28, 103.53]
    assert cfg.model.data_preprocessor.bgr_to_rgb
    arch = cfg.model.backbone.arch
    assert cfg.model.backbone.init_cfg.checkpoint.endswith(f'fastvit_{arch}.pth.tar')


def test_named_user_config_is_fpn_sa24_ade20k():
    cfg = Config.fromfile(osp.join(ROOT, 'configs/seg/fastvit_sa24_ade20k.py'))
    assert cfg.model.backbone.arch == 'sa24' and cfg.model.neck.type == 'FPN'
    assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'


def test_mobilevit_deeplab_normalisation_and_aspp():
    cfg = Config.fromfile(osp.join(ROOT, 'configs/seg/deeplabv3_mobilevit-s_8xb4-40k_voc12aug-512x512.py'))
    assert cfg.model.data_preprocessor.mean == [0.0, 0.0, 0.0]
    assert cfg.model.data_preprocessor.std == [255.0, 255.0, 255.0]
    assert cfg.model.backbone.output_stride == 16 and not cfg.model.backbone.final_expansion
    assert tuple(cfg.model.decode_head.dilations) == (1, 6, 12, 18)
    assert cfg.model.decode_head.channels == 256
    assert cfg.model.backbone.init_cfg.checkpoint.endswith('.safetensors')


@pytest.mark.parametrize('name', ['fpn_fastvit-sa12_8xb4-40k_ade20k-512x512.py',
                                  'deeplabv3_mobilevit-xxs_8xb4-40k_voc12aug-512x512.py'])
def test_fused_segmentor_gives_the_same_logits(name):
    from hybridvit.models.utils import reparameterize_model
    from hybridvit.models.utils.checkpoint import load_state_dict_strictly
    cfg = Config.fromfile(osp.join(ROOT, 'configs/seg', name))
    model = build_segmentor(cfg).eval()
    randomise_bn(model)
    x = torch.randn(1, 3, 96, 96)
    fused = reparameterize_model(model)
    with torch.no_grad():
        ref, out = model._forward(x), fused._forward(x)
    assert (ref - out).abs().max() / ref.abs().max() < 1e-4
    # the deploy config loads the fused weights strictly and gives the same logits
    deploy_cfg = Config.fromfile(osp.join(ROOT, 'configs/seg', name.replace('.py', '_deploy.py')))
    deploy = build_segmentor(deploy_cfg).eval()
    load_state_dict_strictly(deploy, fused.state_dict(), source='fused')
    with torch.no_grad():
        assert torch.allclose(deploy._forward(x), out, atol=1e-5)


def test_multiscale_config_batches_have_one_resolution(tmp_path):
    from mmengine.runner import Runner

    from hybridvit.datasets.generators import make_mini_voc
    make_mini_voc(str(tmp_path / 'voc'), num_train=6, num_val=2, num_aug=4, image_size=96,
                  quiet=True)
    cfg = Config.fromfile(osp.join(ROOT, 'configs/seg/deeplabv3_mobilevit-xxs_8xb4-40k_voc12aug-512x512_ms.py'))
    loader_cfg = cfg.train_dataloader
    for ds in loader_cfg.dataset.dataset.datasets:
        ds.data_root = str(tmp_path / 'voc' / 'VOCdevkit' / 'VOC2012')
    loader_cfg.num_workers = 0
    loader_cfg.persistent_workers = False
    loader_cfg.batch_sampler.scales = [(64, 64), (96, 96), (128, 128)]
    loader_cfg.batch_sampler.base_size = (96, 96)
    init_default_scope('mmseg')
    import hybridvit.datasets  # noqa: F401
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    seen = 0
    for i, batch in zip(range(6), loader):
        shapes = {tuple(x.shape[-2:]) for x in batch['inputs']}
        assert len(shapes) == 1
        (h, w), = shapes
        assert (h, w) in [(64, 64), (96, 96), (128, 128)]
        assert len(batch['inputs']) == max(1, round(4 * 96 * 96 / (h * w)))
        seen += 1
    assert seen == 6


def _run(args):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_short_training_lowers_the_loss_and_test_tool_writes_miou(tmp_path):
    from hybridvit.datasets.generators import make_mini_ade
    data = str(tmp_path / 'mini_ade')
    make_mini_ade(data, num_train=8, num_val=2, image_size=64, quiet=True)
    work = str(tmp_path / 'work')
    opts = ['--cfg-options'] + [f'{k}.dataset.data_root={data}' for k in
                                ('train_dataloader', 'val_dataloader', 'test_dataloader')] + [
        'crop_size=(64,64)', 'model.data_preprocessor.size=(64,64)',
        'train_dataloader.batch_size=2', 'train_cfg.max_iters=30', 'train_cfg.val_interval=30',
        'param_scheduler.1.end=30', 'default_hooks.logger.interval=5',
        'default_hooks.checkpoint.interval=30',
        "train_dataloader.dataset.pipeline.2.scale=(64,64)",
        "train_dataloader.dataset.pipeline.3.crop_size=(64,64)"]
    _run(['tools/train.py', QUICKSTART, '--work-dir', work, *opts])
    scalars = glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))[0]
    losses = [json.loads(line)['loss'] for line in open(scalars) if '"loss"' in line]
    assert len(losses) >= 5
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2, losses
    proc = _run(['tools/test.py', QUICKSTART, osp.join(work, 'iter_30.pth'), '--work-dir',
                 work + '/test', '--show-dir', work + '/show', *opts])
    metrics = json.load(open(osp.join(work, 'test', 'test_metrics.json')))['metrics']
    assert 0.0 <= metrics['mIoU'] <= 100.0 and 'aAcc' in metrics
    assert 'mIoU' in proc.stdout
    # --show-dir: one picture per val image, drawn by the demo's renderer (image + legend)
    shown = sorted(os.listdir(osp.join(work, 'show')))
    val_images = sorted(glob.glob(osp.join(data, 'images', 'validation', '*')))
    assert shown == sorted(osp.splitext(osp.basename(p))[0] + '.png' for p in val_images)
    vis = cv2.imread(osp.join(work, 'show', shown[0]))
    assert vis.shape[0] >= 64 and vis.shape[1] > 64
    # --tta: mmseg's SegTTAModel and multi-scale + flip tta_pipeline from the base configs
    _run(['tools/test.py', QUICKSTART, osp.join(work, 'iter_30.pth'), '--tta', '--work-dir',
          work + '/tta', '--show-dir', work + '/show_tta', *opts])
    tta = json.load(open(osp.join(work, 'tta', 'test_metrics.json')))['metrics']
    assert 0.0 <= tta['mIoU'] <= 100.0
    from mmengine.config import Config
    ran = Config.fromfile(osp.join(work, 'tta', osp.basename(QUICKSTART)))
    assert ran.model.type == 'SegTTAModel' and ran.model.module.type == 'EncoderDecoder'
    assert ran.test_dataloader.dataset.pipeline[1].type == 'TestTimeAug'
    assert sorted(os.listdir(osp.join(work, 'show_tta'))) == shown


def test_iou_metric_on_a_hand_made_prediction():
    """mmseg's IoUMetric (the seg configs' evaluator) on a 4x4 case computed by hand.

    gt: columns 0-1 class 0, columns 2-3 class 1, pixel (3, 3) ignored (255); prediction:
    class 1 on rows 0-1 of columns 2-3, class 0 elsewhere. Over the 15 valid pixels:
    class 0: 8 / (8 + 3) = 72.73 IoU; class 1: 4 / 7 = 57.14; mIoU 64.94; aAcc 12 / 15.
    """
    import torch
    from mmseg.evaluation import IoUMetric
    gt = torch.zeros(4, 4, dtype=torch.long)
    gt[:, 2:] = 1
    gt[3, 3] = 255
    pred = torch.zeros(4, 4, dtype=torch.long)
    pred[:2, 2:] = 1
    metric = IoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=('background', 'shape'))
    metric.process({}, [dict(pred_sem_seg=dict(data=pred[None]), gt_sem_seg=dict(data=gt[None]))])
    results = metric.evaluate(1)
    assert results['mIoU'] == pytest.approx((800 / 11 + 400 / 7) / 2, abs=0.01)
    assert results['aAcc'] == pytest.approx(80.0, abs=0.01)
    assert results['mAcc'] == pytest.approx((100 + 400 / 7) / 2, abs=0.01)
