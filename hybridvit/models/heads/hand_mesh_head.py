"""Regression head for 3D hand mesh recovery from a single RGB crop.

FastViT (Vasu et al., "FastViT: A Fast Hybrid Vision Transformer using Structural
Reparameterization", ICCV 2023, https://arxiv.org/abs/2303.14189) reports FreiHAND results with a
simple regression module on its features predicting a weak-perspective camera and MANO
pose/shape; the Apple code (https://github.com/apple/ml-fastvit) does not include that module.
This head is our own design in that spirit: average pooling of one or more backbone features
(globally, or to a small grid that keeps the spatial layout), an MLP, and either

* MANO-free (default): 21 root-relative joints and 778 vertices regressed directly (optionally
  in a hand-centred frame, turned into the camera frame by a separately regressed global
  rotation: ``global_rotation=True``), or
* MANO mode: global orientation, hand pose, shape -> :class:`MANOLayer` -> joints / vertices,

plus a weak-perspective camera ``(s, tx, ty)`` that maps root-relative 3D joints onto the
normalised crop (``[-1, 1]`` across the input image): ``uv_norm = s * xy + (tx, ty)``.

With ``keypoint_branch`` the MLP regresses the hand in its own frame only; an integral 2.5D
keypoint branch (:mod:`.integral_keypoints`) locates the joints in the image (position and
root-relative depth, in crop units), and the rotation, camera scale and root position are the
least-squares similarity fit of the regressed joints onto those 2.5D keypoints
(:func:`.procrustes.similarity_fit`). Orientation and placement then come from where the
joints are seen, not from a pooled global feature. At test time the predicted skeleton is the
mean of the two estimates of it, the branch's keypoints and the regressed joints placed on them
(``keypoint_weight``); with the crop's intrinsics the keypoints are lifted to the camera frame
with the perspective camera and the root depth is read from the bone lengths
(:mod:`.hand_camera`).

Losses: L1 on joints, L1 on vertices (optionally also after a rigid Procrustes alignment, as the
FreiHAND metrics align, see :mod:`.procrustes`), L1 on the reprojected 2D keypoints, and, when mesh
faces are known, the edge-length and normal-consistency losses of I2L-MeshNet (Moon & Lee,
ECCV 2020, https://arxiv.org/abs/2008.03713).
"""
import json
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.structures import BaseDataElement

from hybridvit.models.layers.grid_pool import grid_avg_pool2d
from hybridvit.registry import MODELS
from hybridvit.utils.errors import UserError
from .hand_camera import (HAND_BONES, REF_BONE, bone_lengths, depth_from_bones,
                          fit_weak_perspective, lift_keypoints, spread_ratio,
                          weak_perspective_to_camera)
from .integral_keypoints import IntegralKeypointBranch, heatmap_kl_loss
from .mano import MANOLayer
from .procrustes import rigid_align, similarity_fit
from .rotation_6d import IDENTITY_6D, rotation_6d_to_matrix

_DEFAULT_LOSS_WEIGHTS = dict(joints=1.0, verts=1.0, pa_joints=0.0, pa_verts=0.0,
                             keypoints_2d=0.1, edge=1.0, normal=0.1, betas=1e-3,
                             kp_uv=1.0, kp_depth=1.0, kp_heatmap=1.0)


def _load_faces(faces) -> Optional[np.ndarray]:
    """``faces`` (array, ``.npy`` or ``.json`` file) as an (F, 3) int64 array, or ``None``.

    Raises:
        UserError: a file that does not parse, or content that is not (F, 3) integers (the
            message names the file).
    """
    if faces is None:
        return None
    source = 'faces'
    if isinstance(faces, str):
        source = f'faces file {faces}'
        try:
            if faces.endswith('.npy'):
                faces = np.load(faces)
            else:
                with open(faces) as f:
                    faces = json.load(f)
        except ValueError as err:  # json.JSONDecodeError, np.load of a non-.npy file
            raise UserError(f'{source}: cannot read it ({err}); expected a .npy array or a JSON '
                            'list of (F, 3) vertex indices') from None
    try:
        faces = np.asarray(faces, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise UserError(f'{source}: expected (F, 3) integer vertex indices ({err})') from None
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise UserError(f'{source} must have shape (F, 3), got {faces.shape}')
    return faces


def _unique_edges(faces: np.ndarray) -> np.ndarray:
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], axis=0)
    return np.unique(np.sort(edges, axis=1), axis=0)  # (E, 2)


def _stack(data_samples: Sequence[BaseDataElement], key: str, device) -> torch.Tensor:
    values = []
    for ds in data_samples:
        if key not in ds:
            where = f' ({ds.img_path})' if 'img_path' in ds else ''
            raise UserError(f'data sample{where} has no {key!r}, needed for the hand mesh loss: '
                            'train on a labelled split (PackHandMeshInputs leaves out the fields '
                            'whose annotations are missing)')
        values.append(torch.as_tensor(ds.get(key)))
    return torch.stack(values).to(device=device, dtype=torch.float32)


@MODELS.register_module()
class HandMeshHead(BaseModule):
    """Pool + MLP hand mesh regressor with a weak-perspective camera.

    Paper context: https://arxiv.org/abs/2303.14189 (FastViT, hand mesh estimation section).

    Args:
        in_channels (int | Sequence[int]): channels of the used backbone feature(s).
        in_index (int | Sequence[int]): which backbone outputs to pool (several are
            concatenated, i.e. multi-scale). Defaults to -1 (last).
        pool_size (int): each used feature map is average-pooled to ``pool_size x pool_size``
            cells and flattened; 1 = global average pooling. A small grid (e.g. 4) keeps the
            spatial layout that global pooling throws away. Defaults to 1.
        num_joints (int): joints (MANO-free mode). Defaults to 21.
        num_verts (int): vertices (MANO-free mode). Defaults to 778.
        global_rotation (bool): MANO-free mode only: regress the joints / vertices in a
            hand-centred frame plus a global rotation (6D representation, Zhou et al. CVPR
            2019) that maps them into the camera frame, as MANO's global orientation does;
            factors orientation (trained by the camera-frame and 2D losses) from shape (trained
            by all losses). Defaults to False (camera-frame coordinates regressed directly).
        hidden_dims (Sequence[int]): MLP hidden sizes. Defaults to (1024,).
        dropout (float): dropout before the output layer. Defaults to 0.
        cam_scale_init (float): weak-perspective scale at initialisation (normalised crop units
            per metre; about 2 f / (W Z)). Defaults to 8.
        coord_scale (float): metres per unit of the raw 3D regression outputs. Defaults to 0.1.
        loss_weights (dict, optional): weights for ``joints``, ``verts`` (camera frame),
            ``pa_joints``, ``pa_verts`` (after one rigid Procrustes alignment of the whole hand,
            joints and vertices together, to the ground truth;
            off by default), ``keypoints_2d``, ``edge``, ``normal`` (edge / normal only with
            faces), ``betas`` (MANO mode), ``kp_uv`` / ``kp_depth`` / ``kp_heatmap``
            (``keypoint_branch``: L1 on the 2D positions and root-relative depths of its 2.5D
            keypoints, KL of its heatmaps to a Gaussian at the label).
        faces (str | array, optional): (F, 3) mesh faces (array, ``.npy`` or ``.json`` file)
            enabling the edge / normal losses in MANO-free mode (MANO mode uses MANO's faces).
        mano_model_path (str, optional): MANO ``.pkl``; switches to MANO mode.
        mano_cfg (dict, optional): extra :class:`MANOLayer` arguments (``num_pca_comps``, ...).
        ref_bone_scale (bool): for the camera-frame predictions, rescale the hand to the
            sample's reference bone length ``scale`` (FreiHAND's ``*_scale.json``) before
            recovering the root. Defaults to True.
        keypoint_branch (dict, optional): MANO-free mode: arguments of
            :class:`IntegralKeypointBranch` (``in_channels``, ``in_index`` of the backbone maps
            it fuses, ``channels``). The rotation, camera scale and root position are then the
            similarity fit of the regressed (hand-frame) joints onto the branch's 2.5D
            keypoints, which are trained by the ``kp_uv`` / ``kp_depth`` / ``kp_heatmap``
            losses.
        keypoint_weight (float): ``keypoint_branch`` only, in eval mode: the predicted joints
            and 2D keypoints are ``keypoint_weight`` times the branch's 2.5D keypoints plus the
            rest times the regressed joints placed on them (two estimates of one skeleton whose
            errors are partly independent; 0 = the regressed joints only). Defaults to 0.5.
        init_cfg (dict, optional): mmengine initialisation config.

    With ``keypoint_branch`` and 21 joints the head also keeps the running mean of the training
    labels' bone lengths over their reference bone (buffer ``bone_ratios``, over
    ``bone_ratio_count`` hands, as BatchNorm keeps its statistics) to read the camera-frame
    depth from a sample's known reference bone (:meth:`camera_frame`).
    """

    def __init__(self, in_channels: Union[int, Sequence[int]],
                 in_index: Union[int, Sequence[int]] = -1, pool_size: int = 1,
                 num_joints: int = 21, num_verts: int = 778, global_rotation: bool = False,
                 hidden_dims: Sequence[int] = (1024,),
                 dropout: float = 0.0, cam_scale_init: float = 8.0, coord_scale: float = 0.1,
                 loss_weights: Optional[dict] = None, faces=None,
                 mano_model_path: Optional[str] = None, mano_cfg: Optional[dict] = None,
                 ref_bone_scale: bool = True, keypoint_branch: Optional[dict] = None,
                 keypoint_weight: float = 0.5, init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        multi = isinstance(in_index, (list, tuple))
        self.in_index = list(in_index) if multi else [in_index]
        in_channels = list(in_channels) if isinstance(in_channels, (list, tuple)) else [
            in_channels]
        if len(in_channels) != len(self.in_index):
            raise UserError(f'HandMeshHead: in_channels {in_channels} and in_index '
                            f'{self.in_index} must have the same length')
        if int(pool_size) != pool_size or pool_size < 1:
            raise UserError(f'HandMeshHead: pool_size must be a positive integer, got '
                            f'{pool_size!r}')
        self.pool_size = int(pool_size)
        unknown = set(loss_weights or {}) - set(_DEFAULT_LOSS_WEIGHTS)
        if unknown:
            raise UserError(f'HandMeshHead: unknown loss_weights keys {sorted(unknown)}; '
                            f'expected a subset of {sorted(_DEFAULT_LOSS_WEIGHTS)}')
        self.loss_weights = {**_DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}
        self.cam_scale_init = float(cam_scale_init)
        self.ref_bone_scale = ref_bone_scale
        self.coord_scale = float(coord_scale)

        self.mano = None
        if mano_model_path is not None and (global_rotation or keypoint_branch):
            raise UserError('HandMeshHead: global_rotation / keypoint_branch are for the '
                            f'MANO-free head; MANO mode (mano_model_path={mano_model_path!r}) '
                            'regresses the global orientation itself')
        if keypoint_branch is not None and global_rotation:
            raise UserError('HandMeshHead: use either global_rotation=True (regressed rotation) '
                            'or keypoint_branch (rotation fitted to 2.5D keypoints), not both')
        if mano_model_path is not None:
            self.mano = MANOLayer(mano_model_path, **(mano_cfg or {}))
            num_verts = self.mano.v_template.shape[0]
            num_joints = int(self.mano.joint_order.numel())
            faces = self.mano.faces.cpu().numpy()
            self.param_dims = dict(global_orient=3, hand_pose=self.mano.hand_pose_dim,
                                   betas=self.mano.num_betas)
            out_dim = sum(self.param_dims.values())
        else:
            if num_joints <= 0 or num_verts <= 0:
                raise UserError(f'HandMeshHead: num_joints and num_verts must be positive, got '
                                f'{num_joints}, {num_verts}')
            out_dim = 3 * (num_joints + num_verts)
        self.num_joints, self.num_verts = num_joints, num_verts

        faces = _load_faces(faces)
        if faces is not None:
            if faces.max() >= num_verts or faces.min() < 0:
                raise UserError(f'HandMeshHead: faces index vertices {faces.min()}..'
                                f'{faces.max()} but the mesh has {num_verts} vertices '
                                f'(num_verts={num_verts})')
            self.register_buffer('faces', torch.as_tensor(faces), persistent=False)
            self.register_buffer('edges', torch.as_tensor(_unique_edges(faces)),
                                 persistent=False)
        else:
            self.faces = self.edges = None

        layers: List[nn.Module] = []
        dim = sum(in_channels) * self.pool_size ** 2
        for hidden in hidden_dims:
            layers += [nn.Linear(dim, hidden), nn.GELU()]
            dim = hidden
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.mlp = nn.Sequential(*layers)
        self.fc_out = nn.Linear(dim, out_dim)
        nn.init.normal_(self.fc_out.weight, std=1e-3)
        nn.init.zeros_(self.fc_out.bias)
        self.keypoint_branch = self.fc_cam = None
        if not 0.0 <= keypoint_weight <= 1.0:
            raise UserError(f'HandMeshHead: keypoint_weight must be in [0, 1], got '
                            f'{keypoint_weight!r}')
        self.keypoint_weight = float(keypoint_weight)
        self.lifts_keypoints = keypoint_branch is not None and num_joints == len(HAND_BONES) + 1
        if keypoint_branch is not None:
            self.keypoint_branch = IntegralKeypointBranch(num_joints=num_joints,
                                                          **keypoint_branch)
        else:
            self.fc_cam = nn.Linear(dim, 3)
            nn.init.normal_(self.fc_cam.weight, std=1e-3)
            nn.init.zeros_(self.fc_cam.bias)
        if self.lifts_keypoints:
            self.register_buffer('bone_ratios', torch.zeros(len(HAND_BONES)))
            self.register_buffer('bone_ratio_count', torch.zeros((), dtype=torch.float64))
        self.fc_rot = None
        if global_rotation:
            self.fc_rot = nn.Linear(dim, 6)
            nn.init.normal_(self.fc_rot.weight, std=1e-3)
            with torch.no_grad():  # start at the identity rotation
                self.fc_rot.bias.copy_(torch.tensor(IDENTITY_6D))

    # ---------------------------------------------------------------- forward
    def forward(self, feats: Sequence[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Predict from backbone features.

        Returns:
            dict: ``joints`` (B, J, 3) and ``verts`` (B, V, 3) root-relative (joint 0) metres,
            ``cam`` (B, 3) = (s, tx, ty), ``keypoints_2d_norm`` (B, J, 2) in [-1, 1] crop
            coordinates; in MANO mode also ``global_orient``, ``hand_pose``, ``betas``; with
            ``global_rotation`` or ``keypoint_branch`` also ``global_rot`` (B, 3, 3) (camera =
            hand frame @ R^T); with ``keypoint_branch`` also its ``keypoints_uv`` (B, J, 2),
            root-relative ``keypoints_depth`` (B, J), both crop units, and
            ``keypoints_heatmap`` (B, J, h, w) logits.
        """
        if isinstance(feats, torch.Tensor):
            feats = (feats,)
        pooled = []
        for i in self.in_index:
            try:
                feat = feats[i]
            except IndexError:
                raise UserError(f'HandMeshHead: in_index {i} out of range for the '
                                f'{len(feats)} backbone outputs (check the backbone\'s '
                                'out_indices)') from None
            if self.pool_size == 1:
                pooled.append(feat.mean(dim=(2, 3)))  # (B, C)
            else:
                # (B, C, H, W) -> (B, C, p, p) -> (B, C * p * p)
                pooled.append(grid_avg_pool2d(feat, self.pool_size).flatten(1))
        keypoints = None
        if self.keypoint_branch is not None:
            keypoints = self.keypoint_branch(feats)  # uv (B, J, 2), depth (B, J), logits
        x = self.mlp(torch.cat(pooled, dim=1))  # (B, hidden)
        out = self.fc_out(x)
        bsz = out.shape[0]
        result = {}
        if self.mano is None:
            # (B, 3 * (J + V)) -> (B, J + V, 3), in metres
            coords = out.view(bsz, self.num_joints + self.num_verts, 3) * self.coord_scale
            if self.fc_rot is not None:
                rot = rotation_6d_to_matrix(self.fc_rot(x))  # (B, 3, 3)
                coords = coords @ rot.transpose(1, 2)  # hand frame -> camera frame
                result['global_rot'] = rot
            elif keypoints is not None:
                return self.fit_to_keypoints(keypoints, coords, result)
            joints, verts = coords[:, :self.num_joints], coords[:, self.num_joints:]
        else:
            params = torch.split(out, list(self.param_dims.values()), dim=1)
            result.update(dict(zip(self.param_dims, params)))
            mano_out = self.mano(result['global_orient'], result['hand_pose'],
                                 result['betas'])
            joints, verts = mano_out['joints'], mano_out['verts']
        root = joints[:, :1]  # (B, 1, 3)
        joints, verts = joints - root, verts - root
        raw_cam = self.fc_cam(x)
        scale = self.cam_scale_init * torch.exp(raw_cam[:, :1].clamp(-5.0, 5.0))  # (B, 1)
        cam = torch.cat([scale, raw_cam[:, 1:]], dim=1)  # (B, 3)
        kp_norm = joints[..., :2] * scale[:, None] + raw_cam[:, None, 1:]  # (B, J, 2)
        result.update(joints=joints, verts=verts, cam=cam, keypoints_2d_norm=kp_norm)
        return result

    def fit_to_keypoints(self, keypoints: tuple, coords: torch.Tensor,
                         result: Optional[dict] = None) -> Dict[str, torch.Tensor]:
        """Place the hand-frame ``coords`` (B, J + V, 3) by fits of its joints onto the 2.5D
        ``keypoints`` (uv (B, J, 2), depth (B, J), heatmap logits or ``None``): the rotation
        from the 3D similarity fit, the camera scale and shift from the 2D positions alone (the
        least-squares weak-perspective camera of the rotated joints; the depths, read less
        precisely, do not bias the scale). The fits are not differentiated (like the aligned
        losses), so the mesh losses train the shape under the fitted pose. Returns ``result``
        (a new dict by default) updated with :meth:`forward`'s keys."""
        result = {} if result is None else result
        uv, depth, logits = keypoints  # (B, J, 2), (B, J), (B, J, h, w)
        target = torch.cat([uv, depth[..., None]], dim=-1)  # (B, J, 3) crop units
        rot, _, _ = similarity_fit(coords[:, :self.num_joints].detach(), target.detach())
        coords = coords @ rot.transpose(1, 2)  # hand frame -> camera frame, metres
        joints, verts = coords[:, :self.num_joints], coords[:, self.num_joints:]
        root = joints[:, :1]  # (B, 1, 3)
        joints, verts = joints - root, verts - root
        cam, kp_norm = self.place_on_keypoints(joints, uv)
        if not self.training:  # the mean of the two estimates of the 2D skeleton
            kp_norm = self.keypoint_weight * uv + (1 - self.keypoint_weight) * kp_norm
        result.update(joints=joints, verts=verts, global_rot=rot, keypoints_uv=uv,
                      keypoints_depth=depth, keypoints_heatmap=logits, keypoints_2d_norm=kp_norm,
                      cam=cam)
        return result

    @staticmethod
    def place_on_keypoints(joints: torch.Tensor, uv: torch.Tensor):
        """The least-squares weak-perspective camera (B, 3) that maps the root-relative
        ``joints`` (B, J, 3) onto the 2D keypoints ``uv`` (B, J, 2, ``[-1, 1]`` crop units), and
        the joints it reprojects (B, J, 2). Not differentiated (a fit, like the aligned
        losses)."""
        with torch.no_grad():
            scale, shift = fit_weak_perspective(joints[..., :2], uv)  # (B,), (B, 2)
        uv_root = shift  # the root is at the origin of the root-relative joints
        kp_norm = joints[..., :2] * scale[:, None, None] + uv_root[:, None]  # (B, J, 2)
        return torch.cat([scale[:, None], uv_root], dim=1), kp_norm

    # ------------------------------------------------------------------ losses
    def _mesh_losses(self, pred: torch.Tensor, gt: torch.Tensor) -> Dict[str, torch.Tensor]:
        losses = {}
        w = self.loss_weights
        if w['edge'] > 0:
            e0, e1 = self.edges[:, 0], self.edges[:, 1]
            len_pred = (pred[:, e0] - pred[:, e1]).norm(dim=-1)  # (B, E)
            len_gt = (gt[:, e0] - gt[:, e1]).norm(dim=-1)
            losses['loss_edge'] = w['edge'] * (len_pred - len_gt).abs().mean()
        if w['normal'] > 0:
            f = self.faces
            gt_normal = F.normalize(torch.cross(gt[:, f[:, 1]] - gt[:, f[:, 0]],
                                                gt[:, f[:, 2]] - gt[:, f[:, 0]], dim=-1),
                                    dim=-1)  # (B, F, 3)
            cos = 0
            for a, b in ((0, 1), (1, 2), (2, 0)):
                edge = F.normalize(pred[:, f[:, b]] - pred[:, f[:, a]], dim=-1)
                cos = cos + (edge * gt_normal).sum(-1).abs()
            losses['loss_normal'] = w['normal'] * cos.mean() / 3
        return losses

    def loss(self, feats: Sequence[torch.Tensor],
             data_samples: Sequence[BaseDataElement]) -> Dict[str, torch.Tensor]:
        """Losses against ``gt_joints``, ``gt_verts`` (root-relative metres) and
        ``gt_keypoints_2d`` (pixels of the input image, whose size is ``img_shape``)."""
        pred = self(feats)
        device = pred['joints'].device
        w = self.loss_weights
        losses = {}
        gt_joints = _stack(data_samples, 'gt_joints', device)
        if gt_joints.shape[1:] != pred['joints'].shape[1:]:
            raise UserError(f'gt_joints shape {tuple(gt_joints.shape)} does not match the '
                            f'prediction {tuple(pred["joints"].shape)} (num_joints='
                            f'{self.num_joints})')
        losses['loss_joints'] = w['joints'] * F.l1_loss(pred['joints'], gt_joints)
        joints, verts = pred['joints'], pred.get('verts')
        aligned_joints = aligned_verts = None
        if w['verts'] > 0 or w['pa_verts'] > 0 or self.faces is not None:
            gt_verts = _stack(data_samples, 'gt_verts', device)
            if gt_verts.shape[1:] != verts.shape[1:]:
                raise UserError(f'gt_verts shape {tuple(gt_verts.shape)} does not match the '
                                f'prediction {tuple(verts.shape)} (num_verts='
                                f'{self.num_verts})')
            if w['verts'] > 0:
                losses['loss_verts'] = w['verts'] * F.l1_loss(verts, gt_verts)
            # one rigid alignment of the whole hand: aligning joints and vertices separately
            # would let the mesh turn away from its own skeleton, which places it
            hand = rigid_align(torch.cat([joints, verts], 1), torch.cat([gt_joints, gt_verts], 1))
            aligned_joints, aligned_verts = hand[:, :self.num_joints], hand[:, self.num_joints:]
            if w['pa_verts'] > 0:
                losses['loss_pa_verts'] = w['pa_verts'] * F.l1_loss(aligned_verts, gt_verts)
            if self.faces is not None:
                # a fitted rotation is not trained: judge the normals after rigid alignment
                losses.update(self._mesh_losses(
                    aligned_verts if self.keypoint_branch is not None else verts, gt_verts))
        if w['pa_joints'] > 0:
            if aligned_joints is None:
                aligned_joints = rigid_align(joints, gt_joints)
            losses['loss_pa_joints'] = w['pa_joints'] * F.l1_loss(aligned_joints, gt_joints)
        if w['keypoints_2d'] > 0 or self.keypoint_branch is not None:
            kp = _stack(data_samples, 'gt_keypoints_2d', device)  # (B, J, 2) pixels
            size = torch.tensor([[ds.img_shape[1], ds.img_shape[0]] for ds in data_samples],
                                dtype=kp.dtype, device=device)[:, None]  # (B, 1, 2) = (w, h)
            kp_norm = kp / size * 2 - 1
            if w['keypoints_2d'] > 0:
                losses['loss_2d'] = w['keypoints_2d'] * F.l1_loss(pred['keypoints_2d_norm'],
                                                                  kp_norm)
            if self.keypoint_branch is not None:
                losses.update(self._keypoint_losses(pred, gt_joints, kp_norm))
        if self.mano is not None and w['betas'] > 0:
            losses['loss_betas'] = w['betas'] * pred['betas'].pow(2).mean()
        if self.lifts_keypoints:
            self._update_bone_ratios(gt_joints)
        return losses

    @torch.no_grad()
    def _update_bone_ratios(self, gt_joints: torch.Tensor) -> None:
        """Fold the labels' bone lengths over their reference bone into the running mean."""
        ref = (gt_joints[:, REF_BONE[1]] - gt_joints[:, REF_BONE[0]]).norm(dim=-1)  # (B,)
        valid = ref > 1e-6
        if not valid.any():
            return
        ratios = bone_lengths(gt_joints[valid]) / ref[valid, None]  # (b, 20)
        total = self.bone_ratio_count + ratios.shape[0]
        self.bone_ratios += ((ratios.sum(0) - ratios.shape[0] * self.bone_ratios)
                             / total).to(self.bone_ratios.dtype)
        self.bone_ratio_count.fill_(float(total))

    def _keypoint_losses(self, pred: dict, gt_joints: torch.Tensor,
                         kp_norm: torch.Tensor) -> Dict[str, torch.Tensor]:
        """L1 losses of the 2.5D keypoints: position against the 2D labels, depth against
        the root-relative ground-truth depth in crop units (times the weak-perspective scale
        that best maps the ground-truth joints onto their 2D labels)."""
        w = self.loss_weights
        gt_scale, _ = fit_weak_perspective(gt_joints[..., :2], kp_norm)  # (B,)
        gt_depth = gt_scale[:, None] * (gt_joints[..., 2] - gt_joints[:, :1, 2])  # (B, J)
        losses = dict(loss_kp_uv=w['kp_uv'] * F.l1_loss(pred['keypoints_uv'], kp_norm),
                      loss_kp_depth=w['kp_depth'] * F.l1_loss(pred['keypoints_depth'],
                                                              gt_depth))
        if w['kp_heatmap'] > 0:
            losses['loss_kp_heatmap'] = w['kp_heatmap'] * heatmap_kl_loss(
                pred['keypoints_heatmap'], kp_norm)
        return losses

    # ---------------------------------------------------------------- predict
    def depth_scale(self, pred: Dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,) the weak-perspective scale (``[-1, 1]`` crop units per metre) that
        :meth:`camera_frame` reads the root depth from: with a ``keypoint_branch`` the symmetric
        scale between the joints and the 2.5D keypoints (``spread_ratio``: rotation-invariant),
        else the regressed camera's ``pred['cam'][:, 0]``."""
        if 'keypoints_uv' in pred:
            target = torch.cat([pred['keypoints_uv'], pred['keypoints_depth'][..., None]], -1)
            return spread_ratio(pred['joints'].detach(), target.detach())
        return pred['cam'][:, 0].detach()

    def camera_frame(self, pred: Dict[str, torch.Tensor],
                     data_samples: Sequence[BaseDataElement]) -> Optional[Dict[str, torch.Tensor]]:
        """The camera-frame hand of :meth:`forward`'s outputs ``pred`` for samples that all carry
        the crop's ``K`` and one ``img_shape`` (else ``None``): a dict with ``joints`` (B, J, 3),
        ``verts`` (B, V, 3) and ``root`` (B, 3), metres. ``pred['root_depth']`` (B,), when
        given, sets the root's depth (test-time augmentation passes the views' mean). Also
        ``joints_rel`` / ``verts_rel``: the same hand relative to ``root``.

        * ``keypoint_branch`` (21 joints): the 2.5D keypoints lifted with the perspective camera
          (:func:`~hybridvit.models.heads.hand_camera.lift_keypoints`) at the root depth that
          gives their 20 bones the expected lengths
          (:func:`~hybridvit.models.heads.hand_camera.depth_from_bones`): the sample's reference
          bone ``scale`` (with ``ref_bone_scale``) times the training labels' mean proportions
          ``bone_ratios`` (the predicted hand's own proportions before any training), or
          without a reference bone the predicted hand's bones. The regressed hand is placed on
          the lifted keypoints by a similarity fit (which gives the vertices); the joints are
          ``keypoint_weight`` times the keypoints plus the rest times the placed joints, and
          ``keypoints_2d`` (B, J, 2) their projection (crop pixels), ``mesh_joints_rel``
          (B, J, 3) the placed joints relative to ``root``.
        * otherwise: :func:`~hybridvit.models.heads.hand_camera.weak_perspective_to_camera`
          with the scale of :meth:`depth_scale` (also ``cam`` (B, 3) in the dict).
        """
        if not data_samples or not all('K' in ds and 'img_shape' in ds for ds in data_samples):
            return None
        shapes = {tuple(ds.img_shape[:2]) for ds in data_samples}
        if len(shapes) != 1:
            return None
        h, w = shapes.pop()
        device = pred['joints'].device
        ref = torch.stack([torch.as_tensor(ds.get('scale', 0.0), dtype=torch.float32)
                           .reshape(()) for ds in data_samples]).to(device)
        if not self.ref_bone_scale:
            ref = torch.zeros_like(ref)
        K = _stack(data_samples, 'K', device)
        root_depth = pred.get('root_depth')
        if self.lifts_keypoints:
            return self._lifted_camera_frame(pred, K, ref, (h, w), root_depth)
        joints, verts = pred['joints'].detach(), pred['verts'].detach()
        scale = self.depth_scale(pred)
        if 'keypoints_uv' in pred:
            _, shift = fit_weak_perspective(joints[..., :2], pred['keypoints_uv'].detach(),
                                            scale=scale)
        else:
            shift = pred['cam'][:, 1:].detach()
        cam = torch.cat([scale[:, None], shift], dim=1)  # (B, 3)
        camera = weak_perspective_to_camera(joints, verts, cam, K, (h, w), ref_bone=ref,
                                            root_depth=root_depth)
        factor = camera['size_factor'][:, None, None]
        camera.update(cam=cam, joints_rel=joints * factor, verts_rel=verts * factor)
        return camera

    def _lifted_camera_frame(self, pred: Dict[str, torch.Tensor], K: torch.Tensor,
                             ref: torch.Tensor, img_size: Tuple[int, int],
                             root_depth: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """:meth:`camera_frame` of a ``keypoint_branch`` head with FreiHAND's skeleton: ``K``
        (B, 3, 3) crop pixels, reference bones ``ref`` (B,; <= 0: unknown), crop ``(h, w)``."""
        h, w = img_size
        joints, verts = pred['joints'].detach(), pred['verts'].detach()
        half = joints.new_tensor([w, h]) / 2  # pixels per normalised unit
        points = lift_keypoints((pred['keypoints_uv'].detach() + 1) * half,
                                pred['keypoints_depth'].detach() * half.mean(), K)  # (B, J, 3)
        if root_depth is None:
            lengths = bone_lengths(joints)  # (B, 20) the predicted hand's bones
            ratios = (self.bone_ratios.expand_as(lengths) if self.bone_ratio_count > 0 else
                      lengths / lengths[:, HAND_BONES.index(REF_BONE), None].clamp(min=1e-9))
            lengths = torch.where((ref > 0)[:, None], ref[:, None] * ratios, lengths)
            root_depth = depth_from_bones(points, lengths)
        # root-relative parts apart from the root itself (a far root would swamp them in float32)
        lifted_root = points[:, 0] * root_depth[:, None]  # (B, 3) camera frame
        points = (points - points[:, :1]) * root_depth[:, None, None]  # (B, J, 3) from the root
        rot, scale, shift = similarity_fit(joints, points)
        placed = (scale[:, None, None] * torch.cat([joints, verts], 1) @ rot.transpose(1, 2)
                  + shift[:, None])  # (B, J + V, 3) from the lifted root
        fused = (self.keypoint_weight * points
                 + (1 - self.keypoint_weight) * placed[:, :self.num_joints])
        offset = fused[:, :1]  # (B, 1, 3) the fused root from the lifted one
        root = lifted_root + offset[:, 0]
        joints_rel, placed = fused - offset, placed - offset
        joints = joints_rel + root[:, None]
        projected = joints @ K.transpose(1, 2)  # (B, J, 3) homogeneous crop pixels
        return dict(joints=joints, verts=placed[:, self.num_joints:] + root[:, None], root=root,
                    joints_rel=joints_rel, verts_rel=placed[:, self.num_joints:],
                    keypoints_2d=projected[..., :2] / projected[..., 2:],
                    mesh_joints_rel=placed[:, :self.num_joints])

    def predict(self, feats: Sequence[torch.Tensor],
                data_samples: Optional[Sequence[BaseDataElement]] = None
                ) -> List[BaseDataElement]:
        """Return data samples with ``pred_joints`` / ``pred_verts`` (root-relative metres),
        ``pred_cam`` and ``pred_keypoints_2d`` (pixels of the input image).

        Samples that carry the crop's intrinsics ``K`` and ``img_shape`` also get
        ``pred_joints_cam`` / ``pred_verts_cam`` / ``pred_root``: the camera-frame hand of
        :meth:`camera_frame`, built from the model's outputs, ``K`` and the sample's reference
        bone length ``scale`` (when > 0), which is what a FreiHAND submission holds; their
        ``pred_joints`` / ``pred_verts`` are then that hand minus its root (rescaled to the
        reference bone).
        """
        return self.pack_predictions(self(feats), data_samples)

    def pack_predictions(self, pred: Dict[str, torch.Tensor],
                         data_samples: Optional[Sequence[BaseDataElement]] = None
                         ) -> List[BaseDataElement]:
        """:meth:`predict`'s data samples from :meth:`forward`'s outputs ``pred`` (also used by
        :class:`~hybridvit.models.estimators.HandMeshTTAModel` on merged outputs). With a
        ``keypoint_branch`` the samples also get the branch's 2.5D keypoints,
        ``pred_keypoints_uv`` (J, 2) and root-relative ``pred_keypoints_depth`` (J,), both in
        pixels of the input image (when it has an ``img_shape``; else ``[-1, 1]`` crop units).
        ``pred_keypoints_2d`` is the projection of the camera-frame skeleton when
        :meth:`camera_frame` gives one (``keypoints_2d``), else the weak-perspective one; then
        ``pred_mesh_joints`` (J, 3) are the regressed hand's own joints placed with its mesh
        (root-relative, like ``pred_joints``)."""
        bsz = pred['joints'].shape[0]
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(bsz)]
        camera = self.camera_frame(pred, data_samples)
        results = []
        for i, ds in enumerate(data_samples):
            out = ds.clone() if isinstance(ds, BaseDataElement) else BaseDataElement()
            if camera is not None:  # the camera-frame hand, root-relative
                out.pred_joints = camera['joints_rel'][i]
                out.pred_verts = camera['verts_rel'][i]
            else:
                out.pred_joints = pred['joints'][i].detach()
                out.pred_verts = pred['verts'][i].detach()
            out.pred_cam = pred['cam'][i].detach()
            kp = pred['keypoints_2d_norm'][i].detach()
            uv = pred['keypoints_uv'][i].detach() if 'keypoints_uv' in pred else None
            depth = pred['keypoints_depth'][i].detach() if 'keypoints_uv' in pred else None
            if 'img_shape' in out:
                h, w = out.img_shape[:2]
                half = kp.new_tensor([w, h]) / 2  # pixels per normalised unit
                kp = (kp + 1) * half
                if uv is not None:
                    uv, depth = (uv + 1) * half, depth * half.mean()
            if camera is not None and 'keypoints_2d' in camera:
                kp = camera['keypoints_2d'][i]  # the camera-frame skeleton's projection
            out.pred_keypoints_2d = kp
            if uv is not None:
                out.pred_keypoints_uv, out.pred_keypoints_depth = uv, depth
            if camera is not None:
                out.pred_joints_cam = camera['joints'][i]
                out.pred_verts_cam = camera['verts'][i]
                out.pred_root = camera['root'][i]
                if 'mesh_joints_rel' in camera:
                    out.pred_mesh_joints = camera['mesh_joints_rel'][i]
            results.append(out)
        return results
