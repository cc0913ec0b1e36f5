"""Files in and out, without torch: atomic writes, images, video, prediction tables, pandas HDF5, run folders."""
