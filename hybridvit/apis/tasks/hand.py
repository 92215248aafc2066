"""3D hand mesh (hybridvit ``HandMeshEstimator``): head tensors, skeleton drawings, meshes."""
import numpy as np

from .base import Task
from .registry import register_task

__all__ = ['HandTask']


def _head_tensors(model, x):
    """The head's raw outputs (``forward(mode='tensor')``: ``cam``, ``joints``,
    ``keypoints_2d_norm``, ``verts``)."""
    return model(x, mode='tensor')


def _numpy(x):
    return None if x is None else np.asarray(x.cpu() if hasattr(x, 'cpu') else x)


@register_task
class HandTask(Task):
    """Hand-mesh estimators (``default_scope='hybridvit'``). Part ``model``: head tensors."""

    name = 'hand'
    scope = 'hybridvit'
    export_shape = (224, 224)

    def inference(self, model, img_bgr, bbox=None, **kwargs):
        from hybridvit.apis.hand_inference import inference_hand_mesh
        return inference_hand_mesh(model, img_bgr, bbox=bbox)

    def part_functions(self):
        return dict(super().part_functions(), model=(_head_tensors, '', None))

    def export_input_shape(self, cfg):
        size = cfg.get('input_size')
        return (size, size) if size else super().export_input_shape(cfg)

    def draw(self, img_bgr, result, meta, score_thr=0.3, opacity=0.5):
        from hybridvit.visualization import draw_hand
        vis = draw_hand(img_bgr, _numpy(result.pred_keypoints_2d),
                        _numpy(result.get('pred_verts_2d')))
        return vis, '21 joints'

    def test_image(self, inputs, sample):
        """The network's input crop (the test pipeline's ``HandCropResize``), in which the
        predicted keypoints are given."""
        return np.ascontiguousarray(inputs.cpu().numpy().transpose(1, 2, 0)).astype(np.uint8)

    def save_extras(self, model, result, out_stem):
        from hybridvit.utils.mesh_io import write_mesh
        faces = getattr(getattr(model, 'head', None), 'faces', None)
        faces = faces.cpu().numpy() if faces is not None else None
        return [write_mesh(out_stem, _numpy(result.pred_verts_cam), faces)]

    def configure_test_outputs(self, cfg, out):
        """``--out DIR``: the metric writes ``DIR/pred.json`` (and ``DIR/scores.txt``)."""
        cfg.test_evaluator['out_dir'] = out
