"""The napari plugin: a reader for sam-mito outputs and widgets to segment and measure mitochondria."""
