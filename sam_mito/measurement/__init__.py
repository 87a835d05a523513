"""Per-object measurements of instance labels: volume, surface, shape, streamed block by block."""
