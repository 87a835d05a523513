"""Image features: encoding, encoder precision, the embedding cache and its checksums."""
