"""Drawing helpers for the demo."""
from .draw import (HAND_BONES, default_palette, draw_detections, draw_hand, draw_segmentation,
                   draw_text)

__all__ = ['HAND_BONES', 'default_palette', 'draw_detections', 'draw_hand', 'draw_segmentation',
           'draw_text']
