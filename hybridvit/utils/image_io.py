"""Robust image reading for the demo, the API and dataset checks.

Grayscale, RGBA, palette and 16-bit images are converted to 8-bit 3-channel BGR (what OpenMMLab
pipelines expect); unreadable, truncated or empty files raise :class:`UserError` naming the file.
"""
import os.path as osp

import cv2
import numpy as np

from .cli import UserError

__all__ = ['read_image_bgr', 'to_bgr_uint8', 'check_image_file']


def to_bgr_uint8(img: np.ndarray, source: str = 'image') -> np.ndarray:
    """Convert any decoded image array to HxWx3 uint8 BGR."""
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype in (np.float32, np.float64):
        scale = 255.0 if img.max() <= 1.0 else 1.0
        img = np.clip(img * scale, 0, 255).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise UserError(f'{source}: unsupported pixel type {img.dtype} (expected 8/16-bit)')
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return img
    raise UserError(f'{source}: unsupported image shape {img.shape} (expected HxW, HxWx3 or HxWx4)')


def check_image_file(path: str) -> bytes:
    """Return the file's bytes after checking it exists and is not an obviously truncated JPEG/PNG."""
    if not osp.isfile(path):
        raise UserError(f'image not found: {path}')
    with open(path, 'rb') as f:
        data = f.read()
    if not data:
        raise UserError(f'image file is empty: {path}')
    if data[:2] == b'\xff\xd8' and b'\xff\xd9' not in data[-1024:]:
        raise UserError(f'image file is truncated (JPEG without end marker): {path}')
    if data[:8] == b'\x89PNG\r\n\x1a\n' and b'IEND' not in data[-64:]:
        raise UserError(f'image file is truncated (PNG without IEND chunk): {path}')
    return data


def read_image_bgr(path: str) -> np.ndarray:
    """Read ``path`` as HxWx3 uint8 BGR, or raise :class:`UserError` naming the file."""
    data = check_image_file(path)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise UserError(f'cannot decode image {path}: not an image file or corrupt')
    return to_bgr_uint8(img, source=path)
