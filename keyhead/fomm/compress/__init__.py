"""Making the FOMM keypoint detector light: narrower and depthwise-separable students, distillation, int8, ONNX."""

from keyhead.fomm.compress.distill import TeacherTargets, distill, distillation_loss, teacher_targets
from keyhead.fomm.compress.pipeline import CompressReport, CompressSettings, compress_detector, student_config
from keyhead.fomm.compress.runtime import OrtDetector, PixelDetector, export_fomm_onnx, measure_latency, quantize_onnx

__all__ = [
    "CompressReport",
    "CompressSettings",
    "OrtDetector",
    "PixelDetector",
    "TeacherTargets",
    "compress_detector",
    "distill",
    "distillation_loss",
    "export_fomm_onnx",
    "measure_latency",
    "quantize_onnx",
    "student_config",
    "teacher_targets",
]
