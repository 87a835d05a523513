"""The napari plugin: reader, widgets and manifest, on a real viewer on a (virtual) screen."""
