"""Prediction: the tiled Segmenter, z-context, post-processing, whole volumes into TIFF or OME-Zarr."""
