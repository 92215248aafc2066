"""Mini instance-segmentation set in the COCO 2017 format (for mmdet's ``CocoDataset``).

Same scenes as the mini segmentation sets (:mod:`hybridvit.datasets.generators.shapes`):
five textured object classes on real scikit-image photographs, with occlusion. Annotations
follow the COCO instances format (Lin et al., ECCV 2014, https://cocodataset.org/#format-data):
polygons traced from the VISIBLE (occlusion-aware) mask of every object, ``bbox`` =
``[x, y, w, h]`` of the visible mask, ``area`` = visible pixel count, ``iscrowd`` = 0, category
ids 1..5. Polygons are traced on a 4x nearest-upsampled mask so that they follow pixel edges
(not pixel centres): rasterising them with pycocotools gives back the mask (IoU ~0.99).
"""
import copy
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Union

import cv2
import numpy as np

from .mini_seg import check_generator_args, generate_atomically, iter_scenes, write_jpeg
from .shapes import OBJECT_CLASSES

__all__ = ['COCO_METAINFO', 'COCO_CATEGORIES', 'mask_to_polygons', 'make_mini_coco']

#: metainfo for mmdet's ``CocoDataset`` (``metainfo=COCO_METAINFO``).
COCO_METAINFO = dict(classes=tuple(c.name for c in OBJECT_CLASSES),
                     palette=[tuple(c.palette) for c in OBJECT_CLASSES])
COCO_CATEGORIES = [dict(id=i + 1, name=c.name, supercategory='shape')
                   for i, c in enumerate(OBJECT_CLASSES)]

_UPSAMPLE = 4  # contour tracing resolution (sub-pixel)


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.5) -> List[List[float]]:
    """Outer contours of a binary mask as COCO polygons ``[x1, y1, x2, y2, ...]``.

    Coordinates are continuous image coordinates (pixel ``(x, y)`` spans ``[x, x + 1]``), so
    the polygons enclose whole pixels. Holes cannot be expressed by COCO polygons and are
    ignored (the scene generator never produces them).

    Args:
        mask: ``(H, W)`` bool / 0-1 array.
        tolerance: Douglas-Peucker simplification tolerance in pixels.

    Returns:
        One polygon per connected component with at least 3 vertices.
    """
    up = cv2.resize(np.ascontiguousarray(mask, np.uint8), None, fx=_UPSAMPLE, fy=_UPSAMPLE,
                    interpolation=cv2.INTER_NEAREST)  # (H * 4, W * 4)
    contours = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[-2]
    polygons = []
    for contour in contours:
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, tolerance * _UPSAMPLE, True)
        pts = contour.reshape(-1, 2)  # (N, 2) x, y in upsampled pixels
        if len(pts) < 3:
            continue
        # sub-pixel index c covers [c, c + 1] / 4: its centre is (c + 0.5) / 4
        polygons.append([float(c) for c in ((pts + 0.5) / _UPSAMPLE).reshape(-1)])  # (2N,)
    return polygons


def _annotations(masks: Sequence[np.ndarray], labels: Sequence[int], image_id: int,
                 first_id: int) -> List[Dict]:
    anns = []
    for mask, label in zip(masks, labels):
        polygons = mask_to_polygons(mask)
        area = int(mask.sum())
        if not polygons or area == 0:  # fully occluded / degenerate: drop
            continue
        ys, xs = np.nonzero(mask)
        x0, y0 = int(xs.min()), int(ys.min())
        bbox = [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]
        anns.append(dict(id=first_id + len(anns), image_id=image_id, category_id=label + 1,
                         segmentation=polygons, area=float(area), bbox=bbox, iscrowd=0))
    return anns


def make_mini_coco(out_dir: str, num_train: int = 400, num_val: int = 80,
                   image_size: Union[int, Sequence[int]] = (320, 320), seed: int = 0,
                   log_interval: int = 50, quiet: bool = False) -> dict:
    """Generate a mini COCO-format instance-segmentation set.

    Layout::

        out_dir/train2017/%012d.jpg, out_dir/val2017/%012d.jpg   (JPEG quality 95)
        out_dir/annotations/instances_train2017.json, instances_val2017.json
        out_dir/meta.json

    Image and annotation ids start at 1 in each split.

    Args:
        out_dir: dataset root (e.g. ``data/mini_coco``; the config's ``data_root``).
        num_train, num_val, image_size, seed, log_interval, quiet: as in
            :func:`~hybridvit.datasets.generators.mini_seg.make_mini_ade`.

    Returns:
        The metainfo dict (``classes``, ``palette``) to pass to mmdet's ``CocoDataset``.
    """
    size, log_interval, args = check_generator_args(num_train, num_val, image_size, seed,
                                                    log_interval)

    def write(root: str) -> dict:
        os.makedirs(osp.join(root, 'annotations'))
        counts = {}
        for split in ('train', 'val'):
            img_dir = osp.join(root, f'{split}2017')
            os.makedirs(img_dir)
            images, annotations = [], []
            for i, scene in iter_scenes('coco', split, args[f'num_{split}'], size, seed,
                                        log_interval, quiet):
                image_id = i + 1
                file_name = f'{image_id:012d}.jpg'
                write_jpeg(osp.join(img_dir, file_name), scene.image)
                images.append(dict(id=image_id, file_name=file_name, height=size[0],
                                   width=size[1]))
                annotations += _annotations(scene.masks, scene.labels, image_id,
                                            len(annotations) + 1)
            coco = dict(
                info=dict(description='hybridvit mini COCO (synthetic objects on '
                                      'scikit-image photographs)', version='1.0'),
                licenses=[], images=images, annotations=annotations,
                categories=COCO_CATEGORIES)
            path = osp.join(root, 'annotations', f'instances_{split}2017.json')
            with open(path, 'w', encoding='utf-8') as f:
                json.dump(coco, f, separators=(',', ':'))
            counts[split] = dict(images=len(images), instances=len(annotations))
        return dict(metainfo=dict(classes=list(COCO_METAINFO['classes']),
                                  palette=[list(p) for p in COCO_METAINFO['palette']]),
                    counts=counts)

    generate_atomically(out_dir, 'mini_coco', args, write, quiet)
    return copy.deepcopy(COCO_METAINFO)
