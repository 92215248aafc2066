"""Mask R-CNN configs (configs/det): every file builds and trains / predicts on a tiny input, the
paper protocol is what the configs say, fused detectors match unfused ones, deploy configs load
fused weights strictly, and the test tool / demo work on a generated COCO-format set.

Nothing is downloaded: backbone ``init_cfg`` is switched off before building.
"""
import copy
import functools
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from torch import nn

import hybridvit.models  # noqa: F401
from hybridvit.datasets.generators import COCO_METAINFO, make_mini_coco
from hybridvit.models.utils import reparameterize_model
from hybridvit.models.utils.checkpoint import load_state_dict_strictly

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# Mask R-CNN configs (the SSDLite ones are tested in tests/deploy/test_detector_onnx.py)
CONFIGS = sorted(osp.relpath(p, ROOT)
                 for p in glob.glob(osp.join(ROOT, 'configs/det/mask-rcnn_*.py')))
MINI = [c for c in CONFIGS if 'mini-coco' in c]
PAPER = [c for c in CONFIGS if c not in MINI]
MINI_CONFIG = 'configs/det/mask-rcnn_fastvit-t8_fpn_1xb4-8e_mini-coco-320.py'
IMAGENET_MEAN, IMAGENET_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
H, W = 96, 128  # tiny input, divisible by 32


def _id(path):
    return osp.splitext(osp.basename(path))[0].replace('mask-rcnn_', '')


@functools.lru_cache(maxsize=None)
def _read_cfg(path):
    return Config.fromfile(osp.join(ROOT, path))  # ~0.5 s each (mmdet:: bases): read once


def read_cfg(path):
    return copy.deepcopy(_read_cfg(path))


def load_cfg(path):
    cfg = read_cfg(path)
    cfg.model.backbone.init_cfg = None  # never download / read pretrained weights
    return cfg


def build_detector(cfg):
    init_default_scope('mmdet')
    return MODELS.build(cfg.model)


def tiny_batch(model, training, seed=0):
    """One HxW image with two instances (boxes + masks), through the data preprocessor."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (3, H, W), dtype=np.uint8)
    img[:, 10:60, 12:50] //= 3  # two darker / brighter rectangles, the "objects"
    img[:, 30:90, 70:120] = 200
    boxes = torch.tensor([[12., 10., 50., 60.], [70., 30., 120., 90.]])
    masks = np.zeros((2, H, W), np.uint8)
    for m, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        m[y1:y2, x1:x2] = 1
    gt = InstanceData(bboxes=boxes, labels=torch.tensor([0, 1]), masks=BitmapMasks(masks, H, W))
    sample = DetDataSample(metainfo=dict(img_shape=(H, W), ori_shape=(H, W),
                                         scale_factor=(1.0, 1.0), img_id=0))
    sample.gt_instances = gt
    data = model.data_preprocessor(
        dict(inputs=[torch.from_numpy(img)], data_samples=[sample]), training)
    return data['inputs'], data['data_samples']


def total_loss(losses):
    return sum(sum(v) if isinstance(v, list) else v for k, v in losses.items() if 'loss' in k)


def randomise(model, seed=0):
    """Random BN statistics / affine and non-trivial layer scales, so fusion errors show."""
    gen = torch.Generator().manual_seed(seed)

    def rand(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=gen) * (hi - lo) + lo)

    with torch.no_grad():
        for m in model.backbone.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                rand(m.running_mean, -0.2, 0.2)
                rand(m.running_var, 0.5, 2.0)
                rand(m.weight, 0.5, 1.5)
                rand(m.bias, -0.2, 0.2)
        for name, p in model.backbone.named_parameters():
            if name.endswith('gamma'):
                rand(p, 0.05, 0.3)
        # spread the classifier scores so that their ranking is stable
        cls = model.roi_head.bbox_head.fc_cls
        cls.weight.normal_(0, 0.3, generator=gen)


# ---------------------------------------------------------------- every config builds and runs
@pytest.mark.parametrize('config', CONFIGS, ids=_id)
def test_config_builds_trains_and_predicts(config):
    """Build (no pretrained weights), ``loss`` in train mode, ``predict`` in eval mode."""
    cfg = load_cfg(config)
    # random weights: keep (a few) detections to check their shapes
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=10)
    model = build_detector(cfg)
    num_classes = cfg.model.roi_head.bbox_head.num_classes
    # the FPN takes exactly the backbone's maps (strides 4..32)
    assert list(cfg.model.neck.in_channels) == list(model.backbone.out_channels)
    assert cfg.model.neck.num_outs == 5

    if not config.endswith('_deploy.py'):  # deploy variants are for inference only
        model.train()
        losses = model.loss(*tiny_batch(model, True))
        for key in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'):
            assert key in losses, f'{config}: {key} missing from {sorted(losses)}'
        total = total_loss(losses)
        assert torch.isfinite(total), f'{config}: non-finite loss {losses}'

    model.eval()
    inputs, samples = tiny_batch(model, False)
    with torch.no_grad():
        feats = model.backbone(inputs)
        pred = model.predict(inputs, samples, rescale=True)[0].pred_instances
    assert [f.shape[1] for f in feats] == list(cfg.model.neck.in_channels)
    assert [W // f.shape[-1] for f in feats] == [4, 8, 16, 32]
    n = len(pred)
    assert 0 < n <= cfg.model.test_cfg.rcnn.max_per_img
    assert pred.bboxes.shape == (n, 4) and pred.scores.shape == (n, )
    assert pred.masks.shape == (n, H, W) and pred.masks.dtype == torch.bool
    assert int(pred.labels.min()) >= 0 and int(pred.labels.max()) < num_classes
    assert (pred.bboxes[:, 2:] >= pred.bboxes[:, :2]).all()
    assert float(pred.bboxes.min()) >= 0 and float(pred.bboxes[:, 2].max()) <= W


def test_backward_reaches_the_backbone():
    model = build_detector(load_cfg(MINI_CONFIG))
    model.train()
    losses = model.loss(*tiny_batch(model, True))
    total_loss(losses).backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


# ---------------------------------------------------------------- what the configs promise
@pytest.mark.parametrize('config', CONFIGS, ids=_id)
def test_normalisation_matches_pretraining(config):
    pre = read_cfg(config).model.data_preprocessor
    assert pre.bgr_to_rgb is True
    if 'mobilevit' in config or '-mci' in config:  # [0, 1] RGB (MobileViT, MobileCLIP)
        assert list(pre.mean) == [0.0] * 3 and list(pre.std) == [255.0] * 3
    else:  # ImageNet mean / std on 0-255 RGB
        assert list(pre.mean) == IMAGENET_MEAN and list(pre.std) == IMAGENET_STD


@pytest.mark.parametrize('config', PAPER, ids=_id)
def test_paper_protocol(config):
    """Mask R-CNN 1x on COCO 2017 with AdamW lr 2e-4 wd 1e-4 (PoolFormer / FastViT protocol)."""
    cfg = read_cfg(config)
    opt = cfg.optim_wrapper
    assert opt.type == 'OptimWrapper' and opt.optimizer.type == 'AdamW'
    assert opt.optimizer.lr == 2e-4 and opt.optimizer.weight_decay == 1e-4
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop' and cfg.train_cfg.max_epochs == 12
    steps = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR']
    assert len(steps) == 1 and list(steps[0].milestones) == [8, 11]
    assert cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.model.type == 'MaskRCNN'
    assert cfg.model.roi_head.bbox_head.num_classes == 80
    assert cfg.model.roi_head.mask_head.num_classes == 80
    assert cfg.model.neck.out_channels == 256
    resize = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'Resize']
    assert tuple(resize[0].scale) == (1333, 800)
    ds = cfg.train_dataloader.dataset
    assert ds.type == 'CocoDataset' and ds.data_root == 'data/coco/'
    assert ds.ann_file == 'annotations/instances_train2017.json'
    assert ds.data_prefix.img == 'train2017/'
    assert cfg.val_dataloader.dataset.ann_file == 'annotations/instances_val2017.json'
    assert cfg.val_evaluator.ann_file == 'data/coco/annotations/instances_val2017.json'
    assert set(cfg.val_evaluator.metric) == {'bbox', 'segm'}
    backbone = cfg.model.backbone
    arch = _id(config).split('_')[0].split('-')[1]  # e.g. 'fastvit-sa12_fpn_1x_coco' -> 'sa12'
    assert backbone.arch == arch
    if config.endswith('_deploy.py'):
        assert backbone.deploy is True and backbone.init_cfg is None
    else:
        assert backbone.init_cfg.type == 'Pretrained'
        if arch.startswith('mci'):  # MobileCLIP-S0/S1/S2 image towers
            assert backbone.init_cfg.checkpoint.endswith(f'mobileclip_s{arch[-1]}.pt')
        else:
            assert arch in backbone.init_cfg.checkpoint.replace('_', '-').replace('fastvit-', '')


def test_mini_config_matches_the_generated_data():
    cfg = read_cfg(MINI_CONFIG)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[loader].dataset
        assert ds.data_root == 'data/mini_coco/'
        assert tuple(ds.metainfo.classes) == tuple(COCO_METAINFO['classes'])
        assert [tuple(p) for p in ds.metainfo.palette] == [tuple(p) for p in
                                                            COCO_METAINFO['palette']]
    assert cfg.model.roi_head.bbox_head.num_classes == len(COCO_METAINFO['classes'])
    assert cfg.model.roi_head.mask_head.num_classes == len(COCO_METAINFO['classes'])
    assert cfg.test_evaluator.ann_file == 'data/mini_coco/annotations/instances_val2017.json'
    assert cfg.model.backbone.init_cfg is None  # from scratch: nothing to download
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.train_cfg.max_epochs * 400 / cfg.train_dataloader.batch_size <= 1000
    warm = read_cfg(MINI_CONFIG.replace('.py', '_seg-init.py'))
    assert warm.model.backbone.init_cfg == dict(
        type='Pretrained', prefix='backbone.', checkpoint='work_dirs/quickstart/iter_300.pth')


# ---------------------------------------------------------------- reparameterisation
def _compare_predictions(ref, new, k=10):
    """Top-k boxes / scores / labels agree (both sorted by score)."""
    assert len(ref) > 0 and len(new) > 0
    k = min(k, len(ref), len(new))
    ir, inew = ref.scores.argsort(descending=True)[:k], new.scores.argsort(descending=True)[:k]
    torch.testing.assert_close(new.scores[inew], ref.scores[ir], atol=1e-4, rtol=0)
    torch.testing.assert_close(new.bboxes[inew], ref.bboxes[ir], atol=1e-3, rtol=1e-4)
    assert torch.equal(new.labels[inew], ref.labels[ir])
    agree = (new.masks[inew] == ref.masks[ir]).float().mean()
    assert agree > 0.999, f'masks differ on {100 * (1 - float(agree)):.3f}% of pixels'


@pytest.mark.parametrize('config', [
    'configs/det/mask-rcnn_fastvit-sa12_fpn_1x_coco.py',
    'configs/det/mask-rcnn_mobilevit-xxs_fpn_1x_coco.py'], ids=_id)
def test_fused_detector_matches_and_loads_into_deploy_config(config):
    cfg = load_cfg(config)
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    model = build_detector(cfg)
    randomise(model)
    model.eval()
    fused = reparameterize_model(model)
    assert fused.backbone.deploy is True
    n_fused = sum(p.numel() for p in fused.backbone.parameters())
    assert n_fused < sum(p.numel() for p in model.backbone.parameters())

    inputs, samples = tiny_batch(model, False)
    with torch.no_grad():
        feats, feats_fused = model.extract_feat(inputs), fused.extract_feat(inputs)
        for a, b in zip(feats, feats_fused):
            assert float((a - b).abs().max() / a.abs().max()) < 1e-4
        rpn, rpn_fused = model.rpn_head(feats), fused.rpn_head(feats_fused)
        for a, b in zip(sum(map(list, rpn), []), sum(map(list, rpn_fused), [])):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
        ref = model.predict(inputs, samples)[0].pred_instances
        new = fused.predict(inputs, samples)[0].pred_instances
    _compare_predictions(ref, new)

    # the deploy config (model.backbone.deploy=True) takes the fused weights strictly
    deploy_cfg = load_cfg(config.replace('.py', '_deploy.py'))
    deploy_cfg.model.test_cfg.rcnn.score_thr = 0.0
    deploy = build_detector(deploy_cfg)
    load_state_dict_strictly(deploy, fused.state_dict(), source='fused state dict')
    deploy.eval()
    with torch.no_grad():
        out = deploy.predict(inputs, samples)[0].pred_instances
    _compare_predictions(new, out)


# ---------------------------------------------------------------- tools on a generated set
@pytest.fixture(scope='module')
def mini_coco_and_checkpoint(tmp_path_factory):
    """A 2-image COCO-format set and a random-weight checkpoint of the mini config."""
    root = tmp_path_factory.mktemp('det')
    data_root = str(root / 'mini_coco')
    make_mini_coco(data_root, num_train=1, num_val=2, image_size=(96, 128), quiet=True)
    torch.manual_seed(0)
    model = build_detector(load_cfg(MINI_CONFIG))
    ckpt = str(root / 'random.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    return root, data_root, ckpt


def _run(args, timeout=300):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f'{args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}'
    return proc


def test_tools_test_writes_coco_bbox_and_segm_ap(mini_coco_and_checkpoint):
    root, data_root, ckpt = mini_coco_and_checkpoint
    work_dir = str(root / 'test_wd')
    ann = osp.join(data_root, 'annotations', 'instances_val2017.json')
    _run(['tools/test.py', MINI_CONFIG, ckpt, '--work-dir', work_dir, '--cfg-options',
          f'test_dataloader.dataset.data_root={data_root}/', f'test_evaluator.ann_file={ann}'])
    with open(osp.join(work_dir, 'test_metrics.json')) as f:
        metrics = json.load(f)['metrics']
    for task in ('bbox', 'segm'):
        for key in ('mAP', 'mAP_50', 'mAP_75'):
            value = metrics[f'coco/{task}_{key}']
            assert 0.0 <= value <= 1.0 or value == -1.0  # random weights: ~0, but reported


def test_demo_draws_detections(mini_coco_and_checkpoint, tmp_path):
    root, data_root, ckpt = mini_coco_and_checkpoint
    image = osp.join(data_root, 'val2017', '000000000001.jpg')
    out = str(tmp_path / 'det.png')
    proc = _run(['demo/image_demo.py', image, MINI_CONFIG, ckpt, '--out-file', out,
                 '--score-thr', '0'])
    assert 'det result:' in proc.stdout and 'detections >= 0' in proc.stdout
    vis, img = cv2.imread(out), cv2.imread(image)
    assert vis is not None and vis.shape == img.shape
    assert np.abs(vis.astype(int) - img).max() > 50  # boxes / masks were drawn


def _coco_predictions(ann_file, shift=0.0):
    """Every ground-truth object of ``ann_file`` as a detection (score 1), its box moved right
    by ``shift`` x its width; masks are the ground-truth masks (unshifted)."""
    from pycocotools.coco import COCO
    coco = COCO(ann_file)
    cat_ids = sorted(coco.getCatIds())
    samples = []
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False))
        boxes = torch.tensor([[a['bbox'][0] + shift * a['bbox'][2], a['bbox'][1],
                               a['bbox'][0] + (1 + shift) * a['bbox'][2],
                               a['bbox'][1] + a['bbox'][3]] for a in anns], dtype=torch.float32)
        masks = torch.from_numpy(np.stack([coco.annToMask(a) for a in anns]).astype(bool))
        samples.append(dict(img_id=img_id, ori_shape=(info['height'], info['width']),
                            pred_instances=dict(
                                bboxes=boxes, scores=torch.ones(len(anns)), masks=masks,
                                labels=torch.tensor([cat_ids.index(a['category_id'])
                                                     for a in anns]))))
    return samples


@pytest.mark.parametrize('shift,expected', [
    (0.0, dict(bbox_mAP=1.0, bbox_mAP_50=1.0, bbox_mAP_75=1.0)),
    # a box moved by 1/5 of its width: IoU = 0.8 / 1.2 = 0.667, a hit at 0.50..0.65 only
    (0.2, dict(bbox_mAP=0.4, bbox_mAP_50=1.0, bbox_mAP_75=0.0)),
])
def test_coco_metric_on_hand_made_detections(tmp_path, shift, expected):
    """mmdet's CocoMetric, as the det configs use it, on the generated val annotations with
    the ground truth as predictions: AP is known (COCO mAP averages IoU 0.50:0.05:0.95, so a
    detection with IoU 0.667 hits at 4 of the 10 thresholds)."""
    from mmdet.evaluation import CocoMetric
    data_root = str(tmp_path / 'mini_coco')
    make_mini_coco(data_root, num_train=1, num_val=2, image_size=(96, 128), quiet=True)
    ann = osp.join(data_root, 'annotations', 'instances_val2017.json')
    metric = CocoMetric(ann_file=ann, metric=['bbox', 'segm'])
    metric.dataset_meta = dict(classes=COCO_METAINFO['classes'])
    samples = _coco_predictions(ann, shift)
    metric.process({}, samples)
    results = metric.evaluate(len(samples))
    for key, value in expected.items():
        assert results[f'coco/{key}'] == pytest.approx(value, abs=1e-3), (key, results)
    assert results['coco/segm_mAP'] == pytest.approx(1.0, abs=1e-3)  # masks are the truth
