"""2.5D hand keypoints by integral (soft-argmax) regression on a fused feature map.

Integral regression (Sun et al., "Integral Human Pose Regression", ECCV 2018,
https://arxiv.org/abs/1711.08229) reads a keypoint's position as the expectation of its softmax
heatmap, so it is learned with a plain L1 loss on coordinates yet keeps the translation
equivariance of a heatmap. Depth follows the 2.5D representation of Iqbal et al. ("Hand Pose
Estimation via Latent 2.5D Heatmap Regression", ECCV 2018, https://arxiv.org/abs/1804.09534):
each joint also has a depth map, read out under the same softmax weights.

Positions are normalised crop coordinates (``[-1, 1]`` across the input image, the convention of
:class:`~hybridvit.models.heads.HandMeshHead`); depths are root-relative and in the same units
(metres times the weak-perspective scale), so ``(u, v, d)`` is the hand's camera-frame pose up
to one scale and translation.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule

from hybridvit.utils.errors import UserError


def _cell_centres(size: int, like: torch.Tensor) -> torch.Tensor:
    """(size,) centres of ``size`` equal cells spanning ``[-1, 1]`` (dtype / device of ``like``)."""
    return (torch.arange(size, dtype=like.dtype, device=like.device) + 0.5) * (2.0 / size) - 1.0


def soft_argmax_2d(logits: torch.Tensor, values: torch.Tensor, window: Optional[int] = None
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Expected position and value under ``softmax(logits)`` per channel.

    Args:
        logits (torch.Tensor): (B, J, H, W) heatmap logits.
        values (torch.Tensor): (B, J, H, W) per-pixel values (e.g. depth).
        window (int, optional): restrict the softmax to the cells at most ``window`` rows and
            columns from the map's peak (a local soft-argmax). The mass a heatmap leaves on the
            rest of the map pulls the plain expectation towards the map's centre; the window
            removes that pull. ``None``: the whole map.

    Returns:
        tuple: (B, J, 2) expected ``(x, y)`` of the pixel centres in ``[-1, 1]`` coordinates
        and (B, J) expected value.
    """
    bsz, joints, h, w = logits.shape
    if window is not None:
        logits = logits.masked_fill(~_peak_window(logits, window), float('-inf'))
    prob = logits.flatten(2).softmax(dim=-1).view(bsz, joints, h, w)
    x = (prob.sum(dim=2) * _cell_centres(w, prob)).sum(dim=-1)  # (B, J): E[x] of the marginal
    y = (prob.sum(dim=3) * _cell_centres(h, prob)).sum(dim=-1)  # (B, J)
    value = (prob * values).sum(dim=(2, 3))  # (B, J)
    return torch.stack([x, y], dim=-1), value


def _peak_window(logits: torch.Tensor, window: int) -> torch.Tensor:
    """(B, J, H, W) bool: cells within ``window`` rows and columns of each map's maximum."""
    h, w = logits.shape[-2:]
    peak = logits.flatten(2).argmax(dim=-1)  # (B, J) flat index
    row, col = torch.div(peak, w, rounding_mode='floor'), peak % w  # (B, J)
    rows = torch.arange(h, device=logits.device)
    cols = torch.arange(w, device=logits.device)
    near_row = (rows - row[..., None]).abs() <= window  # (B, J, H)
    near_col = (cols - col[..., None]).abs() <= window  # (B, J, W)
    return near_row[..., :, None] & near_col[..., None, :]


def heatmap_kl_loss(logits: torch.Tensor, uv: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """KL divergence from a Gaussian at the labelled position to ``softmax(logits)``.

    The distribution regulariser of DSNT (Nibali et al., "Numerical Coordinate Regression with
    Convolutional Neural Networks", 2018, https://arxiv.org/abs/1801.07372): a coordinate loss
    alone gives a flat heatmap almost no gradient, a per-pixel target gives every pixel one (the
    gradient is ``softmax - target``), which is what makes the keypoints learnable from scratch.

    Args:
        logits (torch.Tensor): (B, J, H, W) heatmap logits.
        uv (torch.Tensor): (B, J, 2) labelled ``(x, y)`` in ``[-1, 1]`` coordinates.
        sigma (float): Gaussian standard deviation in heatmap cells. Defaults to 1.

    Returns:
        torch.Tensor: the mean KL over the keypoints whose Gaussian falls on the map.
    """
    bsz, joints, h, w = logits.shape
    dx = ((_cell_centres(w, uv) - uv[..., :1]) * (w / 2.0)) ** 2  # (B, J, W) distance^2, cells
    dy = ((_cell_centres(h, uv) - uv[..., 1:]) * (h / 2.0)) ** 2  # (B, J, H)
    gauss = torch.exp(-(dy[..., :, None] + dx[..., None, :]) / (2 * sigma ** 2))  # (B, J, H, W)
    mass = gauss.sum(dim=(2, 3))  # (B, J)
    valid = mass > 1e-3  # a keypoint far outside the crop has no target on the map
    target = gauss / mass.clamp(min=1e-12)[..., None, None]
    log_prob = logits.flatten(2).log_softmax(dim=-1).view_as(logits)
    kl = (target * (torch.log(target.clamp(min=1e-12)) - log_prob)).sum(dim=(2, 3))  # (B, J)
    return (kl * valid).sum() / valid.sum().clamp(min=1)


class IntegralKeypointBranch(BaseModule):
    """FPN-style fusion of backbone maps + integral 2.5D keypoint read-out.

    Paper: https://arxiv.org/abs/1711.08229 (integral regression),
    https://arxiv.org/abs/1804.09534 (2.5D hand keypoints).

    Each used map gets a 1x1 lateral conv to ``channels``; coarser maps are upsampled
    (bilinear) to the finest one and summed; two 3x3 conv-BN-GELU layers follow and a 1x1 conv
    gives one heatmap and one depth map per joint.

    Args:
        in_channels (Sequence[int]): channels of the used backbone maps.
        in_index (Sequence[int]): their positions in the backbone outputs.
        num_joints (int): keypoints. Defaults to 21.
        channels (int): width of the fused map. Defaults to 128.
        test_window (int, optional): in eval mode, read each keypoint with a local
            soft-argmax over the cells at most this many rows / columns from its heatmap's peak
            (:func:`soft_argmax_2d`); training always uses the whole map, which is what the
            coordinate losses need to reach every cell. ``None`` (default): the whole map.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self, in_channels: Sequence[int], in_index: Sequence[int],
                 num_joints: int = 21, channels: int = 128, test_window: Optional[int] = None,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels, self.in_index = list(in_channels), list(in_index)
        if not self.in_index or len(self.in_channels) != len(self.in_index):
            raise UserError(f'keypoint_branch: in_channels {self.in_channels} and in_index '
                            f'{self.in_index} must be non-empty and of the same length')
        if test_window is not None and (isinstance(test_window, bool) or
                                        not isinstance(test_window, int) or test_window < 1):
            raise UserError(f'keypoint_branch: test_window must be a positive int or None, got '
                            f'{test_window!r}')
        self.num_joints, self.test_window = num_joints, test_window
        self.laterals = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in self.in_channels)
        act = dict(type='GELU')
        self.fuse = nn.Sequential(
            ConvModule(channels, channels, 3, padding=1, norm_cfg=dict(type='BN'), act_cfg=act),
            ConvModule(channels, channels, 3, padding=1, norm_cfg=dict(type='BN'), act_cfg=act))
        self.predict_maps = nn.Conv2d(channels, 2 * num_joints, 1)
        nn.init.normal_(self.predict_maps.weight, std=1e-3)
        nn.init.zeros_(self.predict_maps.bias)

    def forward(self, feats: Sequence[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backbone maps -> ``uv`` (B, J, 2) in ``[-1, 1]``, root-relative ``depth`` (B, J)
        and the heatmap ``logits`` (B, J, H, W) at the finest input resolution."""
        maps = []
        for i, lateral in zip(self.in_index, self.laterals):
            try:
                maps.append(lateral(feats[i]))
            except IndexError:
                raise UserError(f'keypoint_branch: in_index {i} out of range for the '
                                f'{len(feats)} backbone outputs (check the backbone\'s '
                                'out_indices)') from None
        size = max((m.shape[-2:] for m in maps), key=lambda hw: hw[0] * hw[1])
        fused = sum(m if m.shape[-2:] == size else
                    F.interpolate(m, size=size, mode='bilinear', align_corners=False)
                    for m in maps)  # (B, C, H, W) at the finest resolution
        out = self.predict_maps(self.fuse(fused))  # (B, 2J, H, W)
        logits, depth_maps = out[:, :self.num_joints], out[:, self.num_joints:]
        uv, depth = soft_argmax_2d(logits, depth_maps,
                                   window=None if self.training else self.test_window)
        return uv, depth - depth[:, :1], logits  # depth relative to the root joint
