"""Framework-free metric functions (numpy / torch inputs)."""
from .hand_mesh import (align_by_trafo, align_w_scale, fscore, hand_mesh_metrics, pck_auc,
                        per_sample_errors, summarize_errors)

__all__ = ['align_by_trafo', 'align_w_scale', 'fscore', 'hand_mesh_metrics', 'pck_auc',
           'per_sample_errors', 'summarize_errors']
