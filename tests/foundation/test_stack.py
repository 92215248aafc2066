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
    out = RoIAlign(output_size=(2, 2), spatial_scale=1.0, sampling_ratio=1, aligned=True)(feat, roi)
    # aligned: the box is shifted by -0.5 px, bin centres fall at (0.5, 0.5), (0.5, 2.5), ...:
    # bilinear samples there are the means of the 2x2 pixel blocks
    expected = feat.view(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(2, 2, 4).mean(-1)
    assert torch.allclose(out.view(2, 2), expected, atol=1e-5)


def test_versions_of_tested_stack():
    import mmcv
    import mmdet
    import mmengine
    import mmseg
    assert mmcv.__version__.startswith('2.1')
    assert mmdet.__version__.startswith('3.3')
    assert mmseg.__version__.startswith('1.2')
    assert mmengine.__version__.startswith('0.10')
