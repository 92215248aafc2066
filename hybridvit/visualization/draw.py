"""Drawing predictions on images (pure numpy / OpenCV): segmentation overlays with a legend,
detections with masks, hand skeletons with mesh points."""
from typing import Optional, Sequence

import cv2
import numpy as np

__all__ = ['default_palette', 'draw_segmentation', 'draw_detections', 'draw_hand', 'draw_text',
           'HAND_BONES']

# FreiHAND joint order: wrist, thumb(1-4), index(5-8), middle(9-12), ring(13-16), pinky(17-20)
HAND_BONES = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
              (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18),
              (18, 19), (19, 20)]
_FINGER_COLOURS = [(255, 80, 80), (80, 255, 80), (80, 160, 255), (255, 220, 60), (220, 80, 255)]


def default_palette(num_classes: int, seed: int = 3) -> np.ndarray:
    """Distinct RGB colours (deterministic)."""
    rng = np.random.default_rng(seed)
    return rng.integers(40, 256, size=(num_classes, 3), dtype=np.uint8)


def draw_text(img, text, org, colour=(255, 255, 255), scale=0.45):
    """Write ``text`` at ``org`` in place, with a black outline so it reads on any background."""
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def draw_segmentation(img_bgr: np.ndarray, label_map: np.ndarray, classes: Sequence[str],
                      palette: Optional[Sequence] = None, opacity: float = 0.5) -> np.ndarray:
    """Blend a colour-coded label map over the image and add a legend of the classes present.

    Args:
        img_bgr: HxWx3 uint8.
        label_map: HxW int class indices (255 / out of range: not drawn).
        palette: RGB colour per class.
    """
    palette = np.asarray(palette if palette is not None else default_palette(len(classes)),
                         dtype=np.uint8)
    out = img_bgr.copy()
    valid = (label_map >= 0) & (label_map < len(palette))
    colour = np.zeros_like(img_bgr)
    colour[valid] = palette[label_map[valid]][:, ::-1]  # RGB -> BGR
    out[valid] = (img_bgr[valid] * (1 - opacity) + colour[valid] * opacity).astype(np.uint8)
    present = [int(c) for c in np.unique(label_map[valid])]
    # legend: one row per class present, on the right
    row_h, pad = 18, 6
    width = max([cv2.getTextSize(str(classes[c]), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0]
                 for c in present] + [40]) + 34
    legend = np.full((max(len(present) * row_h + 2 * pad, out.shape[0]), width, 3), 255, np.uint8)
    for i, c in enumerate(present):
        y = pad + i * row_h
        cv2.rectangle(legend, (6, y + 3), (22, y + 15), tuple(int(v) for v in palette[c][::-1]), -1)
        cv2.putText(legend, str(classes[c]), (28, y + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
    if legend.shape[0] > out.shape[0]:
        out = np.pad(out, ((0, legend.shape[0] - out.shape[0]), (0, 0), (0, 0)))
    return np.concatenate([out, legend[:out.shape[0]]], axis=1)


def draw_detections(img_bgr: np.ndarray, bboxes: np.ndarray, labels: np.ndarray,
                    scores: np.ndarray, classes: Sequence[str], masks: Optional[np.ndarray] = None,
                    score_thr: float = 0.3, palette=None) -> np.ndarray:
    """Boxes, instance masks, class names and scores above ``score_thr``."""
    palette = np.asarray(palette if palette is not None else default_palette(max(len(classes), 1)))
    out = img_bgr.copy()
    keep = scores >= score_thr
    for i in np.flatnonzero(keep):
        colour = tuple(int(v) for v in palette[int(labels[i]) % len(palette)][::-1])
        if masks is not None:
            m = masks[i].astype(bool)
            out[m] = (out[m] * 0.5 + np.array(colour) * 0.5).astype(np.uint8)
        x1, y1, x2, y2 = [int(round(v)) for v in bboxes[i]]
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        name = classes[int(labels[i])] if int(labels[i]) < len(classes) else str(int(labels[i]))
        draw_text(out, f'{name} {scores[i]:.2f}', (x1 + 2, max(y1 - 4, 12)), colour)
    return out


def draw_hand(img_bgr: np.ndarray, joints_2d: np.ndarray,
              verts_2d: Optional[np.ndarray] = None, min_side: int = 384) -> np.ndarray:
    """Mesh points (grey) and the 21-joint skeleton coloured per finger.

    Images whose longer side is below ``min_side`` pixels (FreiHAND crops are 224) are enlarged
    by an integer factor first so that the skeleton stays readable; points are scaled with them.
    """
    factor = max(1, int(np.ceil(min_side / max(img_bgr.shape[:2])))) if min_side else 1
    out = img_bgr.copy()
    if factor > 1:
        out = cv2.resize(out, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)

    def to_big(points):  # pixel centres: x_big = (x + 0.5) * factor - 0.5
        return (np.asarray(points, dtype=np.float64) + 0.5) * factor - 0.5

    if verts_2d is not None:
        for x, y in np.round(to_big(verts_2d)).astype(int):
            cv2.circle(out, (x, y), 1, (200, 200, 200), -1, cv2.LINE_AA)
    pts = np.round(to_big(joints_2d)).astype(int)
    for b, (i, j) in enumerate(HAND_BONES):
        colour = _FINGER_COLOURS[b // 4][::-1]
        cv2.line(out, tuple(pts[i]), tuple(pts[j]), colour, 2, cv2.LINE_AA)
    for k, (x, y) in enumerate(pts):
        colour = (255, 255, 255) if k == 0 else _FINGER_COLOURS[(k - 1) // 4][::-1]
        cv2.circle(out, (x, y), 3, colour, -1, cv2.LINE_AA)
    return out
