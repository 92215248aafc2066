"""Data transforms for 3D hand mesh regression that keep 2D and 3D labels consistent.

Written for FreiHAND (Zimmermann et al., ICCV 2019, https://arxiv.org/abs/1909.04349) style
samples: a pinhole camera ``K`` (3, 3), camera-frame joints ``joints_3d`` (21, 3) / vertices
``verts_3d`` (V, 3) in metres, and pixel keypoints ``keypoints_2d`` (21, 2).

Geometry conventions:

* crops and resizes are 2D affine maps ``A`` of the image: ``K <- A @ K``, keypoints ``<- A``;
  3D labels stay unchanged;
* an in-plane rotation by ``angle`` rotates the 3D labels about the camera z axis (``R_z``) and
  warps the image with ``H = K @ R_z @ K^-1``, an affine map because ``R_z`` keeps depth. So
  projecting the rotated 3D points with the unchanged ``K`` gives exactly the warped keypoints,
  also for ``fx != fy``. For ``fx == fy`` it is a rotation of the image about the principal point.

Transforms are plain callables on the results dict (registered in ``hybridvit.registry.
TRANSFORMS``), so they do not depend on mmcv.
"""
import math
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmengine.fileio import get
from mmengine.structures import BaseDataElement

from hybridvit.registry import TRANSFORMS
from hybridvit.utils.errors import UserError


def to_bgr_uint8(img: np.ndarray) -> np.ndarray:
    """Convert a decoded image (gray, gray+alpha, BGR, BGRA; uint8 / uint16 / float) to BGR uint8.

    16-bit images are scaled by 255/65535, float images in [0, 1] by 255 (others are clipped to
    0..255); alpha channels are dropped.
    """
    img = np.asarray(img)
    if img.dtype == np.uint16:
        img = np.round(img.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    elif img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif np.issubdtype(img.dtype, np.floating):
        scale = 255.0 if img.size and float(np.nanmax(img)) <= 1.0 else 1.0
        img = np.clip(np.round(np.nan_to_num(img) * scale), 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 2, 3, 4):
        raise UserError(f'unsupported image shape {img.shape}: expected (H, W) or (H, W, C) '
                        'with C in 1..4')
    if img.shape[2] in (1, 2):  # gray or gray + alpha
        img = np.repeat(img[..., :1], 3, axis=2)
    elif img.shape[2] == 4:  # BGRA
        img = img[..., :3]
    return np.ascontiguousarray(img)


def _apply_affine(points: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (P, 2) points."""
    return (points @ mat[:, :2].T + mat[:, 2]).astype(np.float32)


def _affine_3x3(mat: np.ndarray) -> np.ndarray:
    return np.vstack([mat, [0.0, 0.0, 1.0]])


def _warp(results: dict, mat: np.ndarray, out_size: Tuple[int, int], border_value) -> None:
    """Warp the image and keypoints with a 2x3 affine ``mat``; out_size is (w, h)."""
    results['img'] = cv2.warpAffine(results['img'], mat.astype(np.float64), out_size,
                                    flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                    borderValue=border_value)
    if 'keypoints_2d' in results:
        results['keypoints_2d'] = _apply_affine(np.asarray(results['keypoints_2d']), mat)
    results['img_shape'] = results['img'].shape[:2]


@TRANSFORMS.register_module()
class LoadHandImage:
    """Load ``results['img_path']`` as a 3-channel uint8 BGR image.

    Gray, gray+alpha, RGBA and 16-bit files are converted (see :func:`to_bgr_uint8`).

    Args:
        backend_args (dict, optional): mmengine file backend arguments.
    """

    def __init__(self, backend_args: Optional[dict] = None) -> None:
        self.backend_args = backend_args

    def __call__(self, results: dict) -> dict:
        path = results['img_path']
        try:
            buf = get(path, backend_args=self.backend_args)
        except FileNotFoundError:
            raise FileNotFoundError(f'image not found: {path}') from None
        img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise UserError(f'could not decode image {path}')
        img = to_bgr_uint8(img)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(backend_args={self.backend_args})'


@TRANSFORMS.register_module()
class HandRandomRotate:
    """In-plane rotation consistent in 2D and 3D (see the module docstring).

    Args:
        max_angle (float): angle drawn uniformly from [-max_angle, max_angle] degrees.
        prob (float): probability to rotate. Defaults to 1.0.
        border_value (int | Sequence[int]): fill value outside the image. Defaults to 0.
    """

    def __init__(self, max_angle: float = 30.0, prob: float = 1.0, border_value=0) -> None:
        if max_angle < 0 or not 0.0 <= prob <= 1.0:
            raise UserError(f'need max_angle >= 0 and 0 <= prob <= 1, got max_angle='
                            f'{max_angle}, prob={prob}')
        self.max_angle = max_angle
        self.prob = prob
        self.border_value = border_value

    @staticmethod
    def rotate(results: dict, angle_deg: float, border_value=0) -> dict:
        """Rotate by ``angle_deg`` (counter-clockwise in the image when fx == fy, y down)."""
        theta = math.radians(angle_deg)
        c, s = math.cos(theta), math.sin(theta)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        K = np.asarray(results['K'], dtype=np.float64)
        hom = K @ rot @ np.linalg.inv(K)  # (3, 3), last row (0, 0, 1)
        h, w = results['img'].shape[:2]
        _warp(results, hom[:2], (w, h), border_value)
        for key in ('joints_3d', 'verts_3d'):
            if key in results:
                results[key] = (np.asarray(results[key], np.float64) @ rot.T).astype(np.float32)
        results['rotation'] = float(angle_deg) + float(results.get('rotation', 0.0))
        return results

    def __call__(self, results: dict) -> dict:
        if self.max_angle == 0 or np.random.rand() >= self.prob:
            return results
        angle = np.random.uniform(-self.max_angle, self.max_angle)
        return self.rotate(results, angle, self.border_value)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(max_angle={self.max_angle}, prob={self.prob})'


@TRANSFORMS.register_module()
class HandRotate:
    """Fixed in-plane rotation, consistent in 2D and 3D: the views of rotation test-time
    augmentation (:class:`~hybridvit.models.estimators.HandMeshTTAModel`).

    Args:
        angle (float): degrees, counter-clockwise in the image when fx == fy (y down). A
            multiple of 360 leaves the image untouched (only ``rotation`` is recorded).
        border_value (int | Sequence[int]): fill value outside the image. Defaults to 0.
    """

    def __init__(self, angle: float, border_value=0) -> None:
        self.angle = float(angle)
        self.border_value = border_value

    def __call__(self, results: dict) -> dict:
        if self.angle % 360 == 0:
            results['rotation'] = float(results.get('rotation', 0.0))
            return results
        return HandRandomRotate.rotate(results, self.angle, self.border_value)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(angle={self.angle})'


@TRANSFORMS.register_module()
class HandCropResize:
    """Square crop (optionally random scale / shift) resized to ``out_size``; updates ``K``.

    Args:
        out_size (int): output side in pixels.
        center_mode (str): ``'image'`` (box = whole image, deterministic resize) or
            ``'keypoints'`` (box around the 2D keypoints times ``padding``).
        padding (float): box side / keypoint-box side in ``'keypoints'`` mode. Defaults to 1.5.
        scale_range (tuple[float, float]): random factor on the box side. Defaults to (1, 1).
        shift (float): random shift of the box centre, fraction of the box side. Defaults to 0.
        border_value (int | Sequence[int]): fill value outside the image. Defaults to 0.
    """

    def __init__(self, out_size: int, center_mode: str = 'image', padding: float = 1.5,
                 scale_range: Tuple[float, float] = (1.0, 1.0), shift: float = 0.0,
                 border_value=0) -> None:
        if center_mode not in ('image', 'keypoints'):
            raise UserError(f"center_mode must be 'image' or 'keypoints', got {center_mode!r}")
        if int(out_size) != out_size or out_size <= 0:
            raise UserError(f'out_size must be a positive integer, got {out_size!r}')
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise UserError(f'scale_range must be (low, high) with 0 < low <= high, got '
                            f'{scale_range}')
        if padding <= 0 or shift < 0:
            raise UserError(f'need padding > 0 and shift >= 0, got {padding}, {shift}')
        self.out_size = int(out_size)
        self.center_mode = center_mode
        self.padding = padding
        self.scale_range = tuple(scale_range)
        self.shift = shift
        self.border_value = border_value

    def _box(self, results: dict) -> Tuple[np.ndarray, float]:
        h, w = results['img'].shape[:2]
        if self.center_mode == 'keypoints' and 'keypoints_2d' in results:
            kp = np.asarray(results['keypoints_2d'], dtype=np.float64)
            lo, hi = kp.min(0), kp.max(0)
            centre = (lo + hi) / 2
            side = max(float((hi - lo).max()) * self.padding, 8.0)
        else:
            centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
            side = float(max(h, w))
        side *= np.random.uniform(*self.scale_range) if self.scale_range[0] < self.scale_range[
            1] else self.scale_range[0]
        if self.shift > 0:
            centre = centre + np.random.uniform(-self.shift, self.shift, size=2) * side
        return centre, side

    def __call__(self, results: dict) -> dict:
        centre, side = self._box(results)
        s = self.out_size / side
        out_c = (self.out_size - 1) / 2.0
        mat = np.array([[s, 0.0, out_c - s * centre[0]], [0.0, s, out_c - s * centre[1]]])
        _warp(results, mat, (self.out_size, self.out_size), self.border_value)
        results['K'] = (_affine_3x3(mat) @ np.asarray(results['K'], np.float64)).astype(
            np.float32)
        results['crop_affine'] = mat.astype(np.float32)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(out_size={self.out_size}, center_mode='
                f'{self.center_mode!r}, scale_range={self.scale_range}, shift={self.shift})')


@TRANSFORMS.register_module()
class HandColorJitter:
    """Random brightness / contrast / saturation / hue change (labels unchanged).

    Args:
        brightness (float): factor drawn from [1 - b, 1 + b]. Defaults to 0.3.
        contrast (float): factor drawn from [1 - c, 1 + c]. Defaults to 0.3.
        saturation (float): factor drawn from [1 - s, 1 + s]. Defaults to 0.3.
        hue (float): shift drawn from [-h, h] of a full turn (<= 0.5). Defaults to 0.02.
        prob (float): probability to apply. Defaults to 1.0.
    """

    def __init__(self, brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3,
                 hue: float = 0.02, prob: float = 1.0) -> None:
        for name, v in (('brightness', brightness), ('contrast', contrast),
                        ('saturation', saturation)):
            if not 0 <= v <= 1:
                raise UserError(f'{name} must be in [0, 1], got {v}')
        if not 0 <= hue <= 0.5:
            raise UserError(f'hue must be in [0, 0.5], got {hue}')
        self.brightness, self.contrast, self.saturation, self.hue = (brightness, contrast,
                                                                     saturation, hue)
        self.prob = prob

    def __call__(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results['img'].astype(np.float32)
        b = np.random.uniform(1 - self.brightness, 1 + self.brightness)
        c = np.random.uniform(1 - self.contrast, 1 + self.contrast)
        s = np.random.uniform(1 - self.saturation, 1 + self.saturation)
        h = np.random.uniform(-self.hue, self.hue)
        img = img * b
        img = (img - img.mean()) * c + img.mean()
        gray = img @ np.array([0.114, 0.587, 0.299], np.float32)  # BGR luma, (H, W)
        img = (img - gray[..., None]) * s + gray[..., None]
        img = np.clip(img, 0, 255).astype(np.uint8)
        if h != 0:
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)  # uint8 hue in [0, 180)
            hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(h * 180))) % 180).astype(
                np.uint8)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        results['img'] = img
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(brightness={self.brightness}, contrast='
                f'{self.contrast}, saturation={self.saturation}, hue={self.hue})')


@TRANSFORMS.register_module()
class PackHandMeshInputs:
    """Pack a hand sample into ``inputs`` (CHW uint8 tensor) and a ``BaseDataElement``.

    Data fields (torch float32): ``K`` (3, 3), ``gt_keypoints_2d`` (21, 2) pixels of the packed
    image, ``gt_root`` (3,) camera-frame root joint, ``root_depth`` (), ``gt_joints`` (21, 3)
    and ``gt_verts`` (V, 3) root-relative in metres, ``scale`` (), ``gt_mano`` (61,). Fields
    whose source is missing (e.g. the unlabelled evaluation set) are left out.

    Args:
        root_index (int): joint used as root. Defaults to 0 (wrist).
        meta_keys (Sequence[str]): results keys copied into the metainfo.
    """

    def __init__(self, root_index: int = 0,
                 meta_keys: Sequence[str] = ('img_path', 'sample_idx', 'ann_idx', 'image_id',
                                             'version', 'img_shape', 'ori_shape', 'rotation',
                                             'crop_affine')) -> None:
        self.root_index = root_index
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: dict) -> dict:
        img = results['img']
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise UserError(f'PackHandMeshInputs expects an (H, W, 3) uint8 image, got '
                            f'{img.shape} {img.dtype}')
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))  # (3, H, W)

        def t(x):
            return torch.as_tensor(np.asarray(x, dtype=np.float32))

        fields = dict(K=t(results['K']), scale=t(results.get('scale', 0.0)))
        if 'keypoints_2d' in results:
            fields['gt_keypoints_2d'] = t(results['keypoints_2d'])
        if 'joints_3d' in results:
            joints = np.asarray(results['joints_3d'], dtype=np.float32)
            root = joints[self.root_index]
            fields['gt_root'] = t(root)
            fields['root_depth'] = t(root[2])
            fields['gt_joints'] = t(joints - root)
            if 'verts_3d' in results:
                fields['gt_verts'] = t(np.asarray(results['verts_3d'], np.float32) - root)
        if 'mano' in results:
            fields['gt_mano'] = t(results['mano'])
        metainfo = {k: results[k] for k in self.meta_keys if k in results}
        metainfo['img_shape'] = img.shape[:2]
        data_sample = BaseDataElement(metainfo=metainfo, **fields)
        return dict(inputs=inputs, data_samples=data_sample)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(root_index={self.root_index})'
