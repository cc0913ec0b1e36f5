"""Running a trained model: on images, on videos (streamed, resumable), as an ensemble, and smoothing the tracks."""
