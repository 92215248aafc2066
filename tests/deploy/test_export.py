"""ONNX export of fused models: ONNX Runtime must reproduce PyTorch (< 1e-4 relative error),
dynamic input sizes must work, the CLI must fail cleanly, nothing half-written may remain."""
import importlib.util
import os.path as osp
import warnings

import numpy as np
import pytest
import torch

from hybridvit.deploy import (DET_NOT_EXPORTED, check_onnx, export_onnx, exportable_part,
                              fold_output_norms, output_names)
from hybridvit.models.backbones import FastViT, MobileViT
from hybridvit.models.layers.mobilevit_block import MobileViTBlock
from hybridvit.models.utils import reparameterize_model

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG_CFG = osp.join(ROOT, 'configs/seg/fpn_fastvit-t8_1xb4-300it_mini-ade-256x256.py')
DET_CFG = osp.join(ROOT, 'configs/det/mask-rcnn_fastvit-t8_fpn_1x_coco.py')
HAND_CFG = osp.join(ROOT, 'configs/hand/hand-mesh_fastvit-t8_mini-freihand-128.py')
TOL = 1e-4


def _tool():
    spec = importlib.util.spec_from_file_location(
        'export_onnx_tool', osp.join(ROOT, 'tools/deploy/export_onnx.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _init(config, **cfg_options):
    from hybridvit.apis import init_model
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return init_model(config, None, cfg_options=cfg_options or None)


def _randomise_bn(model):
    """Non-trivial BN statistics so that folding mistakes would show."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return model


@pytest.mark.parametrize('backbone, size, second', [
    (lambda: FastViT('t8'), (64, 64), (2, 3, 96, 80)),
    # 96: the stride-32 map is 3x3 (resized to the 2x2 patch grid); 128: 4x4 (no resize)
    (lambda: MobileViT('xxs', out_indices=(0, 1, 2, 3, 4)), (96, 96), (2, 3, 128, 112)),
])
def test_fused_backbone_matches_ort_with_dynamic_size(backbone, size, second, tmp_path):
    model = reparameterize_model(_randomise_bn(backbone().eval()))
    module, prefix, note = exportable_part(model, None, 'backbone')
    example = torch.randn(1, 3, *size)
    out = str(tmp_path / 'backbone.onnx')
    checks = export_onnx(module, example, out, names=output_names(module, example, prefix),
                         dynamic=True, check_inputs=[torch.randn(*second)])
    assert note is None and osp.isfile(out)
    assert [c['shape'] for c in checks] == [(1, 3, *size), second]
    assert all(c['max_rel'] < TOL for c in checks)
    # a third, odd size through the saved file
    third = check_onnx(out, module, [torch.randn(1, 3, 97, 131)])
    assert third[0]['max_rel'] < TOL
    # the trace-friendly MobileViT unfold was only patched during the export
    assert not any('_global' in vars(m) for m in model.modules()
                   if isinstance(m, MobileViTBlock))


def test_static_export_fails_cleanly_and_writes_nothing(tmp_path):
    module, _, _ = exportable_part(reparameterize_model(FastViT('t8').eval()), None, 'backbone')
    out = tmp_path / 'never.onnx'
    with pytest.raises(RuntimeError, match='relative error'):
        export_onnx(module, torch.randn(1, 3, 64, 64), str(out), tol=0.0)
    assert list(tmp_path.iterdir()) == []


def test_fold_output_norms_keeps_segmentor_logits():
    model = _randomise_bn(_init(SEG_CFG))
    fused = reparameterize_model(model)
    assert fold_output_norms(fused) == [0, 1, 2, 3]
    assert isinstance(fused.backbone.norm0, torch.nn.Identity)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        ref, new = model._forward(x), fused._forward(x)
    assert float((ref - new).abs().max() / ref.abs().max()) < TOL


def test_segmentor_cli_export_matches(tmp_path, capsys):
    out = tmp_path / 'seg.onnx'
    _tool().main([SEG_CFG, 'none', str(out), '--shape', '64', '64', '--dynamic'])
    text = capsys.readouterr().out
    assert 'RANDOM weights' in text and 'seg_logits (1, 6, 16, 16)' in text
    rels = [float(v) for v in
            [line.rsplit('relative error ', 1)[1] for line in text.splitlines()
             if line.startswith('ONNX Runtime vs PyTorch')]]
    assert len(rels) == 2 and max(rels) < TOL  # static size + a second (dynamic) size
    import onnxruntime as ort
    sess = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    assert sess.run(None, {'input': np.zeros((1, 3, 96, 64), np.float32)})[0].shape == \
        (1, 6, 24, 16)


@pytest.mark.parametrize('size,head,extra', [
    # the mini recipe: pose from the similarity fit onto 2.5D keypoints (Horn's quaternion by
    # repeated squaring exports as plain MatMuls, an SVD would not export)
    (64, {}, ['global_rot', 'keypoints_depth', 'keypoints_heatmap', 'keypoints_uv']),
    (96, {'model.head.keypoint_branch': None, 'model.head.global_rotation': True},
     ['global_rot']),
    (96, {'model.head.keypoint_branch': None}, [])])
def test_hand_model_export_matches(tmp_path, size, head, extra):
    # 64 / 96 px -> 2x2 / 3x3 last stage, pooled to the head's 4x4 grid (not a divisor)
    model = reparameterize_model(_init(HAND_CFG, **{'model.head.faces': None, **head}))
    if model.head.keypoint_branch is not None:
        # a trained-like hand and keypoints: at initialisation both are ~1e-4 and the rotation
        # fit is ill-conditioned (any float difference changes it), which says nothing of export
        torch.manual_seed(0)
        with torch.no_grad():
            model.head.fc_out.weight.normal_(0, 0.01)
            model.head.keypoint_branch.predict_maps.weight.normal_(0, 0.05)
    module, prefix, _ = exportable_part(model, 'hand', 'model')
    example = torch.randn(1, 3, size, size)
    names = output_names(module, example, prefix)
    assert names == sorted(['cam', 'joints', 'keypoints_2d_norm', 'verts'] + extra)
    checks = export_onnx(module, example, str(tmp_path / 'hand.onnx'), names=names)
    assert checks[0]['max_rel'] < TOL


def test_maskrcnn_backbone_neck_export_matches(tmp_path, capsys):
    out = tmp_path / 'det.onnx'
    _tool().main([DET_CFG, 'none', str(out), '--shape', '64', '96', '--part', 'neck'])
    text = capsys.readouterr().out
    assert 'NOT EXPORTED' in text and DET_NOT_EXPORTED in text
    assert 'feat4 (1, 256, 1, 2)' in text  # 5 FPN levels
    rel = float(text.split('max relative error ')[-1].split()[0])
    assert rel < TOL and out.is_file()


@pytest.mark.parametrize('argv, message', [
    (['CKPT_MISSING', 'x.onnx'], 'checkpoint not found'),
    (['none', 'x.onnx', '--shape', '0', '64'], '--shape must be at least 32'),
    (['none', 'x.onnx', '--shape', '64', '100'], 'multiples of 32'),
])
def test_cli_user_errors_exit_2_with_one_line(argv, message, tmp_path, monkeypatch, capsys):
    from hybridvit.utils.cli import run_cli
    tool = _tool()
    argv = [str(tmp_path / a) if a in ('CKPT_MISSING', 'x.onnx') else a for a in argv]
    config = DET_CFG if message == 'multiples of 32' else SEG_CFG
    monkeypatch.setattr('sys.argv', ['export_onnx.py', config] + argv)
    with pytest.raises(SystemExit) as exc:
        run_cli(tool.main, 'export_onnx.py')
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / 'x.onnx').exists()


def test_coreml_export_of_fused_backbone(tmp_path):
    pytest.importorskip('coremltools')
    from hybridvit.deploy.coreml_export import export_coreml
    module, _, _ = exportable_part(reparameterize_model(FastViT('t8').eval()), None,
                                   'backbone')
    out = tmp_path / 't8.mlpackage'
    names = export_coreml(module, (1, 3, 64, 64), str(out))
    # running it needs macOS; here: the saved ML Program's interface and operations
    import collections

    import coremltools as ct
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType
    spec = ct.utils.load_spec(str(out))
    (inp, ) = spec.description.input
    assert list(inp.type.multiArrayType.shape) == [1, 3, 64, 64]
    assert inp.type.multiArrayType.dataType == ArrayFeatureType.FLOAT32
    outputs = spec.description.output
    assert [o.name for o in outputs] == names
    # T8 channels at strides 4, 8, 16, 32; fp16 compute precision -> fp16 outputs (iOS16)
    assert [list(o.type.multiArrayType.shape) for o in outputs] == [
        [1, 48, 16, 16], [1, 96, 8, 8], [1, 192, 4, 4], [1, 384, 2, 2]]
    assert {o.type.multiArrayType.dataType for o in outputs} == {ArrayFeatureType.FLOAT16}
    main = spec.mlProgram.functions['main']
    ops = collections.Counter(op.type for op in main.block_specializations[main.opset].operations)
    # one conv per fused PyTorch conv; the only BatchNorms are the 4 output norms (the
    # branches' BNs were folded before export)
    modules = list(module.modules())
    assert ops['conv'] == sum(isinstance(m, torch.nn.Conv2d) for m in modules) == 49
    assert ops['batch_norm'] == sum(isinstance(m, torch.nn.BatchNorm2d) for m in modules) == 4
    assert ops['gelu'] == 16 and ops['cast'] == 1  # fp32 input cast once to fp16


def test_quantize_tool_runs_on_mini_ade(tmp_path, capsys):
    from hybridvit.datasets.generators import make_mini_ade
    work = tmp_path / 'work'
    make_mini_ade(str(work / 'data' / 'mini_ade'), num_train=4, num_val=2, image_size=64,
                  quiet=True)
    spec = importlib.util.spec_from_file_location(
        'quantize_tool', osp.join(ROOT, 'tools/deploy/quantize_onnx.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    import os
    cwd = os.getcwd()
    os.chdir(work)  # the config's data_root (data/mini_ade) is relative
    try:
        tool.main([osp.join(ROOT, SEG_CFG), 'none', str(tmp_path), '--num-calib', '2',
                   '--max-val', '2',
                   '--runs', '1', '--threads', '1'])
    finally:
        os.chdir(cwd)
    import json
    report = json.loads((tmp_path / 'quantization.json').read_text())
    # fp32 ONNX scores exactly like PyTorch (same post-processing); int8 exists and runs
    assert report['metrics']['onnx_fp32']['mIoU'] == pytest.approx(
        report['metrics']['pytorch_fp32']['mIoU'], abs=0.01)
    assert (tmp_path / 'model_int8.onnx').stat().st_size < \
        (tmp_path / 'model_fp32.onnx').stat().st_size
