"""Procedural mini-FreiHAND: a small synthetic data set in the real FreiHAND layout.

FreiHAND (Zimmermann et al., ICCV 2019, https://arxiv.org/abs/1909.04349) cannot be downloaded
here, so tests and the quick recipe use this generator. It writes the official layout that
:class:`hybridvit.datasets.FreiHANDDataset` and the official toolbox
(https://github.com/lmb-freiburg/freihand, ``utils/fh_utils.py``) read: ``training/rgb/%08d.jpg``
with the official image ids ``idx + 32560 * version`` (so a mini set has gaps in its numbering),
``training/mask/%08d.jpg`` (hand silhouette, one per sample), ``training_K.json``,
``training_xyz.json``, ``training_verts.json``, ``training_mano.json``, ``training_scale.json``,
the same for ``evaluation`` (no masks), plus ``mesh_faces.json`` for the procedural mesh.

The hand is an articulated kinematic chain with 21 joints in FreiHAND order (wrist, then thumb,
index, middle, ring, pinky, each root to tip) with random plausible flexion / abduction and a
random global rotation. Its 778-point surface is 15 tapered tubes (one per phalanx, 6 rings x 8
points) plus a palm ellipsoid (58 points), every vertex bound to a fixed bone. Images are the
projected hand drawn as shaded capsules and a palm polygon over crops of the photographs bundled
in the scikit-image wheel. Appearance versions share the geometry and differ in skin tone,
lighting and background (like FreiHAND's four versions).

NOTE: ``*_mano.json`` has zero pose / shape (the procedural hand has no MANO parameters), but its
last three entries are what the official ``split_theta`` / ``recover_root`` read: the root joint's
pixel position ``uv_root`` and the orthographic scale ``focal / z_root`` (pixels per metre), so
``recover_root`` gives back the root joint exactly.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from hybridvit.datasets.freihand import FREIHAND_NUM_TRAIN
from hybridvit.utils.atomic import atomic_open
from hybridvit.utils.errors import UserError

#: FreiHAND counts.
NUM_JOINTS = 21
NUM_VERTS = 778
# FreiHAND joint order: 0 wrist; thumb 1-4; index 5-8; middle 9-12; ring 13-16; pinky 17-20.
FINGER_NAMES = ('thumb', 'index', 'middle', 'ring', 'pinky')

# Hand-local frame (metres, right hand): x radial (thumb side), y along the fingers, z out of
# the back of the hand (the palm faces -z). Finger base joints (thumb CMC / finger MCP).
_BASES = np.array([[0.022, 0.025, -0.012], [0.026, 0.085, 0.0], [0.006, 0.090, 0.0],
                   [-0.013, 0.086, 0.0], [-0.030, 0.076, 0.0]])
_DIRS = np.array([[0.75, 0.60, -0.28], [0.10, 1.0, 0.0], [0.0, 1.0, 0.0], [-0.08, 1.0, 0.0],
                  [-0.18, 1.0, 0.0]])
_LENGTHS = np.array([[0.040, 0.032, 0.026], [0.042, 0.025, 0.021], [0.047, 0.029, 0.022],
                     [0.043, 0.027, 0.021], [0.034, 0.021, 0.019]])
_RADII = np.array([[0.0115, 0.0100, 0.0085], [0.0095, 0.0085, 0.0075],
                   [0.0098, 0.0088, 0.0078], [0.0093, 0.0083, 0.0073],
                   [0.0085, 0.0076, 0.0068]])
_TUBE_RINGS, _TUBE_SEGS = 6, 8
_PALM_RINGS, _PALM_SEGS = 7, 8  # + 2 poles -> 58 vertices
_PALM_CENTRE = np.array([0.0, 0.045, -0.002])
_PALM_AXES = np.array([0.040, 0.052, 0.013])

_SKIN_TONES = np.array([[190, 205, 235], [140, 170, 215], [95, 125, 170], [60, 80, 115]],
                       dtype=np.float64)  # BGR
_PALMAR_TINT = np.array([165.0, 170.0, 250.0])  # BGR: pink
_NAIL_TINT = np.array([215.0, 225.0, 245.0])  # BGR: pale
# Hand-local points of two palm creases (start, end, start, end; metres before size scaling).
_PALM_CREASES = np.array([[0.030, 0.060, -0.014], [-0.030, 0.066, -0.014],
                          [0.026, 0.035, -0.014], [-0.020, 0.050, -0.014]])
_BACKGROUNDS = ('astronaut', 'brick', 'camera', 'chelsea', 'coffee', 'coins', 'grass', 'gravel',
                'horse', 'rocket', 'retina', 'hubble_deep_field', 'motorcycle_left')


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation matrix (3, 3) about a unit axis."""
    axis = _unit(np.asarray(axis, dtype=np.float64))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def _random_rotation(rng: np.random.Generator, max_tilt: float = 90.0) -> np.ndarray:
    """Random global rotation (hand-local -> camera frame) of a hand shown to the camera.

    The palm (or, with probability 1/2, the back) faces the camera, tilted away from the
    viewing axis by at most ``max_tilt`` degrees (uniform over that spherical cap), with any
    in-plane rotation. ``max_tilt=90`` covers every viewing direction: uniformly distributed
    rotations (:func:`make_mini_freihand` checks ``0 < max_tilt <= 90``).
    """
    # identity: local +z (out of the back) points away from the camera, the palm faces it
    side = np.eye(3) if rng.random() < 0.5 else _axis_angle(np.array([1.0, 0.0, 0.0]), np.pi)
    spin = _axis_angle(np.array([0.0, 0.0, 1.0]), rng.uniform(-np.pi, np.pi))
    cos_tilt = rng.uniform(np.cos(np.deg2rad(max_tilt)), 1.0)  # uniform on the cap
    azimuth = rng.uniform(-np.pi, np.pi)
    tilt = _axis_angle(np.array([np.cos(azimuth), np.sin(azimuth), 0.0]), np.arccos(cos_tilt))
    return tilt @ spin @ side


def procedural_hand_faces() -> np.ndarray:
    """Triangle faces (F, 3) of the procedural 778-vertex mesh (orientation not enforced)."""
    faces = []
    ring = _TUBE_SEGS
    for bone in range(15):
        base = bone * _TUBE_RINGS * _TUBE_SEGS
        for i in range(_TUBE_RINGS - 1):
            for j in range(ring):
                a = base + i * ring + j
                b = base + i * ring + (j + 1) % ring
                c = base + (i + 1) * ring + j
                d = base + (i + 1) * ring + (j + 1) % ring
                faces += [[a, b, c], [b, d, c]]
    base = 15 * _TUBE_RINGS * _TUBE_SEGS
    north, south = base + _PALM_RINGS * _PALM_SEGS, base + _PALM_RINGS * _PALM_SEGS + 1
    for i in range(_PALM_RINGS - 1):
        for j in range(_PALM_SEGS):
            a = base + i * _PALM_SEGS + j
            b = base + i * _PALM_SEGS + (j + 1) % _PALM_SEGS
            c = base + (i + 1) * _PALM_SEGS + j
            d = base + (i + 1) * _PALM_SEGS + (j + 1) % _PALM_SEGS
            faces += [[a, b, c], [b, d, c]]
    last = base + (_PALM_RINGS - 1) * _PALM_SEGS
    for j in range(_PALM_SEGS):
        jn = (j + 1) % _PALM_SEGS
        faces.append([north, base + jn, base + j])
        faces.append([south, last + j, last + jn])
    return np.asarray(faces, dtype=np.int64)


def sample_hand_pose(rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Random plausible articulation in the hand-local frame.

    Returns:
        dict: ``joints`` (21, 3) metres, ``verts`` (778, 3) metres, ``bones`` list of
        (parent_joint, child_joint, radius) for drawing, ``dorsal`` (15, 3) the unit direction
        out of the back of each phalanx, ``palm_slice`` (the palm's vertices).
    """
    size = rng.uniform(0.88, 1.12)
    grasp = rng.uniform(0.0, 1.0)  # shared curl so that poses look coordinated
    normal = np.array([0.0, 0.0, 1.0])
    joints = np.zeros((NUM_JOINTS, 3))
    verts: List[np.ndarray] = []
    bones: List[Tuple[int, int, float]] = []
    dorsal: List[np.ndarray] = []  # per bone: unit direction out of the back of the finger
    t = np.linspace(0.0, 1.0, _TUBE_RINGS)  # ring positions along a bone
    phi = 2 * np.pi * np.arange(_TUBE_SEGS) / _TUBE_SEGS
    for f in range(5):
        d0 = _unit(_DIRS[f])
        if f == 0:
            spread = rng.uniform(-0.25, 0.35)  # thumb opposition
            d0 = _axis_angle(np.array([0.0, 1.0, 0.0]), spread) @ d0
            curl = np.clip(grasp + rng.normal(0, 0.25), 0, 1)
            angles = curl * np.array([0.35, 0.7, 0.9]) + rng.uniform(-0.1, 0.15, 3)
        else:
            d0 = _axis_angle(normal, rng.uniform(-0.15, 0.15)) @ d0
            curl = np.clip(grasp + rng.normal(0, 0.3), 0, 1)
            mcp = curl * 1.4 + rng.uniform(-0.25, 0.1)
            pip = curl * 1.6 + rng.uniform(0.0, 0.2)
            angles = np.array([mcp, pip, 0.7 * pip + rng.uniform(-0.1, 0.1)])
        # flexion axis: rotating d0 by -angle about it bends the finger towards the palm (-z)
        axis = _unit(np.cross(d0, normal))
        p = _BASES[f].copy()
        jid = 1 + 4 * f
        joints[jid] = p
        total = 0.0
        for k in range(3):
            total += angles[k]
            d = _axis_angle(axis, -total) @ d0
            q = p + _LENGTHS[f, k] * d
            joints[jid + k + 1] = q
            b = _unit(np.cross(d, axis))
            radius = _RADII[f, k] * (1.0 - 0.12 * t)  # (rings,)
            # ring points: (rings, segs, 3)
            ring = (p[None, None] + (t[:, None, None] * _LENGTHS[f, k]) * d[None, None]
                    + radius[:, None, None] * (np.cos(phi)[None, :, None] * axis[None, None]
                                               + np.sin(phi)[None, :, None] * b[None, None]))
            verts.append(ring.reshape(-1, 3))  # (rings * segs, 3)
            bones.append((jid + k, jid + k + 1, _RADII[f, k]))
            dorsal.append(-b)  # b points to the palm side of the finger
            p = q
    theta = np.pi * np.arange(1, _PALM_RINGS + 1) / (_PALM_RINGS + 1)
    pphi = 2 * np.pi * np.arange(_PALM_SEGS) / _PALM_SEGS
    ell = np.stack([np.sin(theta)[:, None] * np.cos(pphi)[None],
                    np.cos(theta)[:, None] * np.ones_like(pphi)[None],
                    np.sin(theta)[:, None] * np.sin(pphi)[None]], axis=-1)  # (rings, segs, 3)
    palm = _PALM_CENTRE + _PALM_AXES * ell.reshape(-1, 3)  # (rings * segs, 3)
    poles = _PALM_CENTRE + _PALM_AXES * np.array([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])
    palm = np.concatenate([palm, poles], axis=0)  # (58, 3)
    verts.append(palm)
    verts = np.concatenate(verts, axis=0) * size
    if verts.shape[0] != NUM_VERTS:
        raise RuntimeError(f'procedural mesh has {verts.shape[0]} vertices, expected {NUM_VERTS}')
    return dict(joints=joints * size, verts=verts, bones=bones, dorsal=np.stack(dorsal),
                palm_slice=slice(720, 778))


def _load_backgrounds() -> List[np.ndarray]:
    """The photographs bundled in the scikit-image wheel, as BGR uint8 (no network fetch)."""
    import skimage.data as skd
    images = []
    for name in _BACKGROUNDS:
        if name == 'motorcycle_left':
            img = skd.stereo_motorcycle()[0]
        else:
            img = getattr(skd, name)()
        img = np.asarray(img)
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=-1)
        images.append(np.ascontiguousarray(img[..., :3][..., ::-1]).astype(np.uint8))
    return images


def _background(rng: np.random.Generator, images: List[np.ndarray], size: int) -> np.ndarray:
    img = images[rng.integers(len(images))]
    h, w = img.shape[:2]
    side = int(rng.uniform(0.3, 1.0) * min(h, w))
    y0 = rng.integers(0, h - side + 1)
    x0 = rng.integers(0, w - side + 1)
    crop = img[y0:y0 + side, x0:x0 + side]
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    gain = rng.uniform(0.6, 1.2, size=3)
    return np.clip(crop.astype(np.float64) * gain, 0, 255)


def _facing_camera(direction: np.ndarray, point: np.ndarray) -> bool:
    """Does a surface whose outward normal is ``direction`` at ``point`` face the camera?"""
    return float(direction @ -point) > 0.0  # the camera sits at the origin


def _render(rng: np.random.Generator, pose: Dict, joints: np.ndarray, verts: np.ndarray,
            K: np.ndarray, backgrounds: List[np.ndarray], size: int, version: int
            ) -> Tuple[np.ndarray, np.ndarray]:
    """Draw the posed hand (camera frame) over a background crop.

    The two sides of the hand look different, as real hands do: the palm and the palmar side of
    the fingers are lighter and pinker than the back, the palm carries two creases and the nails
    show only on fingertips whose back faces the camera. Without these cues a hand seen from the
    palm and its mirror image seen from the back draw the same picture, and the 2D keypoints
    (which finger is where) cannot be learned from the image.

    Returns:
        tuple: BGR uint8 image (size, size, 3) and the hand mask (size, size) uint8 (255 = hand).
    """
    img = _background(rng, backgrounds, size)
    mask = np.zeros((size, size), np.uint8)
    skin = _SKIN_TONES[version % len(_SKIN_TONES)] * rng.uniform(0.85, 1.15, size=3)
    palmar = skin * 0.4 + _PALMAR_TINT * 0.6  # palms are lighter and pinker than the back
    dorsal = skin * 0.85
    light = rng.uniform(0.8, 1.2)
    rot = pose['rot']  # hand-local -> camera frame

    def project(x):
        uv = (K @ x.T).T
        return uv[:, :2] / uv[:, 2:3]

    uv_j = project(joints)
    f = K[0, 0]
    z_min, z_max = joints[:, 2].min(), joints[:, 2].max()

    def shade(z):
        return float(np.clip(light * (1.15 - 0.5 * (z - z_min) / max(z_max - z_min, 1e-3)),
                             0.45, 1.3))

    items = []  # (depth, kind, payload)
    palm = verts[pose['palm_slice']]
    items.append((palm[:, 2].mean(), 'palm', None))
    for i, (a, b, r) in enumerate(pose['bones']):
        items.append(((joints[a, 2] + joints[b, 2]) / 2, 'bone', (i, a, b, r)))
    scale = 8  # sub-pixel precision for the drawing calls
    for depth, kind, payload in sorted(items, key=lambda x: -x[0]):
        if kind == 'palm':
            back = _facing_camera(rot[:, 2], palm.mean(0))  # local +z: out of the back
            colour = np.clip((dorsal if back else palmar) * shade(depth), 0, 255)
            hull = cv2.convexHull(np.round(project(palm) * scale).astype(np.int32))
            cv2.fillConvexPoly(img, hull, colour.tolist(), cv2.LINE_AA, 3)
            cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_8, 3)
            if not back:  # palm creases
                crease = (_PALM_CREASES * pose['size'] - pose['local_centre']) @ rot.T \
                    + pose['centre']  # (4, 3) camera frame
                uv = np.round(project(crease) * scale).astype(np.int32)
                dark = np.clip(colour * 0.7, 0, 255).tolist()
                for k in (0, 2):
                    cv2.line(img, tuple(uv[k]), tuple(uv[k + 1]), dark, 1, cv2.LINE_AA, 3)
            continue
        i, a, b, r = payload
        tip_point = joints[b]
        back = _facing_camera(rot @ pose['dorsal'][i], tip_point)
        colour = np.clip((dorsal if back else palmar) * shade(depth), 0, 255)
        thick = max(int(round(2 * r * f * pose['size'] / depth)), 1)
        pa = tuple(int(v) for v in np.round(uv_j[a] * scale))
        pb = tuple(int(v) for v in np.round(uv_j[b] * scale))
        cv2.line(img, pa, pb, colour.tolist(), thick, cv2.LINE_AA, 3)
        cv2.circle(img, pb, scale * thick // 2, colour.tolist(), -1, cv2.LINE_AA, 3)
        cv2.line(mask, pa, pb, 255, thick, cv2.LINE_8, 3)
        cv2.circle(mask, pb, scale * thick // 2, 255, -1, cv2.LINE_8, 3)
        highlight = np.clip(colour * 1.18 + 10, 0, 255)
        cv2.line(img, pa, pb, highlight.tolist(), max(thick // 3, 1), cv2.LINE_AA, 3)
        if b % 4 == 0 and back:  # fingertip seen from the back: a nail near the tip
            nail = np.clip(colour * 0.45 + _NAIL_TINT * 0.55, 0, 255)
            centre = np.round((uv_j[a] * 0.25 + uv_j[b] * 0.75) * scale).astype(int)
            cv2.circle(img, tuple(int(v) for v in centre), max(scale * thick // 3, scale),
                       nail.tolist(), -1, cv2.LINE_AA, 3)
    img += rng.normal(0, 3.0, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), mask


def sample_scene(rng: np.random.Generator, image_size: int,
                 max_tilt: float = 90.0) -> Dict[str, np.ndarray]:
    """One hand in the camera frame: joints (21, 3), verts (778, 3), K (3, 3), pose info."""
    pose = sample_hand_pose(rng)
    size = float(np.linalg.norm(pose['joints'][10] - pose['joints'][9]) / _LENGTHS[2, 0])
    pose['size'] = size
    rot = _random_rotation(rng, max_tilt)
    focal = 500.0 * image_size / 224.0 * rng.uniform(0.9, 1.1)
    cx = image_size / 2 + rng.uniform(-2, 2) * image_size / 224.0
    cy = image_size / 2 + rng.uniform(-2, 2) * image_size / 224.0
    K = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])
    depth = rng.uniform(0.5, 0.8)
    centre_uv = np.array([cx, cy]) + rng.uniform(-0.08, 0.08, size=2) * image_size
    centre = np.array([(centre_uv[0] - cx) * depth / focal, (centre_uv[1] - cy) * depth / focal,
                       depth])
    local_centre = pose['verts'].mean(0)
    pose.update(rot=rot, centre=centre, local_centre=local_centre)  # for the renderer
    joints = (pose['joints'] - local_centre) @ rot.T + centre
    verts = (pose['verts'] - local_centre) @ rot.T + centre
    return dict(joints=joints, verts=verts, K=K, pose=pose)


def _round(x: np.ndarray) -> list:
    return np.round(np.asarray(x, dtype=np.float64), 6).tolist()


def _write_json(path: str, obj) -> None:
    with atomic_open(path, 'w') as f:
        json.dump(obj, f)


def _make_split(out_dir: str, split: str, num: int, num_versions: int, seed: int,
                image_size: int, backgrounds: List[np.ndarray], verbose: bool,
                max_tilt: float) -> None:
    rgb_dir = osp.join(out_dir, split, 'rgb')
    mask_dir = osp.join(out_dir, split, 'mask')
    os.makedirs(rgb_dir, exist_ok=True)
    if split == 'training':
        os.makedirs(mask_dir, exist_ok=True)
    split_code = 0 if split == 'training' else 1
    anns = dict(K=[], xyz=[], verts=[], mano=[], scale=[])
    for idx in range(num):
        rng = np.random.default_rng([seed, split_code, idx])
        scene = sample_scene(rng, image_size, max_tilt)
        joints, verts, K = scene['joints'], scene['verts'], scene['K']
        bone_scale = float(np.linalg.norm(joints[9] - joints[10]))
        root_uv = (K @ joints[0])[:2] / joints[0, 2]
        # the official recover_root: xyz_root = [uv_root - pp, focal] / ortho_scale
        ortho_scale = 0.5 * (K[0, 0] + K[1, 1]) / joints[0, 2]
        anns['K'].append(_round(K))
        anns['xyz'].append(_round(joints))
        anns['verts'].append(_round(verts))
        anns['scale'].append(round(bone_scale, 6))
        anns['mano'].append([[0.0] * 58 + _round(root_uv) + [round(float(ortho_scale), 6)]])
        for version in range(num_versions):
            vrng = np.random.default_rng([seed, split_code, idx, version + 1])
            img, mask = _render(vrng, scene['pose'], joints, verts, K, backgrounds, image_size,
                                version)
            path = osp.join(rgb_dir, '%08d.jpg' % (idx + FREIHAND_NUM_TRAIN * version))
            if not cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 92]):
                raise OSError(f'could not write {path}')
            if version == 0 and split == 'training':  # the silhouette is the same in every version
                path = osp.join(mask_dir, '%08d.jpg' % idx)
                if not cv2.imwrite(path, mask, [cv2.IMWRITE_JPEG_QUALITY, 92]):
                    raise OSError(f'could not write {path}')
        if verbose and ((idx + 1) % 50 == 0 or idx + 1 == num):
            print(f'[mini-freihand] {split}: {idx + 1}/{num} samples '
                  f'({(idx + 1) * num_versions} images)', flush=True)
    for key, value in anns.items():
        _write_json(osp.join(out_dir, f'{split}_{key}.json'), value)


def make_mini_freihand(out_dir: str, num_train: int = 256, num_eval: int = 64, seed: int = 0,
                       image_size: int = 224, num_versions: int = 4, max_tilt: float = 90.0,
                       verbose: bool = True) -> Dict[str, int]:
    """Write a procedural data set in the FreiHAND layout to ``out_dir``.

    Args:
        out_dir (str): output directory (created).
        num_train (int): training samples per appearance version, at most 32560 (FreiHAND's
            count, which the official image ids ``idx + 32560 * version`` assume).
        num_eval (int): evaluation samples (FreiHAND: 3960).
        seed (int): random seed; the same seed gives byte-identical annotations and images.
        image_size (int): square image side in pixels (focal length scales with it).
        num_versions (int): appearance versions of the training images, 1-4.
        max_tilt (float): the palm or the back faces the camera, tilted by at most this many
            degrees, any in-plane rotation; 90 (default) = uniformly random rotations.
        verbose (bool): print progress.

    Returns:
        dict: ``num_train``, ``num_eval``, ``num_versions`` (pass ``num_train`` as the dataset's
        ``num_samples`` when reading the training split).
    """
    for name, value in (('num_train', num_train), ('num_eval', num_eval),
                        ('image_size', image_size)):
        if int(value) != value or value < (16 if name == 'image_size' else 0):
            raise UserError(f'{name} must be a non-negative integer (image_size >= 16), '
                            f'got {value!r}')
    if num_train > FREIHAND_NUM_TRAIN:
        raise UserError(f'num_train must be at most {FREIHAND_NUM_TRAIN} (the official image ids '
                        f'idx + {FREIHAND_NUM_TRAIN} * version would collide), got {num_train}')
    if not 1 <= num_versions <= 4:
        raise UserError(f'num_versions must be in 1..4, got {num_versions}')
    if not 0.0 < max_tilt <= 90.0:
        raise UserError(f'max_tilt must be in (0, 90] degrees, got {max_tilt!r}')
    os.makedirs(out_dir, exist_ok=True)
    backgrounds = _load_backgrounds()
    _make_split(out_dir, 'training', num_train, num_versions, seed, image_size, backgrounds,
                verbose, max_tilt)
    _make_split(out_dir, 'evaluation', num_eval, 1, seed, image_size, backgrounds, verbose,
                max_tilt)
    _write_json(osp.join(out_dir, 'mesh_faces.json'), procedural_hand_faces().tolist())
    info = dict(num_train=num_train, num_eval=num_eval, num_versions=num_versions,
                image_size=image_size, seed=seed, max_tilt=max_tilt)
    _write_json(osp.join(out_dir, 'mini_freihand_info.json'), info)
    if verbose:
        print(f'[mini-freihand] wrote {num_train} x {num_versions} training and {num_eval} '
              f'evaluation samples to {out_dir}', flush=True)
    return info


def load_mesh_faces(path: str) -> Optional[np.ndarray]:
    """Read ``mesh_faces.json`` written by :func:`make_mini_freihand` as an (F, 3) int array."""
    with open(path) as f:
        return np.asarray(json.load(f), dtype=np.int64)
