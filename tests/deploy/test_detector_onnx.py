"""Whole-detector ONNX export (issue 14): ONNX Runtime must reproduce mmdet's ``predict()``.

Weights are random, but the classifier weights are rescaled so that the scores spread
("well separated"): then mmdet keeps many detections above 0.3 and their ranking does not hinge on
1e-6 differences. Every PyTorch detection with score >= 0.3 needs an ONNX detection of the same
label with box IoU >= 0.99 and |score diff| <= 1e-3, and vice versa; matched masks IoU >= 0.98.
"""
import copy
import importlib.util
import os.path as osp
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from hybridvit.deploy import det_ops
from hybridvit.deploy.detector_onnx import (DEMO_IMAGE, WholeDetector,
                                            check_whole_detector, export_whole_detector,
                                            match_detections, non_standard_nodes,
                                            predict_reference, read_resized)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MASK_T8 = 'configs/det/mask-rcnn_fastvit-t8_fpn_1x_coco.py'
MASK_XXS = 'configs/det/mask-rcnn_mobilevit-xxs_fpn_1x_coco.py'
SSD_XXS = 'configs/det/ssdlite_mobilevit-xxs_8xb24-600e_coco-320.py'
SSD_CONFIGS = ['configs/det/ssdlite_mobilevit-xxs_8xb24-600e_coco-320.py',
               'configs/det/ssdlite_mobilevit-xs_8xb24-600e_coco-320.py',
               'configs/det/ssdlite_mobilevit-s_8xb24-600e_coco-320.py']
SSD_MINI = 'configs/det/ssdlite_mobilevit-xxs_1xb8-30e_mini-coco-320.py'
SEG_CFG = 'configs/seg/fpn_fastvit-t8_1xb4-300it_mini-ade-256x256.py'


def _init(config, checkpoint=None, **cfg_options):
    from hybridvit.apis import init_model
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return init_model(osp.join(ROOT, config), checkpoint, cfg_options=cfg_options or None)


def _classifiers(model):
    """The score layers, in the order they act (RPN before the RoI head)."""
    if hasattr(model, 'roi_head'):
        return [model.rpn_head.rpn_cls, model.roi_head.bbox_head.fc_cls]
    return [[m for m in convs.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            for convs in model.bbox_head.cls_convs]


@torch.no_grad()
def spread_scores(model, img, std=3.0, background=0.0):
    """Standardise each classifier output channel on ``img`` to mean 0, std ``std``.

    Random weights give near-uniform scores (softmax over 81 classes ~0.012, sigmoid ~0.5, and
    nearly the same at every anchor): no detection passes 0.3 and the ranking of near-equal
    scores would hang on rounding. With spread logits the scores are separated like a trained
    model's. Per output channel ``c``: ``w_c <- k_c w_c``, ``b_c <- k_c (b_c - mean_c)``, the mean
    over the positions (anchors / RoIs) of ``img``, ``k_c`` = ``std`` / the logits' std;
    ``background`` is added to the background logits of softmax heads, so that, as for a trained
    detector, most anchors are background and a few tens of detections pass 0.3 (far fewer
    than ``max_per_img``: the cut does not fall among near-equal high scores).
    """
    for layer in _classifiers(model):
        # RPN objectness is a sigmoid: logits of std 3 reach 1.0 exactly (ties) in float32
        target = 1.0 if layer is getattr(getattr(model, 'rpn_head', None), 'rpn_cls', None) \
            else std
        seen = []

        def hook(module, inputs, output):
            # (1, C, h, w) conv maps or (R, C) RoI logits -> (positions, C)
            flat = output.permute(0, 2, 3, 1).reshape(-1, output.shape[1]) \
                if output.dim() == 4 else output
            seen.append(flat)

        handle = layer.register_forward_hook(hook)
        predict_reference(model, img)
        handle.remove()
        out = seen[0]
        mean = out.mean(0)
        spread = (out - mean).std(0) if len(out) > 1 else torch.zeros_like(mean)
        # per channel; a channel that does not vary (1x1 SSD level) gets uniform scores
        scale = torch.where(spread > 1e-6, target / spread.clamp_min(1e-6), 0.0)
        layer.weight.mul_(scale.reshape((-1, ) + (1, ) * (layer.weight.dim() - 1)))
        layer.bias.copy_((layer.bias - mean) * scale)
        if background and layer is not getattr(getattr(model, 'rpn_head', None), 'rpn_cls',
                                               None):
            # softmax heads: the last of every anchor's num_classes + 1 channels is background
            per_anchor = model.bbox_head.cls_out_channels if hasattr(model, 'bbox_head') \
                else layer.bias.numel()
            layer.bias.view(-1, per_anchor)[:, -1] += background
    return model


# logit std and background offset that give a few tens of separated detections >= 0.3
SPREAD = {MASK_T8: (2.0, 7.0), MASK_XXS: (2.0, 6.0), SSD_XXS: (1.5, 3.0)}


def _fused(config, img):
    from hybridvit.deploy import fold_output_norms
    from hybridvit.models.utils import reparameterize_model
    torch.manual_seed(0)
    model = reparameterize_model(_init(config))
    fold_output_norms(model)
    std, background = SPREAD[config]
    return spread_scores(model.eval(), img, std, background)


def _eager(wrapper, img):
    with torch.no_grad():
        out = wrapper(torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32)))
    res = dict(boxes=out[0][:, :4].numpy(), scores=out[0][:, 4].numpy(), labels=out[1].numpy())
    if len(out) == 3:
        res['masks'] = out[2].numpy()
    return res


def _op_types(path):
    import onnx
    return {n.op_type for n in onnx.load(path).graph.node}


# ---------------------------------------------------------------- the three detectors
@pytest.mark.parametrize('config, mask', [(MASK_T8, True), (MASK_XXS, True), (SSD_XXS, False)],
                         ids=['mask-rcnn-fastvit-t8', 'mask-rcnn-mobilevit-xxs',
                              'ssdlite-mobilevit-xxs'])
def test_onnx_matches_predict_static_and_dynamic(config, mask, tmp_path):
    img = read_resized(DEMO_IMAGE, (320, 320))
    model = _fused(config, img)
    wrapper = WholeDetector(model).eval()
    ref = predict_reference(model, img)
    # well separated: something to compare, and the max_per_img cut far below 0.3
    max_per_img = model.test_cfg.rcnn.max_per_img if mask else model.test_cfg.max_per_img
    assert 5 <= int((ref['scores'] >= 0.3).sum()) < max_per_img

    # the eager wrapper IS mmdet's predict (same kernels; equal scores may swap places)
    eager = _eager(wrapper, img)
    assert len(eager['scores']) == len(ref['scores'])
    same = match_detections(ref, eager, min_score=0.0)
    assert same['ok'] and same['min_iou'] > 0.9999 and same['max_score_diff'] < 1e-6, same
    if mask:  # separable pasting vs grid_sample: pixels at exactly 0.5 may round either way
        assert same['min_mask_iou'] > 0.999, same

    out = str(tmp_path / 'det.onnx')
    example = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32))
    export_whole_detector(wrapper, example, out, dynamic=True)
    assert non_standard_nodes(out) == []  # only ai.onnx nodes
    ops = _op_types(out)
    assert 'NonMaxSuppression' in ops
    assert ('RoiAlign' in ops) == mask

    # the export size, then two other sizes (one not a multiple of 32: padded in the graph)
    sizes = [(320, 320), (256, 384), (300, 410)]
    stats = check_whole_detector(out, model, [read_resized(DEMO_IMAGE, s) for s in sizes])
    for size, stat in zip(sizes, stats):
        assert stat['ok'], f'{size}: {stat}'
        assert stat['n_ref'] >= 3, f'{size}: {stat}'
        assert (stat['min_mask_iou'] is not None) == mask

    import onnxruntime as ort
    sess = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    names = [o.name for o in sess.get_outputs()]
    assert names == (['dets', 'labels', 'masks'] if mask else ['dets', 'labels'])
    res = sess.run(None, {'image': example.numpy()})
    n = res[0].shape[0]
    assert res[0].shape == (n, 5) and res[1].shape == (n, ) and res[1].dtype == np.int64
    assert 0 < n <= max_per_img
    if mask:
        assert res[2].shape == (n, 320, 320) and res[2].dtype == np.float32
        assert 0.0 <= res[2].min() and res[2].max() <= 1.0 and 0 < res[2].mean() < 1
    # x1 <= x2, y1 <= y2, inside the image, sorted by score within the NMS output
    assert (res[0][:, 2] >= res[0][:, 0]).all() and (res[0][:, 3] >= res[0][:, 1]).all()
    assert res[0][:, :4].min() >= 0 and res[0][:, [0, 2]].max() <= 320


def test_no_detection_gives_empty_outputs(tmp_path):
    """A score threshold nothing passes: (0, 5) dets and (0, H, W) masks, no ORT error."""
    img = read_resized(DEMO_IMAGE, (256, 256))
    model = _fused(MASK_XXS, img)
    model.test_cfg.rcnn.score_thr = 1.0
    out = str(tmp_path / 'empty.onnx')
    example = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32))
    export_whole_detector(WholeDetector(model), example, out)
    import onnxruntime as ort
    res = ort.InferenceSession(out, providers=['CPUExecutionProvider']).run(
        None, {'image': example.numpy()})
    assert [r.shape for r in res] == [(0, 5), (0, ), (0, 256, 256)]
    assert len(predict_reference(model, img)['scores']) == 0


# ---------------------------------------------------------------- the ops, against mmcv / mmdet
def _export_fn(fn, inputs, path, names):
    class Wrap(torch.nn.Module):
        def forward(self, *args):
            return fn(*args)

    torch.onnx.export(Wrap(), tuple(inputs), path, dynamo=False, opset_version=17,
                      input_names=names)
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    return sess.run(None, {n: t.numpy() for n, t in zip(names, inputs)})


def _random_boxes(n, gen, size=100.0):
    xy = torch.rand(n, 2, generator=gen) * size
    wh = torch.rand(n, 2, generator=gen) * size / 3 + 1
    return torch.cat([xy, xy + wh], 1)


def test_nms_keep_matches_mmcv_nms_in_onnx(tmp_path):
    from mmcv.ops import nms
    gen = torch.Generator().manual_seed(0)
    boxes, scores = _random_boxes(300, gen), torch.rand(300, generator=gen)
    _, ref = nms(boxes, scores, 0.5)
    keep = det_ops.nms_keep(boxes, scores, 0.5, 1000)
    assert torch.equal(keep, ref) and 20 < len(ref) < 300  # some suppressed, some kept
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        got, = _export_fn(lambda b, s: det_ops.nms_keep(b, s, 0.5, 1000), [boxes, scores],
                          str(tmp_path / 'nms.onnx'), ['boxes', 'scores'])
    np.testing.assert_array_equal(got, ref.numpy())  # same order: descending score
    # max_num caps the result to the best ones
    assert torch.equal(det_ops.nms_keep(boxes, scores, 0.5, 7), ref[:7])


def test_batched_nms_keep_is_per_group():
    from mmcv.ops import batched_nms
    gen = torch.Generator().manual_seed(1)
    boxes, scores = _random_boxes(200, gen), torch.rand(200, generator=gen)
    groups = torch.randint(0, 4, (200, ), generator=gen)
    _, ref = batched_nms(boxes, scores, groups, dict(type='nms', iou_threshold=0.3))
    assert torch.equal(det_ops.batched_nms_keep(boxes, scores, groups, 0.3, 1000), ref)
    agnostic = det_ops.batched_nms_keep(boxes, scores, groups, 0.3, 1000, class_agnostic=True)
    assert len(agnostic) < len(ref)  # across groups more boxes overlap


@pytest.mark.parametrize('aligned', [True, False])
def test_roi_align_matches_mmcv_in_onnx(aligned, tmp_path):
    from mmcv.ops import roi_align
    gen = torch.Generator().manual_seed(2)
    feat = torch.randn(1, 8, 25, 30, generator=gen)
    boxes = _random_boxes(40, gen, size=200.0)
    rois = torch.cat([torch.zeros(40, 1), boxes], 1)
    ref = roi_align(feat, rois, (7, 7), 1 / 8, 0, 'avg', aligned)
    mine = det_ops.roi_align(feat, boxes, 7, 1 / 8, 0, aligned)
    torch.testing.assert_close(mine, ref, rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        got, = _export_fn(lambda f, b: det_ops.roi_align(f, b, 7, 1 / 8, 0, aligned),
                          [feat, boxes], str(tmp_path / 'roi.onnx'), ['feat', 'boxes'])
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-5)


def test_paste_masks_matches_mmdet_grid_sample():
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    gen = torch.Generator().manual_seed(3)
    masks = torch.rand(6, 1, 28, 28, generator=gen)
    boxes = _random_boxes(6, gen, size=60.0) - 10  # some boxes leave the image
    boxes[0] = torch.tensor([5.0, 5.0, 5.0, 20.0])  # zero width: mmdet samples at 0
    ref, _ = _do_paste_mask(masks, boxes, 70, 90, skip_empty=False)
    got = det_ops.paste_masks(masks[:, 0], boxes, 70, 90)
    assert got.shape == (6, 70, 90)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- SSDLite configs
@pytest.mark.parametrize('config', SSD_CONFIGS, ids=lambda c: osp.basename(c)[:-3])
def test_ssdlite_configs_build_train_and_predict(config):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, config))
    pre = cfg.model.data_preprocessor
    assert list(pre.mean) == [0.0] * 3 and list(pre.std) == [255.0] * 3 and pre.bgr_to_rgb
    assert cfg.model.bbox_head.type == 'hybridvit.SSDHead'
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    arch = config.split('mobilevit-')[1].split('_')[0]
    assert cfg.model.backbone.arch == arch and arch in cfg.model.backbone.init_cfg.checkpoint
    model = _init(config)
    feats = model.backbone(torch.zeros(1, 3, 320, 320))
    assert [f.shape[1] for f in feats] == list(cfg.model.neck.in_channels)
    assert [320 // f.shape[-1] for f in feats] == [16, 32]
    # a training step on one image with one box, then predict
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    sample = DetDataSample(metainfo=dict(img_shape=(320, 320), ori_shape=(320, 320),
                                         scale_factor=(1.0, 1.0), img_id=0))
    sample.gt_instances = InstanceData(bboxes=torch.tensor([[40., 50., 200., 260.]]),
                                       labels=torch.tensor([3]))
    img = torch.from_numpy(read_resized(DEMO_IMAGE, (320, 320)).transpose(2, 0, 1).copy())
    model.train()  # batch 2: BatchNorm on the 1x1 last level needs more than one value
    data = model.data_preprocessor(dict(inputs=[img, img.flip(2)], data_samples=[
        sample, copy.deepcopy(sample)]), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert set(losses) == {'loss_cls', 'loss_bbox'}
    model.eval()
    res = predict_reference(model, read_resized(DEMO_IMAGE, (320, 320)))
    assert len(res['scores']) <= cfg.model.test_cfg.max_per_img


def test_ssdlite_mini_config_matches_the_generated_data():
    from mmengine.config import Config

    from hybridvit.datasets.generators import COCO_METAINFO
    cfg = Config.fromfile(osp.join(ROOT, SSD_MINI))
    assert cfg.model.bbox_head.num_classes == len(COCO_METAINFO['classes'])
    assert cfg.model.backbone.init_cfg is None
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg[loader].dataset
        assert ds.data_root == 'data/mini_coco/'
        assert tuple(ds.metainfo.classes) == tuple(COCO_METAINFO['classes'])
    assert cfg.test_evaluator.ann_file == 'data/mini_coco/annotations/instances_val2017.json'


# ---------------------------------------------------------------- the export tool
def _tool():
    spec = importlib.util.spec_from_file_location(
        'export_onnx_tool', osp.join(ROOT, 'tools/deploy/export_onnx.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_tool_exports_whole_ssdlite(tmp_path, capsys):
    out = tmp_path / 'ssd.onnx'
    _tool().main([osp.join(ROOT, SSD_XXS), 'none', str(out), '--shape', '320', '320'])
    text = capsys.readouterr().out
    assert 'ONNX Runtime vs PyTorch predict() on demo.jpg resized to 320x320' in text
    assert out.is_file() and non_standard_nodes(str(out)) == []
    assert 'dets' in text and 'labels' in text


@pytest.mark.parametrize('case', ['part', 'shape', 'arch'])
def test_export_tool_bad_input_exits_2_with_one_line(case, tmp_path):
    out = tmp_path / 'x.onnx'
    if case == 'part':  # a seg config has no 'neck' / whole-detector part
        argv, message = [osp.join(ROOT, SEG_CFG), 'none', str(out), '--part', 'neck'], "'neck'"
    elif case == 'shape':
        argv, message = [osp.join(ROOT, SSD_XXS), 'none', str(out), '--shape', '320', '330'], \
            '320 330'
    else:  # a Mask R-CNN checkpoint given to an SSDLite config
        ckpt = tmp_path / 'maskrcnn.pth'
        torch.save(dict(state_dict=_init(MASK_XXS).state_dict()), str(ckpt))
        argv, message = [osp.join(ROOT, SSD_XXS), str(ckpt), str(out)], 'maskrcnn.pth'
    proc = subprocess.run([sys.executable, osp.join(ROOT, 'tools/deploy/export_onnx.py')] + argv,
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    err = proc.stderr.strip()
    assert proc.returncode == 2, err[-2000:]
    assert len(err.splitlines()) == 1 and message in err, err
    assert err.startswith('export_onnx.py: error:')
    assert sorted(p.name for p in tmp_path.iterdir()) == (['maskrcnn.pth'] if case == 'arch'
                                                          else [])


def test_failed_check_deletes_the_file(tmp_path, monkeypatch):
    """A graph whose detections miss PyTorch's is not written."""
    from hybridvit.deploy import detector_onnx
    img = read_resized(DEMO_IMAGE, (320, 320))
    model = _fused(SSD_XXS, img)
    real = detector_onnx.match_detections

    def shifted(ref, got, *args, **kwargs):
        got = dict(got, boxes=got['boxes'] + 5.0)
        return real(ref, got, *args, **kwargs)

    monkeypatch.setattr(detector_onnx, 'match_detections', shifted)
    with pytest.raises(RuntimeError, match='differ from PyTorch predict'):
        detector_onnx.export_and_check(model, (320, 320), str(tmp_path / 'bad.onnx'), log=print)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- ONNX Runtime backend
def test_onnx_backend_draws_like_pytorch(tmp_path):
    """``OnnxDetector`` (the apis / demo backend) gives predict()'s detections on the original
    image."""
    from hybridvit.deploy.detector_onnx import OnnxDetector, export_and_check, letterbox_image
    from hybridvit.utils.image_io import read_image_bgr
    img = read_resized(DEMO_IMAGE, (320, 320))
    model = _fused(MASK_XXS, img)
    out = str(tmp_path / 'm.onnx')
    export_and_check(model, (320, 320), out, log=lambda *a: None)
    # demo.jpg (320x240): the test pipeline's 1333x800 keep-ratio resize is shrunk back to fit
    # the fixed 320x320 graph, the bottom 80 rows are padded with the mean pixel (0 here)
    full = read_image_bgr(DEMO_IMAGE)
    backend = OnnxDetector(out, model.cfg)
    image, scale, resized = letterbox_image(full, backend.scale, backend.keep_ratio,
                                            backend.fixed, backend.pad_pixel)
    assert full.shape[:2] == (240, 320) and resized == (240, 320) and scale == (1.0, 1.0)
    assert np.array_equal(image[:240], full) and not image[240:].any()
    res = backend(full).pred_instances
    assert res.masks.shape[1:] == (240, 320) and res.masks.dtype == torch.bool
    ref = predict_reference(model, image)
    boxes = ref['boxes'].copy()  # what the backend does: clip to the resized image (scale 1)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, 240)
    keep = boxes[:, 3] > boxes[:, 1]  # and drop those wholly in the padding
    assert 0 < keep.sum() <= len(keep)
    stats = match_detections(dict(boxes=boxes[keep], scores=ref['scores'][keep],
                                  labels=ref['labels'][keep], masks=ref['masks'][keep, :240]),
                             dict(boxes=res.bboxes.numpy(), scores=res.scores.numpy(),
                                  labels=res.labels.numpy(), masks=res.masks.numpy()))
    assert stats['ok'] and stats['n_ref'] > 0, stats


# ---------------------------------------------------------------- trained mini Mask R-CNN (slow)
def box_ap_pytorch_and_onnx(model, data_root, work):
    """COCO box AP on ``data_root``'s val split from ``predict()`` and from the exported graph
    (ONNX Runtime), with pycocotools; the images are 320x320 (the export shape)."""
    import json

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from hybridvit.deploy.detector_onnx import export_and_check, run_onnx_detector
    from hybridvit.deploy.onnx_export import ort_session
    from hybridvit.utils.image_io import read_image_bgr
    out = osp.join(work, 'mini.onnx')
    export_and_check(model, (320, 320), out)
    sess = ort_session(out, 2)
    coco = COCO(osp.join(data_root, 'annotations', 'instances_val2017.json'))
    results = {'pytorch': [], 'onnx': []}
    for img_id in coco.getImgIds():
        info = coco.loadImgs(img_id)[0]
        img = read_image_bgr(osp.join(data_root, 'val2017', info['file_name']))
        assert img.shape[:2] == (320, 320)
        for name, res in (('pytorch', predict_reference(model, img)),
                          ('onnx', run_onnx_detector(sess, img))):
            for box, score, label in zip(res['boxes'], res['scores'], res['labels']):
                x1, y1, x2, y2 = map(float, box)
                results[name].append(dict(image_id=img_id, bbox=[x1, y1, x2 - x1, y2 - y1],
                                          score=float(score),
                                          category_id=coco.getCatIds()[int(label)]))
    ap = {}
    for name, dets in results.items():
        path = osp.join(work, f'{name}.json')
        with open(path, 'w') as f:
            json.dump(dets, f)
        evaluator = COCOeval(coco, coco.loadRes(path), 'bbox')
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        ap[name] = float(evaluator.stats[0])
    return ap


@pytest.mark.slow
def test_mini_mask_rcnn_box_ap_from_onnx_matches_pytorch(tmp_path):
    """Train the mini recipe (~30 min on 2 cores), export it whole, evaluate box AP on the mini
    val split from ONNX Runtime outputs and from PyTorch predict(): within 0.005."""
    import subprocess
    import sys

    from hybridvit.datasets.generators import make_mini_coco
    from hybridvit.deploy import fold_output_norms
    from hybridvit.models.utils import reparameterize_model
    config = 'configs/det/mask-rcnn_fastvit-t8_fpn_1xb4-8e_mini-coco-320.py'
    data_root = str(tmp_path / 'mini_coco')
    make_mini_coco(data_root, quiet=True)  # 400 train / 80 val, 320x320
    ann = osp.join(data_root, 'annotations', 'instances_val2017.json')
    work = str(tmp_path / 'work')
    opts = [f'{k}.dataset.data_root={data_root}/'
            for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    opts += [f'val_evaluator.ann_file={ann}', 'train_cfg.val_interval=100']
    subprocess.run([sys.executable, 'tools/train.py', config, '--work-dir', work,
                    '--cfg-options', *opts], cwd=ROOT, check=True, timeout=90 * 60)
    model = reparameterize_model(_init(config, osp.join(work, 'epoch_8.pth')))
    fold_output_norms(model)
    ap = box_ap_pytorch_and_onnx(model, data_root, str(tmp_path))
    print(f'box AP: PyTorch {ap["pytorch"]:.4f}, ONNX Runtime {ap["onnx"]:.4f}')
    assert ap['pytorch'] > 0.1  # the recipe learned something
    assert abs(ap['onnx'] - ap['pytorch']) <= 0.005


def test_demo_runs_an_onnx_detector(tmp_path):
    """``demo/image_demo.py IMAGE CONFIG model.onnx``: ONNX Runtime, same drawing as PyTorch."""
    import subprocess
    import sys

    import cv2

    from hybridvit.apis import inference_model, init_model
    from hybridvit.deploy.detector_onnx import OnnxDetector, export_and_check
    img = read_resized(DEMO_IMAGE, (320, 320))
    model = _fused(SSD_XXS, img)
    onnx_file = str(tmp_path / 'ssd.onnx')
    export_and_check(model, (320, 320), onnx_file, log=lambda *a: None)
    # the API: one entry point, the backend from the checkpoint's suffix
    backend = init_model(osp.join(ROOT, SSD_XXS), onnx_file)
    assert isinstance(backend, OnnxDetector) and backend.dataset_meta['classes'][0] == 'person'
    res = inference_model(backend, img)
    ref = predict_reference(model, img)
    stats = match_detections(ref, dict(boxes=res.pred_instances.bboxes.numpy(),
                                       scores=res.pred_instances.scores.numpy(),
                                       labels=res.pred_instances.labels.numpy()))
    assert stats['ok'] and stats['n_ref'] > 0, stats
    image = str(tmp_path / 'img.png')  # lossless: the same pixels as img
    cv2.imwrite(image, img)
    out = str(tmp_path / 'vis.png')
    proc = subprocess.run([sys.executable, 'demo/image_demo.py', image, SSD_XXS, onnx_file,
                           '--out-file', out], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n = int((ref['scores'] >= 0.3).sum())
    assert f'{n} detections >= 0.3' in proc.stdout
    vis = cv2.imread(out)
    assert vis.shape == img.shape and np.abs(vis.astype(int) - img).max() > 50  # boxes drawn


def test_benchmark_tool_times_a_whole_detector(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        'benchmark_tool', osp.join(ROOT, 'tools/analysis/benchmark.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(['--whole-detector', osp.join(ROOT, SSD_XXS), '--det-shape', '320', '320',
               '--runs', '2', '--warmup', '0', '--threads', '1', '--out-dir', str(tmp_path)])
    row = [line for line in (tmp_path / 'whole_detector.md').read_text().splitlines()
           if line.startswith('| ssdlite_mobilevit-xxs')]
    assert len(row) == 1
    cells = [c.strip() for c in row[0].strip('|').split('|')]
    # random weights, score_thr 0: max_per_img (200) detections reach the output
    assert cells[1:3] == ['320x320', '200']
    eager, ort, ratio = float(cells[3]), float(cells[4]), float(cells[5].rstrip('x'))
    assert ratio == pytest.approx(ort / eager, abs=0.01)
    with pytest.raises(SystemExit):  # argparse-level check of the shape
        tool.parse_args(['--whole-detector', SSD_XXS, '--det-shape', '320'])
    from hybridvit.utils.cli import UserError
    with pytest.raises(UserError, match='320 330'):
        tool.parse_args(['--whole-detector', osp.join(ROOT, SSD_XXS), '--det-shape', '320',
                         '330'])
