"""Real-photograph backgrounds for the bundled mini datasets.

The photographs are the sample images that ship INSIDE the scikit-image wheel
(``skimage/data/*.png|jpg``: astronaut, coffee, chelsea, rocket, motorcycle, retina, Hubble deep
field, brick / grass / gravel textures, ...; see scikit-image's ``skimage/data/README.txt`` for
their licences, all public domain or CC0 / CC-BY). They are read straight from the installed
package folder with Pillow, so nothing is ever fetched from the network (``skimage.data.<name>()``
may try to download files that are not bundled; we never call it).
"""
import importlib.util
import os
import os.path as osp
from functools import lru_cache
from typing import List, Sequence, Tuple

import cv2
import numpy as np

__all__ = ['BACKGROUND_FILES', 'skimage_data_dir', 'load_backgrounds', 'random_background']

#: Bundled scikit-image photographs used as backgrounds (order matters for reproducibility).
#: Grayscale ones are converted to 3 channels. Left out on purpose: synthetic or binary images
#: (chessboard, horse silhouette, logo, colour wheel, phantom) that look like our objects.
BACKGROUND_FILES: Tuple[str, ...] = (
    'astronaut.png', 'brick.png', 'camera.png', 'chelsea.png', 'coffee.png', 'coins.png',
    'grass.png', 'gravel.png', 'hubble_deep_field.jpg', 'ihc.png', 'moon.png',
    'motorcycle_left.png', 'motorcycle_right.png', 'retina.jpg', 'rocket.jpg', 'page.png',
    'clock_motion.png', 'cell.png')

# Photographs are downscaled on load so that their longer side is at most this many pixels:
# crops for 256-320 px images never need more, and resizing smaller arrays is faster.
_MAX_SIDE = 640


def skimage_data_dir() -> str:
    """Folder of the sample images bundled in the installed scikit-image wheel.

    Raises:
        FileNotFoundError: if scikit-image is not installed or has no ``data`` folder.
    """
    spec = importlib.util.find_spec('skimage')  # locate without importing skimage
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            'scikit-image is not installed; the mini datasets use the photographs bundled in '
            'its wheel as backgrounds (pip install scikit-image)')
    data_dir = osp.join(list(spec.submodule_search_locations)[0], 'data')
    if not osp.isdir(data_dir):
        raise FileNotFoundError(f'scikit-image has no bundled data folder at {data_dir}')
    return data_dir


def _read_rgb(path: str) -> np.ndarray:
    """Read ``path`` as an ``(H, W, 3)`` uint8 RGB array (gray -> 3 channels, alpha dropped)."""
    from PIL import Image  # Pillow is a scikit-image dependency

    with Image.open(path) as img:
        arr = np.asarray(img.convert('RGB'), dtype=np.uint8)  # (H, W, 3)
    h, w = arr.shape[:2]
    scale = _MAX_SIDE / max(h, w)
    if scale < 1:
        arr = cv2.resize(arr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)


@lru_cache(maxsize=4)
def _load_cached(names: Tuple[str, ...]) -> Tuple[np.ndarray, ...]:
    data_dir = skimage_data_dir()
    photos = []
    for name in names:
        path = osp.join(data_dir, name)
        if osp.isfile(path):
            photo = _read_rgb(path)
            photo.setflags(write=False)  # shared by every caller through the cache
            photos.append(photo)
    if not photos:
        raise FileNotFoundError(
            f'none of the background photographs {list(names)} exists in {data_dir} '
            f'(found: {sorted(os.listdir(data_dir))})')
    return tuple(photos)


def load_backgrounds(names: Sequence[str] = BACKGROUND_FILES) -> List[np.ndarray]:
    """Load the bundled photographs as read-only ``(H, W, 3)`` uint8 RGB arrays.

    Files missing from the installed scikit-image version are skipped.

    Args:
        names: file names inside :func:`skimage_data_dir`.

    Returns:
        The photographs, in the order of ``names`` (longer side at most 640 px).

    Raises:
        FileNotFoundError: if none of ``names`` exists.
    """
    return list(_load_cached(tuple(names)))


def random_background(rng: np.random.Generator, photos: Sequence[np.ndarray],
                      size: Tuple[int, int]) -> np.ndarray:
    """A random crop / scale / flip / brightness-contrast jitter of one photograph.

    Args:
        rng: the random generator (the only source of randomness, for reproducibility).
        photos: photographs from :func:`load_backgrounds`.
        size: output ``(height, width)``.

    Returns:
        ``(height, width, 3)`` uint8 RGB array.
    """
    out_h, out_w = size
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    # Crop a window with the output's aspect ratio covering 30-100% of the largest one that
    # fits, so the apparent scale of the background varies about 3x.
    max_scale = min(ph / out_h, pw / out_w)
    scale = max_scale * float(rng.uniform(0.3, 1.0))
    crop_h = max(8, min(ph, round(out_h * scale)))
    crop_w = max(8, min(pw, round(out_w * scale)))
    y0 = int(rng.integers(0, ph - crop_h + 1))
    x0 = int(rng.integers(0, pw - crop_w + 1))
    crop = photo[y0:y0 + crop_h, x0:x0 + crop_w]  # (crop_h, crop_w, 3)
    interp = cv2.INTER_AREA if crop_h > out_h else cv2.INTER_LINEAR
    img = cv2.resize(crop, (out_w, out_h), interpolation=interp).astype(np.float32)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.2:
        img = img[::-1]
    # brightness / contrast jitter around the image mean
    contrast = float(rng.uniform(0.7, 1.2))
    brightness = float(rng.uniform(-25, 25))
    mean = float(img.mean(dtype=np.float64))
    img = (img - mean) * contrast + mean + brightness
    return np.clip(img, 0, 255).round().astype(np.uint8)
