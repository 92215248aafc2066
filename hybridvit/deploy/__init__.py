"""Deployment: ONNX / CoreML export of fused models, INT8 quantisation, latency benchmarks."""
from .fold_norms import fold_output_norms
from .onnx_export import (DET_NOT_EXPORTED, ExportCheck, OutputsAsTuple, check_onnx,
                          export_onnx, exportable_part, flatten_outputs, ort_session,
                          output_names, parameter_count, trace_friendly_shapes)

__all__ = ['DET_NOT_EXPORTED', 'ExportCheck', 'OutputsAsTuple', 'check_onnx', 'export_onnx',
           'exportable_part', 'flatten_outputs', 'fold_output_norms', 'ort_session', 'output_names',
           'parameter_count', 'trace_friendly_shapes']
