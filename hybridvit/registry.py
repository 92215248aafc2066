"""hybridvit registries: children of mmengine's root registries, scope ``hybridvit``.

mmdet and mmseg configs refer to our modules as ``type='hybridvit.FastViT'`` once
``custom_imports=dict(imports=['hybridvit.models'], allow_failed_imports=False)`` is set; the
hand-mesh configs use ``default_scope='hybridvit'``.
"""
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='hybridvit',
                  locations=['hybridvit.models'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='hybridvit',
                    locations=['hybridvit.datasets'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='hybridvit',
                      locations=['hybridvit.datasets.transforms'])
DATA_SAMPLERS = Registry('data sampler', parent=MMENGINE_DATA_SAMPLERS, scope='hybridvit',
                         locations=['hybridvit.datasets.samplers'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='hybridvit',
                   locations=['hybridvit.evaluation'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='hybridvit',
                 locations=['hybridvit.engine'])
VISUALIZERS = Registry('visualizer', parent=MMENGINE_VISUALIZERS, scope='hybridvit',
                       locations=['hybridvit.visualization'])

__all__ = ['MODELS', 'DATASETS', 'TRANSFORMS', 'DATA_SAMPLERS', 'METRICS', 'HOOKS',
           'VISUALIZERS']
