"""Writing meshes / point clouds (``.obj`` with faces, ``.ply`` points only), atomically."""
import numpy as np

from .atomic import atomic_open

__all__ = ['write_mesh']


def write_mesh(path_without_ext: str, verts: np.ndarray, faces=None) -> str:
    """Write ``verts`` (V,3) as ``.obj`` if ``faces`` (F,3) are known, else as ``.ply``."""
    verts = np.asarray(verts, dtype=np.float64)
    if faces is not None and len(faces):
        path = path_without_ext + '.obj'
        lines = [f'v {x:.6f} {y:.6f} {z:.6f}' for x, y, z in verts]
        lines += [f'f {a + 1} {b + 1} {c + 1}' for a, b, c in np.asarray(faces, dtype=int)]
    else:
        path = path_without_ext + '.ply'
        lines = ['ply', 'format ascii 1.0', f'element vertex {len(verts)}', 'property float x',
                 'property float y', 'property float z', 'end_header']
        lines += [f'{x:.6f} {y:.6f} {z:.6f}' for x, y, z in verts]
    with atomic_open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return path
