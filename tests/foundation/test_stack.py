"""The OpenMMLab stack imports and its compiled CPU ops run."""
import torch


def test_mmcv_ops_run_on_cpu():
    from mmcv.ops import RoIAlign, nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert torch.allclose(dets[:, 4], torch.tensor([0.9, 0.7]))

    feat = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    roi = torch.tensor([[0., 0., 0., 4., 4.]])
    out = RoIAlign(output_size=(1, 1), spatial_scale=1.0, sampling_ratio=2, aligned=False)(feat, roi)
    # average over the whole 4x4 map sampled at bin centres -> the map mean
    assert torch.allclose(out.flatten(), feat.mean().view(1), atol=1e-4)


def test_versions_of_tested_stack():
    import mmcv
    import mmdet
    import mmengine
    import mmseg
    assert mmcv.__version__.startswith('2.1')
    assert mmdet.__version__.startswith('3.3')
    assert mmseg.__version__.startswith('1.2')
    assert mmengine.__version__.startswith('0.10')
