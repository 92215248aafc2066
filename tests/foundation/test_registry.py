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
    before = DefaultScope.get_current_instance()
    before = before.scope_name if before is not None else None
    with DefaultScope.overwrite_default_scope(scope):
        assert DefaultScope.get_current_instance().scope_name == scope
        cls = downstream.get('hybridvit.FastViT')
        assert cls is MODELS.get('FastViT')
        assert cls.__module__ == 'hybridvit.models.backbones.fastvit'
        # registered in hybridvit's child registry only, not leaked into mmengine's root
        assert downstream.get('FastViT') is None
        model = downstream.build(dict(type='hybridvit.MobileViT', arch='xxs'))
        assert type(model) is MODELS.get('MobileViT')
    after = DefaultScope.get_current_instance()
    # the scope was only overridden inside the context
    assert (after.scope_name if after is not None else None) == before


def test_registry_scope_and_parent():
    from mmengine.registry import MODELS as ROOT
    assert MODELS.scope == 'hybridvit'
    assert MODELS.parent is ROOT
