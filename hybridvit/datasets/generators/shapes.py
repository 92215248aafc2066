"""Textured objects pasted onto real photographs: the scenes of the bundled mini datasets.

Five object classes, each learnable from LOCAL appearance (a class-specific colour family and
texture) and from its SHAPE, with per-instance jitter of hue, saturation, brightness, texture
period / orientation, aspect ratio, scale and rotation:

=================  ==========  ===========================================  =========
class              shape       texture                                      hue (deg)
=================  ==========  ===========================================  =========
striped_ellipse    ellipse     saturated red-orange / near-black stripes    0-25
checkered_box      rectangle   blue / navy checkerboard                     205-230
dotted_triangle    triangle    bright green dots on dark green              110-145
ringed_star        5-pt star   concentric yellow / white rings              46-60
speckled_cross     plus sign   purple with fine + blotchy noise             268-300
=================  ==========  ===========================================  =========

Objects span 10-45% of the shorter image side (log-uniform), are rotated freely, may cast a soft
shadow, and later objects occlude earlier ones; the returned masks are the VISIBLE parts.
A placement is retried when it would hide more than 60% of an earlier object, leave it
smaller than ``min_area`` pixels, or punch a hole into its visible mask (COCO polygons cannot
express holes), so every instance stays recognisable and polygon-representable.

Written for hybridvit (no code taken from other generators); backgrounds come from
:mod:`hybridvit.datasets.generators.backgrounds`.
"""
import colorsys
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from hybridvit.utils.errors import UserError

from .backgrounds import load_backgrounds, random_background

__all__ = ['ObjectClass', 'OBJECT_CLASSES', 'CLASS_NAMES', 'SEG_PALETTE', 'Scene',
           'compose_scene', 'scene_rng', 'make_demo_image']


@dataclass(frozen=True)
class ObjectClass:
    """Appearance of one object class.

    Args:
        name: class name used in metainfo / COCO categories.
        shape: one of ``'ellipse'``, ``'box'``, ``'triangle'``, ``'star'``, ``'cross'``.
        texture: one of ``'stripes'``, ``'checker'``, ``'dots'``, ``'rings'``, ``'speckle'``.
        hue: (low, high) hue range in degrees of the dominant colour.
        palette: RGB colour used to draw this class in label visualisations.
    """
    name: str
    shape: str
    texture: str
    hue: Tuple[float, float]
    palette: Tuple[int, int, int]


OBJECT_CLASSES: Tuple[ObjectClass, ...] = (
    ObjectClass('striped_ellipse', 'ellipse', 'stripes', (0.0, 25.0), (230, 80, 30)),
    ObjectClass('checkered_box', 'box', 'checker', (205.0, 230.0), (40, 90, 220)),
    ObjectClass('dotted_triangle', 'triangle', 'dots', (110.0, 145.0), (60, 180, 60)),
    ObjectClass('ringed_star', 'star', 'rings', (46.0, 60.0), (240, 220, 60)),
    ObjectClass('speckled_cross', 'cross', 'speckle', (268.0, 300.0), (150, 60, 200)),
)
#: Semantic classes: index 0 is the (real, evaluated) background class.
CLASS_NAMES: Tuple[str, ...] = ('background',) + tuple(c.name for c in OBJECT_CLASSES)
SEG_PALETTE: Tuple[Tuple[int, int, int], ...] = ((0, 0, 0),) + tuple(
    c.palette for c in OBJECT_CLASSES)

# Sub-pixel precision of cv2.fillPoly (coordinates are multiplied by 2**_SHIFT).
_SHIFT = 4


@dataclass
class Scene:
    """One composed image with its annotations.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        semantic: ``(H, W)`` uint8; 0 = background, ``1 + i`` = ``OBJECT_CLASSES[i]``.
        masks: visible (occlusion-aware) ``(H, W)`` bool masks, in paste order.
        labels: 0-based index into ``OBJECT_CLASSES`` for each mask.
    """
    image: np.ndarray
    semantic: np.ndarray
    masks: List[np.ndarray] = field(default_factory=list)
    labels: List[int] = field(default_factory=list)


def scene_rng(seed: int, *keys: int) -> np.random.Generator:
    """Independent generator for one image: ``seed`` plus integer keys (dataset, split, index).

    Each image has its own stream, so an image does not change when the number of images
    in a split (or in another split) changes.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f'seed must be a non-negative int, got {seed!r}')
    return np.random.default_rng([int(seed), *[int(k) for k in keys]])


def _hsv(hue_deg: float, sat: float, val: float) -> np.ndarray:
    """HSV (hue in degrees) -> RGB float32 array of shape (3,) in [0, 1]."""
    return np.array(colorsys.hsv_to_rgb((hue_deg % 360.0) / 360.0, sat, val), np.float32)


def _unit_polygon(shape: str, rng: np.random.Generator) -> np.ndarray:
    """``(N, 2)`` polygon centred at 0 whose farthest vertex lies at radius 1."""
    if shape == 'ellipse':
        aspect = rng.uniform(0.5, 1.0)
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        pts = np.stack([np.cos(t), aspect * np.sin(t)], axis=1)
    elif shape == 'box':
        aspect = rng.uniform(0.4, 1.0)
        pts = np.array([[-1, -aspect], [1, -aspect], [1, aspect], [-1, aspect]], np.float64)
    elif shape == 'triangle':
        ang = np.deg2rad(90 + np.array([0, 120, 240]) + rng.uniform(-20, 20, 3))
        rad = rng.uniform(0.75, 1.0, 3)
        pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    elif shape == 'star':
        inner = rng.uniform(0.45, 0.6)
        ang = np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        pts = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    elif shape == 'cross':
        w = rng.uniform(0.25, 0.4)
        pts = np.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1], [-w, 1],
                        [-w, w], [-1, w], [-1, -w], [-w, -w]], np.float64)
    else:
        raise ValueError(f'unknown shape {shape!r}; expected ellipse/box/triangle/star/cross')
    return pts / np.linalg.norm(pts, axis=1).max()


def _texture(kind: str, hue_range: Tuple[float, float], rng: np.random.Generator,
             u: np.ndarray, v: np.ndarray, extent: float) -> np.ndarray:
    """Texture in object-local coordinates ``u, v`` (pixels, (h, w) each) -> (h, w, 3) RGB."""
    hue = rng.uniform(*hue_range)
    if kind == 'stripes':
        c1 = _hsv(hue, rng.uniform(0.85, 1.0), rng.uniform(0.85, 1.0))
        c2 = _hsv(hue + rng.uniform(0, 15), rng.uniform(0.7, 1.0), rng.uniform(0.12, 0.3))
        period = max(5.0, rng.uniform(0.15, 0.3) * extent)
        t = np.clip(0.5 + 3 * np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi)), 0, 1)
    elif kind == 'checker':
        c1 = _hsv(hue, rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0))
        c2 = _hsv(hue + rng.uniform(-8, 8), rng.uniform(0.6, 0.9), rng.uniform(0.28, 0.45))
        period = max(5.0, rng.uniform(0.18, 0.32) * extent)
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif kind == 'dots':
        c1 = _hsv(hue + rng.uniform(0, 10), rng.uniform(0.5, 0.8), rng.uniform(0.9, 1.0))
        c2 = _hsv(hue, rng.uniform(0.7, 1.0), rng.uniform(0.3, 0.5))
        period = max(6.0, rng.uniform(0.18, 0.3) * extent)
        du = (u / period) % 1.0 - 0.5
        dv = (v / period) % 1.0 - 0.5
        dist = np.sqrt(du * du + dv * dv) * period  # pixels to the nearest dot centre
        t = np.clip(0.3 * period - dist + 0.5, 0, 1)  # anti-aliased disc of radius 0.3 period
    elif kind == 'rings':
        c1 = _hsv(hue, rng.uniform(0.8, 1.0), rng.uniform(0.9, 1.0))
        c2 = _hsv(hue, rng.uniform(0.0, 0.12), rng.uniform(0.92, 1.0))
        period = max(5.0, rng.uniform(0.15, 0.25) * extent)
        off = rng.uniform(-0.1, 0.1, 2) * extent
        rho = np.sqrt((u - off[0]) ** 2 + (v - off[1]) ** 2)
        t = np.clip(0.5 + 3 * np.sin(2 * np.pi * rho / period), 0, 1)
    elif kind == 'speckle':
        base = _hsv(hue, rng.uniform(0.6, 0.9), rng.uniform(0.55, 0.85))
        h, w = u.shape
        fine = rng.normal(0, 0.07, (h, w)).astype(np.float32)
        grid = rng.normal(0, 0.12, (max(2, h // 8), max(2, w // 8))).astype(np.float32)
        coarse = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)  # (h, w) blotches
        return base[None, None, :] * (1 + fine + coarse)[..., None]
    else:
        raise ValueError(f'unknown texture {kind!r}; expected stripes/checker/dots/rings/speckle')
    t = t.astype(np.float32)[..., None]  # (h, w, 1)
    return c1[None, None, :] * t + c2[None, None, :] * (1 - t)


def _render(cls: ObjectClass, rng: np.random.Generator, size: Tuple[int, int],
            centre: Tuple[float, float], extent: float):
    """Rasterise one randomly rotated object of diameter ``extent`` -> ``(H, W)`` bool mask."""
    h, w = size
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = _unit_polygon(cls.shape, rng) @ rot.T * (extent / 2) + np.asarray(centre)  # (N, 2)
    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, [np.round(pts * (1 << _SHIFT)).astype(np.int32)], 1,
                 lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas.astype(bool)


def _has_hole(mask: np.ndarray) -> bool:
    """Whether a binary mask has an interior hole (a contour with a parent)."""
    _, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP,
                                    cv2.CHAIN_APPROX_SIMPLE)[-2:]
    return hierarchy is not None and bool((hierarchy[0][:, 3] >= 0).any())


def _keeps_earlier_visible(inst: np.ndarray, mask: np.ndarray, full_areas: Sequence[int],
                           min_visible: float, min_area: int) -> bool:
    """Whether pasting ``mask`` over the instance map ``inst`` leaves every earlier object
    with enough visible area and without holes."""
    for k in np.unique(inst[mask]):
        if k == 0:
            continue
        visible = (inst == k) & ~mask
        if visible.sum() < max(min_area, min_visible * full_areas[k - 1]) or _has_hole(visible):
            return False
    return True


def _paste(image: np.ndarray, mask: np.ndarray, cls: ObjectClass, rng: np.random.Generator,
           centre: Tuple[float, float], extent: float) -> None:
    """Composite a textured, shaded object (and optional shadow) into float ``image`` in place."""
    h, w = mask.shape
    if rng.random() < 0.5:  # soft drop shadow on whatever lies below
        shift = rng.uniform(0.02, 0.06, 2) * extent * rng.choice([-1, 1], 2)
        mat = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float32)
        shadow = cv2.warpAffine(mask.astype(np.float32), mat, (w, h))
        shadow = cv2.GaussianBlur(shadow, (0, 0), max(1.0, 0.04 * extent))
        image *= (1 - rng.uniform(0.25, 0.5) * shadow)[..., None]
    ys, xs = np.nonzero(mask)
    y0, y1 = max(0, ys.min() - 2), min(h, ys.max() + 3)
    x0, x1 = max(0, xs.min() - 2), min(w, xs.max() + 3)
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)  # (bh, bw) each
    phi = rng.uniform(0, 2 * np.pi)  # texture orientation
    dx, dy = gx - centre[0], gy - centre[1]
    u = dx * np.cos(phi) + dy * np.sin(phi)
    v = -dx * np.sin(phi) + dy * np.cos(phi)
    tex = _texture(cls.texture, cls.hue, rng, u, v, extent)  # (bh, bw, 3)
    # directional lighting: brightness ramps by up to +-30% across the object
    light_dir = rng.uniform(0, 2 * np.pi)
    ramp = (dx * np.cos(light_dir) + dy * np.sin(light_dir)) / (extent / 2)
    tex = np.clip(tex * (1 + rng.uniform(0, 0.3) * ramp)[..., None], 0, 1) * 255
    alpha = cv2.GaussianBlur(mask[y0:y1, x0:x1].astype(np.float32), (3, 3), 0.6)[..., None]
    region = image[y0:y1, x0:x1]
    image[y0:y1, x0:x1] = alpha * tex + (1 - alpha) * region


def compose_scene(rng: np.random.Generator, size: Tuple[int, int],
                  photos: Optional[Sequence[np.ndarray]] = None,
                  num_objects: Tuple[int, int] = (2, 6),
                  scale_range: Tuple[float, float] = (0.1, 0.45),
                  min_visible: float = 0.4, min_area: int = 48, max_tries: int = 25) -> Scene:
    """Compose one image: a photograph background with occluding textured objects.

    Args:
        rng: the only source of randomness (same state -> same scene, bit for bit).
        size: ``(height, width)`` of the image.
        photos: background photographs; default :func:`load_backgrounds`.
        num_objects: inclusive (min, max) number of objects to try to place.
        scale_range: object diameter as a fraction of the shorter image side (log-uniform).
        min_visible: an earlier object must keep at least this fraction of its area visible.
        min_area: minimum visible area in pixels of every object.
        max_tries: placement attempts per object before it is skipped.

    Returns:
        A :class:`Scene` with at least one object.

    Raises:
        ValueError: for invalid arguments; :class:`UserError` (a ``ValueError``) for an image
            smaller than 32x32 or when not even one object fits.
    """
    h, w = int(size[0]), int(size[1])
    if h < 32 or w < 32:
        raise UserError(f'image size must be at least 32x32, got {size!r}')
    if not 0 < scale_range[0] <= scale_range[1] <= 1:
        raise ValueError(f'scale_range must satisfy 0 < low <= high <= 1, got {scale_range!r}')
    if not 1 <= num_objects[0] <= num_objects[1]:
        raise ValueError(f'num_objects must satisfy 1 <= min <= max, got {num_objects!r}')
    photos = load_backgrounds() if photos is None else photos
    image = random_background(rng, photos, (h, w)).astype(np.float32)
    inst = np.zeros((h, w), np.int16)  # 0 = no object, k + 1 = k-th placed object
    full_areas: List[int] = []
    centres: List[Tuple[float, float]] = []
    labels: List[int] = []
    side = min(h, w)
    log_lo, log_hi = np.log(scale_range[0]), np.log(scale_range[1])
    for _ in range(int(rng.integers(num_objects[0], num_objects[1] + 1))):
        label = int(rng.integers(len(OBJECT_CLASSES)))
        cls = OBJECT_CLASSES[label]
        for _ in range(max_tries):
            extent = float(np.exp(rng.uniform(log_lo, log_hi))) * side
            if centres and rng.random() < 0.35:  # provoke overlap: next to an earlier object
                cx, cy = centres[int(rng.integers(len(centres)))]
                centre = (float(np.clip(cx + rng.normal(0, 0.4) * extent, 0, w - 1)),
                          float(np.clip(cy + rng.normal(0, 0.4) * extent, 0, h - 1)))
            else:
                centre = (float(rng.uniform(0.05, 0.95) * w), float(rng.uniform(0.05, 0.95) * h))
            mask = _render(cls, rng, (h, w), centre, extent)
            if mask.sum() >= min_area and _keeps_earlier_visible(inst, mask, full_areas,
                                                                 min_visible, min_area):
                _paste(image, mask, cls, rng, centre, extent)
                inst[mask] = len(labels) + 1
                full_areas.append(int(mask.sum()))
                centres.append(centre)
                labels.append(label)
                break
    if not labels:
        raise UserError(f'no object of at least min_area={min_area} px fits a {h}x{w} image '
                        f'with scale_range={scale_range}; use a larger image or scale')
    if rng.random() < 0.2:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 0.8))
    image += rng.normal(0, rng.uniform(0, 4), image.shape).astype(np.float32)  # sensor noise
    image = np.clip(image, 0, 255).round().astype(np.uint8)
    semantic = np.zeros((h, w), np.uint8)
    masks = []
    for k, label in enumerate(labels):
        m = inst == k + 1
        semantic[m] = label + 1
        masks.append(m)
    return Scene(image=image, semantic=semantic, masks=masks, labels=labels)


def make_demo_image(path: Union[str, os.PathLike] = 'demo/demo.jpg',
                    size: Tuple[int, int] = (240, 320), seed: int = 7, quality: int = 90) -> str:
    """Write one composed scene as a JPEG (the sample input of ``demo/image_demo.py``).

    Args:
        path: output file (its folder is created).
        size: ``(height, width)``.
        seed: scene seed.
        quality: JPEG quality (90 keeps a 320x240 image well under 60 KB).

    Returns:
        The path written.
    """
    rng = scene_rng(seed, 4)
    scene = compose_scene(rng, size, num_objects=(4, 6), scale_range=(0.15, 0.45))
    path = os.fspath(path)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise OSError(f'could not write {path}')
    return path
