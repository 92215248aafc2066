"""Tests of the bundled mini-dataset generators (layout, labels, polygons, determinism, readers)."""
import hashlib
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from hybridvit.datasets.generators import (CLASS_NAMES, COCO_METAINFO, SEG_METAINFO,
                                           compose_scene, load_backgrounds, make_demo_image,
                                           make_mini_ade, make_mini_coco, make_mini_voc)
from hybridvit.datasets.generators.mini_coco import mask_to_polygons
from hybridvit.datasets.generators.mini_seg import iter_scenes
from hybridvit.datasets.generators.shapes import OBJECT_CLASSES, _has_hole, scene_rng

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLI = osp.join(REPO, 'tools', 'dataset_converters', 'make_mini_datasets.py')
SEG_ARGS = dict(num_train=4, num_val=3, image_size=96, seed=3, quiet=True)
COCO_ARGS = dict(num_train=3, num_val=3, image_size=(112, 128), seed=5, quiet=True)


def _tree_hashes(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _rasterise(polygons, h, w):
    mask = np.zeros((h, w), np.uint8)
    import pycocotools.mask as mask_utils
    rles = mask_utils.frPyObjects(polygons, h, w)
    mask = mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    return mask


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


@pytest.fixture(scope='module')
def ade_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('gen') / 'mini_ade')
    make_mini_ade(root, **SEG_ARGS)
    return root


@pytest.fixture(scope='module')
def voc_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('gen') / 'mini_voc')
    make_mini_voc(root, num_aug=2, **SEG_ARGS)
    return root


@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('gen') / 'mini_coco')
    make_mini_coco(root, **COCO_ARGS)
    return root


def test_backgrounds_are_bundled_photographs():
    photos = load_backgrounds()
    assert len(photos) >= 10
    for photo in photos:
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
        assert max(photo.shape[:2]) <= 640 and min(photo.shape[:2]) >= 100
    colour = [bool((p[..., 0] != p[..., 1]).any()) for p in photos]
    assert any(colour) and not all(colour)  # grayscale photos were converted to 3 channels


@pytest.mark.parametrize('seed', range(4))
def test_scene_masks_are_visible_parts(seed):
    scene = compose_scene(scene_rng(seed, 9), (128, 160))
    assert scene.image.shape == (128, 160, 3) and scene.image.dtype == np.uint8
    assert 1 <= len(scene.masks) == len(scene.labels) <= 6
    union = np.zeros((128, 160), int)
    for mask, label in zip(scene.masks, scene.labels):
        assert 0 <= label < len(OBJECT_CLASSES)
        assert mask.sum() >= 48 and not _has_hole(mask)
        assert (scene.semantic[mask] == label + 1).all()
        union += mask
    assert union.max() <= 1  # occlusion: every pixel belongs to at most one visible mask
    assert ((scene.semantic > 0) == (union > 0)).all()


def test_scenes_have_occlusion_and_all_classes():
    labels, occluded = [], 0
    for i in range(30):
        scene = compose_scene(scene_rng(0, 9, i), (128, 128))
        labels += scene.labels
        for mask in scene.masks:  # a mask touching another mask -> one occludes the other
            others = np.any([m for m in scene.masks if m is not mask], axis=0) \
                if len(scene.masks) > 1 else np.zeros_like(mask)
            occluded += bool((cv2.dilate(mask.astype(np.uint8), np.ones((3, 3))) & others).any())
    assert set(labels) == set(range(len(OBJECT_CLASSES)))
    assert occluded >= 5


def test_scene_is_deterministic():
    a = compose_scene(scene_rng(1, 2, 3), (96, 96))
    b = compose_scene(scene_rng(1, 2, 3), (96, 96))
    c = compose_scene(scene_rng(2, 2, 3), (96, 96))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.semantic, b.semantic)
    assert not np.array_equal(a.image, c.image)


def test_mini_ade_layout_and_labels(ade_root):
    for folder, prefix, num in (('training', 'ADE_train', 4), ('validation', 'ADE_val', 3)):
        imgs = sorted(os.listdir(osp.join(ade_root, 'images', folder)))
        anns = sorted(os.listdir(osp.join(ade_root, 'annotations', folder)))
        assert imgs == [f'{prefix}_{i:08d}.jpg' for i in range(num)]
        assert anns == [f'{prefix}_{i:08d}.png' for i in range(num)]
        for name in anns:
            label = np.array(Image.open(osp.join(ade_root, 'annotations', folder, name)))
            assert label.shape == (96, 96) and label.dtype == np.uint8
            assert set(np.unique(label)) <= set(range(1, 7)) and 1 in label  # 0 never written
    meta = json.load(open(osp.join(ade_root, 'meta.json')))
    assert meta['args'] == dict(num_train=4, num_val=3, image_size=[96, 96], seed=3)
    assert meta['reduce_zero_label'] is True
    assert make_mini_ade(ade_root, **SEG_ARGS) == SEG_METAINFO
    assert SEG_METAINFO['classes'][0] == 'background' and len(SEG_METAINFO['palette']) == 6


def test_mini_voc_layout_and_labels(voc_root):
    voc = osp.join(voc_root, 'VOCdevkit', 'VOC2012')
    sets = osp.join(voc, 'ImageSets', 'Segmentation')
    read = lambda name: open(osp.join(sets, name)).read().split()  # noqa: E731
    train, val, aug = read('train.txt'), read('val.txt'), read('aug.txt')
    assert train == [f'train_{i:06d}' for i in range(4)] and len(val) == 3
    assert aug == train + ['aug_000000', 'aug_000001']
    for name in train + val:
        img = Image.open(osp.join(voc, 'SegmentationClass', name + '.png'))
        assert img.mode == 'P'
        label = np.array(img)
        assert set(np.unique(label)) <= set(range(6)) | {255} and 255 in label
        assert osp.isfile(osp.join(voc, 'JPEGImages', name + '.jpg'))
    for name in aug:
        plain = np.array(Image.open(osp.join(voc, 'SegmentationClassAug', name + '.png')))
        assert set(np.unique(plain)) <= set(range(6))
        if name in train:  # same labels, without the 255 outline
            label = np.array(Image.open(osp.join(voc, 'SegmentationClass', name + '.png')))
            keep = label != 255
            assert np.array_equal(label[keep], plain[keep]) and keep.mean() > 0.8


def test_mask_to_polygons_follows_pixel_edges():
    mask = np.zeros((30, 40), bool)
    mask[5:15, 8:20] = True
    mask[20:26, 30:33] = True
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 2
    xs = np.concatenate([np.array(p[0::2]) for p in polygons])
    assert xs.min() == pytest.approx(8, abs=0.2) and xs.max() == pytest.approx(33, abs=0.2)
    assert np.array_equal(_rasterise(polygons, 30, 40), mask)


def test_mini_coco_annotations_match_visible_masks(coco_root):
    h, w = 112, 128
    for split in ('train', 'val'):
        coco = json.load(open(osp.join(coco_root, 'annotations', f'instances_{split}2017.json')))
        assert [c['id'] for c in coco['categories']] == [1, 2, 3, 4, 5]
        assert tuple(c['name'] for c in coco['categories']) == COCO_METAINFO['classes']
        assert [im['id'] for im in coco['images']] == [1, 2, 3]
        ann_ids = [a['id'] for a in coco['annotations']]
        assert ann_ids == list(range(1, len(ann_ids) + 1))
        scenes = dict(iter_scenes('coco', split, 3, (h, w), 5, 10, True))
        for image in coco['images']:
            assert image['height'] == h and image['width'] == w
            assert osp.isfile(osp.join(coco_root, f'{split}2017', image['file_name']))
            anns = [a for a in coco['annotations'] if a['image_id'] == image['id']]
            scene = scenes[image['id'] - 1]
            assert len(anns) == len(scene.masks)  # nothing is fully occluded
            for ann, mask, label in zip(anns, scene.masks, scene.labels):
                assert ann['iscrowd'] == 0 and ann['category_id'] == label + 1
                assert ann['area'] == mask.sum()
                ys, xs = np.nonzero(mask)
                assert ann['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                       ys.max() - ys.min() + 1]
                assert _iou(_rasterise(ann['segmentation'], h, w), mask) > 0.9


def test_same_seed_same_bytes(tmp_path, ade_root):
    again = str(tmp_path / 'again')
    make_mini_ade(again, **SEG_ARGS)
    assert _tree_hashes(again) == _tree_hashes(ade_root)
    other = str(tmp_path / 'other')
    make_mini_ade(other, **dict(SEG_ARGS, seed=4))
    assert _tree_hashes(other)['images/training/ADE_train_00000000.jpg'] != \
        _tree_hashes(ade_root)['images/training/ADE_train_00000000.jpg']


def test_coco_same_seed_same_bytes(tmp_path, coco_root):
    again = str(tmp_path / 'again')
    make_mini_coco(again, **COCO_ARGS)
    assert _tree_hashes(again) == _tree_hashes(coco_root)


def test_idempotent_skip_regenerate_and_refuse(tmp_path, capsys):
    root = str(tmp_path / 'ade')
    args = dict(SEG_ARGS, num_train=2, num_val=1, image_size=64)
    make_mini_ade(root, **args)
    before = {p: os.stat(osp.join(root, p)).st_mtime_ns for p in _tree_hashes(root)}
    make_mini_ade(root, **dict(args, quiet=False))
    assert 'skipped' in capsys.readouterr().out
    assert {p: os.stat(osp.join(root, p)).st_mtime_ns for p in _tree_hashes(root)} == before
    # ours with other arguments: regenerated in place; a stale .tmp of ours is cleaned up
    os.makedirs(root + '.tmp')
    open(osp.join(root + '.tmp', '.hybridvit_incomplete'), 'w').close()
    make_mini_ade(root, **dict(args, num_train=3))
    assert len(os.listdir(osp.join(root, 'images', 'training'))) == 3
    assert not osp.exists(root + '.tmp') and not osp.exists(root + '.old')
    # somebody else's directory / a file: refused, untouched
    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    (foreign / 'precious.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='not written by'):
        make_mini_ade(str(foreign), **args)
    assert (foreign / 'precious.txt').read_text() == 'keep me'
    (tmp_path / 'afile').write_text('x')
    with pytest.raises(FileExistsError, match='not a directory'):
        make_mini_coco(str(tmp_path / 'afile'), **COCO_ARGS)


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    from hybridvit.datasets.generators import mini_seg

    def boom(*args, **kwargs):
        raise RuntimeError('disk full')
    monkeypatch.setattr(mini_seg, 'write_jpeg', boom)
    with pytest.raises(RuntimeError, match='disk full'):
        make_mini_ade(str(tmp_path / 'ade'), **SEG_ARGS)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('kwargs, match', [
    (dict(image_size=16), 'image_size'), (dict(image_size=(64, 'a')), 'image_size'),
    (dict(num_train=0), 'num_train'), (dict(seed=-1), 'seed'), (dict(num_val=1.5), 'num_val')])
def test_invalid_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_mini_ade(str(tmp_path / 'x'), **dict(SEG_ARGS, **kwargs))
    assert not osp.exists(tmp_path / 'x')


def test_demo_image(tmp_path):
    path = make_demo_image(tmp_path / 'demo' / 'demo.jpg')
    assert os.path.getsize(path) < 60 * 1024
    assert cv2.imread(path).shape == (240, 320, 3)


def _load_cli():
    spec = importlib.util.spec_from_file_location('make_mini_datasets', CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli(tmp_path, capsys):
    cli = _load_cli()
    out = str(tmp_path / 'data')
    assert cli.main(['all', '--out', out, '--num-train', '2', '--num-val', '1',
                     '--image-size', '64', '80', '--log-interval', '1']) == 0
    printed = capsys.readouterr().out
    assert '[mini_ade] train: 2/2 images' in printed and 'data_root=' in printed
    assert sorted(os.listdir(out)) == ['mini_ade', 'mini_coco', 'mini_voc']
    coco = json.load(open(osp.join(out, 'mini_coco', 'annotations', 'instances_val2017.json')))
    assert coco['images'][0]['height'] == 64 and coco['images'][0]['width'] == 80
    assert cli.main(['demo', '--out', str(tmp_path / 'd.jpg')]) == 0
    assert osp.isfile(tmp_path / 'd.jpg')
    assert cli.main(['ade', '--out', out, '--image-size', '1', '2', '3']) == 2
    assert cli.main(['coco', '--out', out, '--num-aug', '3']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 2 and err.startswith('error: --image-size')


def test_cli_subprocess_bytes_and_one_line_error(tmp_path):
    """A separate process writes the same bytes; a foreign directory is refused (exit 2)."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    cmd = [sys.executable, CLI, 'ade', '--num-train', '2', '--num-val', '1', '--image-size',
           '64', '--seed', '3']
    proc = subprocess.run(cmd + ['--out', str(tmp_path / 'a')], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert '[mini_ade] val: 1/1 images' in proc.stdout
    make_mini_ade(str(tmp_path / 'b' / 'mini_ade'), num_train=2, num_val=1, image_size=64,
                  seed=3, quiet=True)
    assert _tree_hashes(tmp_path / 'a' / 'mini_ade') == _tree_hashes(tmp_path / 'b' / 'mini_ade')
    foreign = tmp_path / 'c' / 'mini_ade'
    foreign.mkdir(parents=True)
    (foreign / 'x.txt').write_text('x')
    proc = subprocess.run(cmd + ['--out', str(tmp_path / 'c')], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith('error: ') and proc.stderr.count('\n') == 1
    assert 'not written by' in proc.stderr


# --------------------------------------------------------------------- OpenMMLab readers
def test_mmseg_reads_mini_ade(ade_root):
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import ADE20KDataset, BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations

    prefix = dict(img_path='images/validation', seg_map_path='annotations/validation')
    assert len(ADE20KDataset(data_root=ade_root, data_prefix=prefix)) == 3
    dataset = BaseSegDataset(data_root=ade_root, data_prefix=prefix, metainfo=SEG_METAINFO,
                             reduce_zero_label=True, img_suffix='.jpg', seg_map_suffix='.png',
                             pipeline=[LoadImageFromFile(), LoadAnnotations()])
    assert dataset.metainfo['classes'] == CLASS_NAMES and len(dataset) == 3
    seg = dataset[0]['gt_seg_map']
    assert seg.shape == (96, 96) and set(np.unique(seg)) <= set(range(6)) and 0 in seg


def test_mmseg_reads_mini_voc(voc_root):
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import BaseSegDataset, PascalVOCDataset
    from mmseg.datasets.transforms import LoadAnnotations

    root = osp.join(voc_root, 'VOCdevkit', 'VOC2012')
    voc = PascalVOCDataset(data_root=root, ann_file='ImageSets/Segmentation/train.txt',
                           data_prefix=dict(img_path='JPEGImages',
                                            seg_map_path='SegmentationClass'))
    assert len(voc) == 4
    for seg_dir, ann_file, num in (('SegmentationClass', 'val.txt', 3),
                                   ('SegmentationClassAug', 'aug.txt', 6)):
        dataset = BaseSegDataset(
            data_root=root, ann_file='ImageSets/Segmentation/' + ann_file,
            data_prefix=dict(img_path='JPEGImages', seg_map_path=seg_dir),
            metainfo=SEG_METAINFO, pipeline=[LoadImageFromFile(), LoadAnnotations()])
        assert len(dataset) == num
        seg = dataset[0]['gt_seg_map']
        assert set(np.unique(seg)) <= set(range(6)) | {255} and 0 in seg


def test_mmdet_reads_mini_coco(coco_root):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations

    dataset = CocoDataset(data_root=coco_root, ann_file='annotations/instances_val2017.json',
                          data_prefix=dict(img='val2017/'), metainfo=COCO_METAINFO,
                          pipeline=[LoadImageFromFile(),
                                    LoadAnnotations(with_bbox=True, with_mask=True)])
    assert len(dataset) == 3 and dataset.metainfo['classes'] == COCO_METAINFO['classes']
    coco = json.load(open(osp.join(coco_root, 'annotations', 'instances_val2017.json')))
    sample = dataset[0]
    anns = [a for a in coco['annotations'] if a['image_id'] == 1]
    boxes = sample['gt_bboxes'].tensor.numpy()
    assert len(boxes) == len(anns) and not sample['gt_ignore_flags'].any()
    assert sorted(sample['gt_bboxes_labels'].tolist()) == sorted(a['category_id'] - 1
                                                                for a in anns)
    masks = sample['gt_masks'].to_ndarray().astype(bool)  # (N, H, W)
    for box, mask in zip(boxes, masks):
        ys, xs = np.nonzero(mask)
        assert abs(xs.min() - box[0]) <= 1 and abs(xs.max() + 1 - box[2]) <= 1
