"""Reproducible generators of small bundled datasets (no downloads): mini ADE20K / VOC / COCO."""
from .backgrounds import load_backgrounds
from .mini_coco import COCO_METAINFO, make_mini_coco
from .mini_seg import SEG_METAINFO, make_mini_ade, make_mini_voc
from .shapes import CLASS_NAMES, OBJECT_CLASSES, compose_scene, make_demo_image

__all__ = ['load_backgrounds', 'compose_scene', 'make_demo_image', 'make_mini_ade',
           'make_mini_voc', 'make_mini_coco', 'SEG_METAINFO', 'COCO_METAINFO', 'CLASS_NAMES',
           'OBJECT_CLASSES']
from .mini_freihand import make_mini_freihand, procedural_hand_faces  # noqa: E402

__all__ += ['make_mini_freihand', 'procedural_hand_faces']
