"""Reading EM volumes (TIFF stacks, slice folders, zarr), the intensity rule, OME-Zarr, block-wise instances."""
