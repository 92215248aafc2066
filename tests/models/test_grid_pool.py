"""grid_avg_pool2d: equals adaptive_avg_pool2d and exports to ONNX for sizes it cannot."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from hybridvit.models.layers.grid_pool import grid_avg_pool2d


@pytest.mark.parametrize('size', [(1, 1), (2, 3), (4, 4), (7, 7), (5, 9), (13, 6)])
@pytest.mark.parametrize('cells', [1, 2, 3, 4])
def test_equals_adaptive_avg_pool(size, cells):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(grid_avg_pool2d(x, cells), F.adaptive_avg_pool2d(x, cells),
                               atol=1e-6, rtol=1e-5)


def test_rejects_zero_cells():
    with pytest.raises(ValueError, match='cells'):
        grid_avg_pool2d(torch.zeros(1, 1, 4, 4), 0)


class _Pool4(nn.Module):
    def forward(self, x):
        return grid_avg_pool2d(x, 4)


def test_exports_where_adaptive_pooling_cannot(tmp_path):
    """7x7 -> 4x4 (a 224-px FastViT crop) exports, with a dynamic input size, and ONNX Runtime
    matches PyTorch at the traced and at another size."""
    ort = pytest.importorskip('onnxruntime')
    path = str(tmp_path / 'pool.onnx')
    x = torch.randn(1, 8, 7, 7)
    torch.onnx.export(_Pool4(), (x, ), path, input_names=['x'], output_names=['y'],
                      dynamic_axes={'x': {2: 'h', 3: 'w'}}, opset_version=17, dynamo=False)
    sess = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for shape in ((1, 8, 7, 7), (1, 8, 5, 11)):
        inp = torch.randn(*shape)
        out = sess.run(None, {'x': inp.numpy()})[0]
        np.testing.assert_allclose(out, F.adaptive_avg_pool2d(inp, 4).numpy(), atol=1e-5)
