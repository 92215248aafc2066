"""A small MANO hand layer (linear blend skinning) in torch, with a chumpy-free model loader.

MANO: Romero, Tzionas, Black, "Embodied Hands: Modeling and Capturing Hands and Bodies Together",
SIGGRAPH Asia 2017 (https://mano.is.tue.mpg.de, https://arxiv.org/abs/2201.02610). The forward
pass follows the published model (shape blend shapes, pose blend shapes from the rotation
matrices minus identity, joint regression, kinematic chain, LBS), written here from the paper and
the file structure; see also the ``smplx`` package for a maintained implementation.

The official MANO ``.pkl`` files (licence-restricted, never shipped) store chumpy arrays and a
scipy sparse ``J_regressor``. :func:`load_mano_params` unpickles them with stand-in classes that
turn chumpy objects into numpy arrays, so chumpy (unmaintained, broken on Python 3.11 + numpy 2)
is not needed; plain-numpy pickles of the same structure load too.
"""
import pickle
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from hybridvit.utils.errors import UserError

#: Keys an official-structure MANO file must contain.
MANO_KEYS = ('v_template', 'shapedirs', 'posedirs', 'J_regressor', 'weights', 'kintree_table',
             'f', 'hands_components', 'hands_mean')
#: Vertex ids commonly used as MANO fingertips (thumb, index, middle, ring, pinky).
MANO_TIP_VERTEX_IDS = (745, 317, 444, 556, 673)
#: MANO joints (16 regressed + 5 tips appended in thumb..pinky order) -> FreiHAND order.
MANO_TO_FREIHAND = (0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20)


class _ChumpyStandIn:
    """Receives the pickled state of any chumpy object; :meth:`to_numpy` returns its value."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__.update(state if isinstance(state, dict) else {'_state': state})

    def to_numpy(self, key: str, path: str) -> np.ndarray:
        if 'x' in self.__dict__:
            return np.asarray(self.__dict__['x'])
        raise UserError(f'MANO file {path}: {key!r} is a derived chumpy expression, not a stored '
                        'array; convert the file with chumpy once (e.g. smplx tools/clean_ch.py)')


class _MANOUnpickler(pickle.Unpickler):
    """Maps chumpy classes to :class:`_ChumpyStandIn` and old scipy.sparse paths to scipy.sparse."""

    def find_class(self, module: str, name: str):
        if module == 'chumpy' or module.startswith('chumpy.'):
            return _ChumpyStandIn
        if module.startswith('scipy.sparse'):
            import scipy.sparse
            if hasattr(scipy.sparse, name):
                return getattr(scipy.sparse, name)
        return super().find_class(module, name)


def _to_array(value, key: str, path: str) -> np.ndarray:
    if isinstance(value, _ChumpyStandIn):
        return value.to_numpy(key, path)
    if hasattr(value, 'toarray'):  # scipy sparse
        return np.asarray(value.toarray())
    return np.asarray(value)


def load_mano_params(path: str) -> Dict[str, np.ndarray]:
    """Read an official-structure MANO ``.pkl`` into a dict of numpy arrays (no chumpy needed).

    Raises:
        FileNotFoundError: the file does not exist.
        UserError: the file is not a pickled dict, a required key (see ``MANO_KEYS``) is
            missing, or an array has the wrong shape (the message names the file).
    """
    try:
        with open(path, 'rb') as f:
            raw = _MANOUnpickler(f, encoding='latin1').load()
    except FileNotFoundError:
        raise FileNotFoundError(f'MANO model file not found: {path} (MANO files are licence-'
                                'restricted; download MANO_RIGHT.pkl from '
                                'https://mano.is.tue.mpg.de)') from None
    except (pickle.UnpicklingError, EOFError) as err:
        raise UserError(f'MANO model file {path} is not a readable pickle ({err}); expected an '
                        'official-structure MANO .pkl such as MANO_RIGHT.pkl') from None
    if not isinstance(raw, dict):
        raise UserError(f'{path}: expected a pickled dict, got {type(raw).__name__}')
    missing = [k for k in MANO_KEYS if k not in raw]
    if missing:
        raise UserError(f'{path}: missing MANO keys {missing} (found {sorted(raw)})')
    params = {k: _to_array(raw[k], k, path) for k in MANO_KEYS}
    num_verts = params['v_template'].shape[0]
    num_joints = params['kintree_table'].shape[1]
    expected = dict(v_template=(num_verts, 3), posedirs=(num_verts, 3, 9 * (num_joints - 1)),
                    J_regressor=(num_joints, num_verts), weights=(num_verts, num_joints),
                    kintree_table=(2, num_joints), hands_mean=(3 * (num_joints - 1),),
                    hands_components=(3 * (num_joints - 1), 3 * (num_joints - 1)))
    for key, shape in expected.items():
        if params[key].shape != shape:
            raise UserError(f'{path}: {key} has shape {params[key].shape}, expected {shape}')
    if params['shapedirs'].ndim != 3 or params['shapedirs'].shape[:2] != (num_verts, 3):
        raise UserError(f'{path}: shapedirs has shape {params["shapedirs"].shape}, expected '
                        f'({num_verts}, 3, num_betas)')
    return params


def batch_rodrigues(rotvec: torch.Tensor) -> torch.Tensor:
    """Axis-angle (N, 3) -> rotation matrices (N, 3, 3)."""
    angle = rotvec.norm(dim=-1, keepdim=True).clamp(min=1e-8)  # (N, 1)
    axis = rotvec / angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(-1, 3, 3)  # (N, 3, 3)
    sin = torch.sin(angle)[..., None]  # (N, 1, 1)
    cos = torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)[None]
    return eye + sin * k + (1 - cos) * (k @ k)


class MANOLayer(nn.Module):
    """Differentiable MANO layer: pose + shape -> vertices and 21 FreiHAND-ordered joints.

    Paper: https://arxiv.org/abs/2201.02610 (MANO, SIGGRAPH Asia 2017).

    Args:
        model_path (str): official-structure MANO ``.pkl`` (e.g. ``MANO_RIGHT.pkl``).
        use_pca (bool): hand pose given as PCA coefficients. Defaults to True.
        num_pca_comps (int): PCA components when ``use_pca``. Defaults to 6.
        flat_hand_mean (bool): if False, add the file's ``hands_mean`` to the finger pose.
            Defaults to False.
        tip_vertex_ids (Sequence[int]): fingertip vertices (thumb..pinky) appended to the 16
            regressed joints. Defaults to ``MANO_TIP_VERTEX_IDS``.
        joint_order (Sequence[int], optional): permutation of the 21 joints; defaults to
            ``MANO_TO_FREIHAND``.
    """

    def __init__(self, model_path: str, use_pca: bool = True, num_pca_comps: int = 6,
                 flat_hand_mean: bool = False,
                 tip_vertex_ids: Sequence[int] = MANO_TIP_VERTEX_IDS,
                 joint_order: Optional[Sequence[int]] = MANO_TO_FREIHAND) -> None:
        super().__init__()
        p = load_mano_params(model_path)
        num_verts = p['v_template'].shape[0]
        self.num_joints_mano = p['kintree_table'].shape[1]
        pose_dim = 3 * (self.num_joints_mano - 1)
        if use_pca and not 1 <= num_pca_comps <= pose_dim:
            raise UserError(f'MANOLayer: num_pca_comps must be in 1..{pose_dim} for '
                            f'{model_path}, got {num_pca_comps}')
        if max(tip_vertex_ids) >= num_verts:
            raise UserError(f'MANOLayer: tip_vertex_ids {tuple(tip_vertex_ids)} out of range for '
                            f'the {num_verts} vertices of {model_path}')
        self.use_pca = use_pca
        self.num_pca_comps = num_pca_comps
        self.num_betas = p['shapedirs'].shape[-1]
        self.hand_pose_dim = num_pca_comps if use_pca else pose_dim
        parents = p['kintree_table'][0].astype(np.int64).copy()
        parents[0] = -1
        if np.any(parents[1:] >= np.arange(1, len(parents))):
            raise UserError(f'{model_path}: MANO kintree_table: parents must precede their '
                            'children')
        f32 = torch.float32
        self.register_buffer('v_template', torch.as_tensor(p['v_template'], dtype=f32))
        self.register_buffer('shapedirs', torch.as_tensor(p['shapedirs'], dtype=f32))
        # posedirs (V, 3, P) -> (P, V * 3)
        self.register_buffer('posedirs', torch.as_tensor(
            p['posedirs'].reshape(num_verts * 3, -1).T.copy(), dtype=f32))
        self.register_buffer('J_regressor', torch.as_tensor(p['J_regressor'], dtype=f32))
        self.register_buffer('lbs_weights', torch.as_tensor(p['weights'], dtype=f32))
        self.register_buffer('parents', torch.as_tensor(parents))
        self.register_buffer('faces', torch.as_tensor(p['f'].astype(np.int64)))
        self.register_buffer('hands_components', torch.as_tensor(p['hands_components'],
                                                                 dtype=f32))
        mean = np.zeros(pose_dim) if flat_hand_mean else p['hands_mean']
        self.register_buffer('hands_mean', torch.as_tensor(mean, dtype=f32))
        self.register_buffer('tip_vertex_ids', torch.as_tensor(list(tip_vertex_ids)))
        order = list(range(self.num_joints_mano + len(tip_vertex_ids))) if joint_order is None \
            else list(joint_order)
        self.register_buffer('joint_order', torch.as_tensor(order))

    def forward(self, global_orient: torch.Tensor, hand_pose: torch.Tensor,
                betas: torch.Tensor, transl: Optional[torch.Tensor] = None) -> Dict[str,
                                                                                    torch.Tensor]:
        """Run MANO.

        Args:
            global_orient (Tensor): (B, 3) axis-angle root rotation.
            hand_pose (Tensor): (B, num_pca_comps) or (B, 45) finger pose.
            betas (Tensor): (B, num_betas) shape coefficients.
            transl (Tensor, optional): (B, 3) translation.

        Returns:
            dict: ``verts`` (B, V, 3), ``joints`` (B, 21, 3), ``mano_joints`` (B, 16, 3).
        """
        if hand_pose.shape[-1] != self.hand_pose_dim:
            raise ValueError(f'hand_pose must have {self.hand_pose_dim} values, got '
                             f'{tuple(hand_pose.shape)}')
        if betas.shape[-1] != self.num_betas:
            raise ValueError(f'betas must have {self.num_betas} values, got {tuple(betas.shape)}')
        bsz = global_orient.shape[0]
        if self.use_pca:
            hand_pose = hand_pose @ self.hands_components[:self.num_pca_comps]
        full_pose = torch.cat([global_orient, hand_pose + self.hands_mean], dim=-1)  # (B, 48)
        nj = self.num_joints_mano
        rot = batch_rodrigues(full_pose.reshape(-1, 3)).view(bsz, nj, 3, 3)  # (B, J, 3, 3)

        v_shaped = self.v_template + torch.einsum('bl,vcl->bvc', betas, self.shapedirs)
        joints = torch.einsum('jv,bvc->bjc', self.J_regressor, v_shaped)  # (B, J, 3)
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        pose_feature = (rot[:, 1:] - eye).reshape(bsz, -1)  # (B, 9 * (J - 1))
        v_posed = v_shaped + (pose_feature @ self.posedirs).view(bsz, -1, 3)  # (B, V, 3)

        rel = joints.clone()
        rel[:, 1:] = joints[:, 1:] - joints[:, self.parents[1:]]
        local = torch.cat([torch.cat([rot, rel[..., None]], dim=-1),
                           rot.new_tensor([0, 0, 0, 1]).expand(bsz, nj, 1, 4)], dim=-2)
        chain = [local[:, 0]]
        for i in range(1, nj):
            chain.append(chain[int(self.parents[i])] @ local[:, i])
        world = torch.stack(chain, dim=1)  # (B, J, 4, 4)
        posed_joints = world[:, :, :3, 3]
        # remove the rest-pose joint location so that the transforms act on rest vertices
        skin = world.clone()
        skin[:, :, :3, 3] = posed_joints - (world[:, :, :3, :3] @ joints[..., None])[..., 0]
        blend = torch.einsum('vj,bjmn->bvmn', self.lbs_weights, skin)  # (B, V, 4, 4)
        verts = (blend[..., :3, :3] @ v_posed[..., None])[..., 0] + blend[..., :3, 3]
        if transl is not None:
            verts = verts + transl[:, None]
            posed_joints = posed_joints + transl[:, None]
        tips = verts[:, self.tip_vertex_ids]
        joints21 = torch.cat([posed_joints, tips], dim=1)[:, self.joint_order]
        return dict(verts=verts, joints=joints21, mano_joints=posed_joints)
