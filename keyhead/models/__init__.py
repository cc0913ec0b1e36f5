"""The model: backbones, keypoint heads, codecs (targets), decoders (keypoints + confidence), losses, building a
model from a config or a run folder, and its weights files."""
