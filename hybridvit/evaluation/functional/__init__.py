"""Framework-free metric functions (numpy / torch inputs)."""
from .hand_mesh import (SERVER_KEYS, UNALIGNED_KEYS, align_by_trafo, align_w_scale, fscore,
                        hand_mesh_metrics, pck_auc, per_sample_errors, server_scores,
                        summarize_errors)

__all__ = ['SERVER_KEYS', 'UNALIGNED_KEYS', 'align_by_trafo', 'align_w_scale', 'fscore',
           'hand_mesh_metrics', 'pck_auc', 'per_sample_errors', 'server_scores',
           'summarize_errors']
