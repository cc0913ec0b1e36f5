"""Export to ONNX: the image graph (network + decoder) and the video graphs (per-frame features + window head)."""
