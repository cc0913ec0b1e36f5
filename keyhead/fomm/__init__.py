"""The First Order Motion Model keypoint detector: the detector itself, unsupervised training from video, and its
compression (pruning, distillation, ONNX / int8)."""
