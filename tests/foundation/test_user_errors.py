"""Known user mistakes raise :class:`UserError` (or :class:`CheckpointMismatchError`) naming the
key / value / file, so that the tools print them as one line (``run_cli``); a bug keeps its
built-in type and its traceback. See issue 12 and docs/robustness.md."""
import json
import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement

import hybridvit.compat as compat
from hybridvit.models.heads import HandMeshHead
from hybridvit.models.heads.mano import load_mano_params
from hybridvit.models.layers import (ConvNormAct, InvertedResidual, MobileOneBlock,
                                     MobileViTBlock, MobileViTv2Block, RepMixerBlock,
                                     ReparamLargeKernelConv)
from hybridvit.models.layers.conv_bn import fuse_bn_state_dict
from hybridvit.utils.cli import checkpoint_or_none, trust_checkpoint_hint, user_error_message
from hybridvit.utils.errors import UserError


def _raises_user_error(fn, pattern):
    """``fn()`` raises exactly a UserError whose message matches ``pattern``; the tools print
    that message, on one line."""
    with pytest.raises(UserError, match=pattern) as info:
        fn()
    message = user_error_message(info.value)
    assert message is not None and '\n' not in message
    return str(info.value)


# ------------------------------------------------------------------- config values of layers
@pytest.mark.parametrize('build,pattern', [
    (lambda: RepMixerBlock(8, token_mixer='attention'),
     r"^RepMixerBlock: token_mixer must be 'repmixer' or 'pooling', got 'attention'$"),
    (lambda: MobileOneBlock(8, 8, kernel_size=4),
     r'^MobileOneBlock: kernel_size must be odd, got 4$'),
    (lambda: MobileOneBlock(6, 8, kernel_size=3, groups=4),
     r'^MobileOneBlock: in_channels \(6\) and out_channels \(8\) must be divisible by groups '
     r'\(4\)$'),
    (lambda: MobileOneBlock(8, 16, kernel_size=1, num_conv_branches=0),
     r'MobileOneBlock needs at least one branch'),
    (lambda: ReparamLargeKernelConv(8, 8, kernel_size=6),
     r'^ReparamLargeKernelConv: kernel_size must be odd, got 6$'),
    (lambda: ReparamLargeKernelConv(8, 8, kernel_size=3, small_kernel=5),
     r'^ReparamLargeKernelConv: small_kernel must be odd and <= kernel_size \(3\), got 5$'),
    (lambda: ConvNormAct(6, 8, 3, groups=4),
     r'^ConvNormAct: in_channels \(6\) and out_channels \(8\) must be divisible by groups '
     r'\(4\)$'),
    (lambda: InvertedResidual(8, 8, stride=3),
     r'^InvertedResidual stride must be 1 or 2, got 3$'),
    (lambda: MobileViTBlock(8, 16, patch_size=0),
     r'^MobileViTBlock: patch_size must be >= 1, got 0$'),
    (lambda: MobileViTv2Block(8, 16, patch_size=0),
     r'^MobileViTv2Block: patch_size must be >= 1, got 0$'),
    (lambda: MobileViTv2Block(8, 16, depth=2, drop_path=[0.1]),
     r'^MobileViTv2Block: drop_path needs one rate or 2, got \[0\.1\]$'),
    (lambda: MobileViTv2Block(8, 16, out_channels=12, fuse_local=True),
     r'fuse_local .* out_channels must equal in_channels, got 12 and 8$'),
])
def test_layer_config_mistakes_are_user_errors(build, pattern):
    _raises_user_error(build, pattern)


def test_folding_a_state_dict_without_its_conv_names_the_key():
    sd = {'stem.bn.running_mean': torch.zeros(4), 'stem.bn.running_var': torch.ones(4)}
    _raises_user_error(lambda: fuse_bn_state_dict(sd),
                       r'cannot fold "stem\.bn" into a conv: the state dict has no '
                       r'"stem\.conv\.weight"')


# ------------------------------------------------------------------------- hand mesh head
@pytest.mark.parametrize('kwargs,pattern', [
    (dict(in_channels=8, pool_size=0), r'^HandMeshHead: pool_size must be a positive integer, '
                                       r'got 0$'),
    (dict(in_channels=8, pool_size=1.5), r'pool_size .* got 1\.5$'),
    (dict(in_channels=[8, 16], in_index=-1), r'in_channels \[8, 16\] and in_index \[-1\] must '
                                             r'have the same length'),
    (dict(in_channels=8, loss_weights=dict(joint=1.0)), r"unknown loss_weights keys \['joint'\]; "
                                                        r"expected a subset of \['betas', "),
    (dict(in_channels=8, num_joints=0), r'num_joints and num_verts must be positive, got 0, 778'),
    (dict(in_channels=8, num_verts=3, faces=[[0, 1, 5]]),
     r'faces index vertices 0\.\.5 but the mesh has 3 vertices'),
    (dict(in_channels=8, faces=[[0, 1]]), r'^faces must have shape \(F, 3\), got \(1, 2\)$'),
    (dict(in_channels=8, global_rotation=True, mano_model_path='MANO_RIGHT.pkl'),
     r"global_rotation / keypoint_branch are for the MANO-free head; MANO mode "
     r"\(mano_model_path='MANO_RIGHT\.pkl'\)"),
    (dict(in_channels=8, global_rotation=True,
          keypoint_branch=dict(in_channels=[8], in_index=[0])),
     r'either global_rotation=True .* or keypoint_branch'),
    (dict(in_channels=8, keypoint_branch=dict(in_channels=[8, 16], in_index=[0])),
     r'keypoint_branch: in_channels \[8, 16\] and in_index \[0\] must be non-empty'),
])
def test_hand_mesh_head_config_mistakes_are_user_errors(kwargs, pattern):
    _raises_user_error(lambda: HandMeshHead(**kwargs), pattern)


def test_hand_mesh_head_faces_file_mistakes_name_the_file(tmp_path):
    broken = tmp_path / 'faces.json'
    broken.write_text('[[0, 1, 2], [1, 2')
    message = _raises_user_error(lambda: HandMeshHead(in_channels=8, faces=str(broken)),
                                 'faces file .*faces.json: cannot read it')
    assert str(broken) in message
    flat = tmp_path / 'faces.npy'
    np.save(flat, np.arange(6))
    _raises_user_error(lambda: HandMeshHead(in_channels=8, faces=str(flat)),
                       r'faces file .*faces\.npy must have shape \(F, 3\), got \(6,\)')
    words = tmp_path / 'words.json'
    words.write_text(json.dumps([['a', 'b', 'c']]))
    _raises_user_error(lambda: HandMeshHead(in_channels=8, faces=str(words)),
                       r'faces file .*words\.json: expected \(F, 3\) integer vertex indices')
    # a missing file stays a FileNotFoundError (an OSError naming the path: one line too)
    with pytest.raises(FileNotFoundError):
        HandMeshHead(in_channels=8, faces=str(tmp_path / 'nope.json'))


def _sample(num_joints=21, num_verts=5, drop=()):
    fields = dict(gt_joints=torch.zeros(num_joints, 3), gt_verts=torch.zeros(num_verts, 3),
                  gt_keypoints_2d=torch.zeros(num_joints, 2))
    for key in drop:
        del fields[key]
    return BaseDataElement(metainfo=dict(img_shape=(32, 32), img_path='crops/0001.jpg'),
                           **fields)


def test_hand_mesh_head_data_mistakes_are_user_errors():
    torch.manual_seed(0)
    head = HandMeshHead(in_channels=[8, 8], in_index=[0, 3], hidden_dims=(16,), num_verts=5)
    feats = (torch.randn(1, 8, 4, 4), )
    _raises_user_error(lambda: head(feats),
                       r"^HandMeshHead: in_index 3 out of range for the 1 backbone outputs "
                       r"\(check the backbone's out_indices\)$")
    head = HandMeshHead(in_channels=8, hidden_dims=(16,), num_verts=5)
    message = _raises_user_error(lambda: head.loss(feats, [_sample(drop=('gt_verts', ))]),
                                 r"has no 'gt_verts', needed for the hand mesh loss")
    assert 'crops/0001.jpg' in message
    _raises_user_error(lambda: head.loss(feats, [_sample(num_joints=20)]),
                       r'gt_joints shape \(1, 20, 3\) does not match the prediction '
                       r'\(1, 21, 3\) \(num_joints=21\)')
    _raises_user_error(lambda: head.loss(feats, [_sample(num_verts=6)]),
                       r'gt_verts shape \(1, 6, 3\) does not match the prediction \(1, 5, 3\) '
                       r'\(num_verts=5\)')


# ------------------------------------------------------------------------------ MANO files
def test_mano_file_mistakes_name_the_file(tmp_path):
    garbage = tmp_path / 'MANO_RIGHT.pkl'
    garbage.write_bytes(b'not a pickle at all')
    message = _raises_user_error(lambda: load_mano_params(str(garbage)),
                                 r'MANO model file .*MANO_RIGHT\.pkl is not a readable pickle')
    assert str(garbage) in message
    a_list = tmp_path / 'list.pkl'
    a_list.write_bytes(pickle.dumps([1, 2, 3]))
    _raises_user_error(lambda: load_mano_params(str(a_list)),
                       r'list\.pkl: expected a pickled dict, got list')
    partial = tmp_path / 'partial.pkl'
    partial.write_bytes(pickle.dumps(dict(v_template=np.zeros((4, 3)))))
    _raises_user_error(lambda: load_mano_params(str(partial)),
                       r"partial\.pkl: missing MANO keys \['shapedirs', 'posedirs', ")


# --------------------------------------------------------------------------- ONNX detector
@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # torch's TorchScript ONNX exporter
def test_detector_onnx_mistakes_are_user_errors(tmp_path):
    from hybridvit.deploy.detector_onnx import OnnxDetector, export_whole_detector
    out = tmp_path / 'det.onnx'
    _raises_user_error(lambda: export_whole_detector(None, None, str(out), opset=11),
                       r'opset must be >= 16 \(RoiAlign with half_pixel\), got 11$')
    assert not out.exists()
    classifier = str(tmp_path / 'classifier.onnx')
    torch.onnx.export(torch.nn.Conv2d(3, 2, 1), (torch.zeros(1, 3, 8, 8), ), classifier,
                      dynamo=False, opset_version=17, input_names=['image'],
                      output_names=['logits'])
    message = _raises_user_error(lambda: OnnxDetector(classifier, cfg=None),
                                 r"is not a whole-detector graph \(outputs \['logits'\]")
    assert message.startswith(classifier)


# ------------------------------------------------------------------------ evaluation input
def test_hand_mesh_metric_inputs_are_user_errors():
    from hybridvit.evaluation.functional.hand_mesh import pck_auc, per_sample_errors
    good = np.zeros((2, 21, 3))
    verts = np.zeros((2, 5, 3))
    nan = good.copy()
    nan[1, 3, 0] = np.nan
    _raises_user_error(lambda: per_sample_errors(nan, good, verts, verts),
                       r'^pred_joints contains NaN or Inf values$')
    _raises_user_error(lambda: per_sample_errors(good, good, [[[0, 0, 0]], [[0, 0]]], verts),
                       r'^pred_verts is not a numeric array of shape \(N, P, 3\)')
    _raises_user_error(lambda: per_sample_errors(good[:, :20], good, verts, verts),
                       r'^pred_joints must have 21 points per sample, got shape \(2, 20, 3\)$')
    _raises_user_error(lambda: per_sample_errors(good, good, verts[:1], verts),
                       r'^pred_verts has 1 samples but gt_joints has 2$')
    _raises_user_error(lambda: per_sample_errors(good, good, verts, verts, root_index=21),
                       r'^root_index 21 out of range for 21 joints$')
    _raises_user_error(lambda: pck_auc(np.zeros(5)), r'errors must have shape \(N, K\)')


# ---------------------------------------------------------------- unsafe checkpoint message
class _RunsCode:
    """Unpickles to ``os.getcwd()``: any callable a file names would run the same way."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_unsafe_checkpoint_message_names_the_api_and_tools_add_their_option(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'payload': _RunsCode()}, path)
    with pytest.raises(compat.UnsafeCheckpointError) as info:
        compat.load_any_checkpoint(path)
    err = info.value
    library = str(err)
    # library code names its own API, never a command-line option
    assert '--trust-checkpoint' not in library
    assert library.startswith(f'refusing to unpickle checkpoint {path}: ')
    assert library.endswith(f'If you trust this file, call '
                            f'hybridvit.compat.trust_checkpoint({path!r}) before loading it')
    assert err.filename == path and 'getcwd' in err.detail
    # the error survives pickling (e.g. sent between processes) with its message
    assert str(pickle.loads(pickle.dumps(err))) == library
    assert user_error_message(err) == library

    for option, expected in (('--trust-checkpoint', '--trust-checkpoint'),
                             ('--trust-checkpoint {filename}', f'--trust-checkpoint {path}')):
        with pytest.raises(compat.UnsafeCheckpointError) as info:
            with trust_checkpoint_hint(option):
                compat.load_any_checkpoint(path)
        assert str(info.value) == (f'refusing to unpickle checkpoint {path}: {err.detail}. '
                                   f'If you trust this file, pass {expected}')
        assert user_error_message(info.value) == str(info.value)
        assert str(info.value.__cause__) == library  # --debug shows the original too
    # other errors pass through the block unchanged
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        with trust_checkpoint_hint():
            compat.load_any_checkpoint(str(tmp_path / 'nope.pth'))


def test_checkpoint_argument_none_or_an_existing_file(tmp_path):
    assert checkpoint_or_none('none') is None and checkpoint_or_none('None') is None
    ckpt = tmp_path / 'model.pth'
    ckpt.write_bytes(b'x')
    assert checkpoint_or_none(str(ckpt)) == str(ckpt)
    with pytest.raises(UserError, match=r'checkpoint not found: .*missing\.pth \(train first\)'):
        checkpoint_or_none(str(tmp_path / 'missing.pth'), 'train first')
    with pytest.raises(UserError, match='checkpoint not found'):
        checkpoint_or_none(str(tmp_path))  # a folder is not a checkpoint
