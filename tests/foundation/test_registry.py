"""``hybridvit.*`` types resolve from mmdet's and mmseg's scopes."""
import pytest
from mmengine.registry import DefaultScope

import hybridvit.models  # noqa: F401
from hybridvit.registry import MODELS


@pytest.mark.parametrize('scope,registry_path', [('mmdet', 'mmdet.registry'),
                                                 ('mmseg', 'mmseg.registry')])
def test_hybridvit_types_resolve_from_downstream_scopes(scope, registry_path):
    import importlib
    downstream = importlib.import_module(registry_path).MODELS
    name = f'test-{scope}'
    with DefaultScope.overwrite_default_scope(scope):
        cls = downstream.get('hybridvit.FastViT')
        assert cls is MODELS.get('FastViT')
        model = downstream.build(dict(type='hybridvit.MobileViT', arch='xxs'))
        assert type(model).__name__ == 'MobileViT'
    assert name  # the scope was only overridden inside the context


def test_registry_scope_and_parent():
    from mmengine.registry import MODELS as ROOT
    assert MODELS.scope == 'hybridvit'
    assert MODELS.parent is ROOT
