"""A test-only backbone with a deliberate programming bug in ``forward`` (a ``KeyError``), for
the test that such a bug shows its traceback from ``tools/train.py`` instead of being reported
as a one-line user error. Imported by a tiny config through
``custom_imports=dict(imports=['hybridvit.models', '_buggy_model'])`` with tests/robustness on
PYTHONPATH."""
from hybridvit.models.backbones.fastvit import FastViT
from hybridvit.registry import MODELS


@MODELS.register_module()
class BuggyFastViT(FastViT):
    """FastViT whose ``forward`` looks up a stage name that was never stored."""

    def forward(self, x):
        features = {f'stage{i}': out for i, out in enumerate(super().forward(x))}
        return tuple(features[f'stage{i + 1}'] for i in range(len(features)))  # off by one
