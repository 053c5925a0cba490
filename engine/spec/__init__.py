"""Self-speculative decoding: a lean torch decode core, drafters, and lossless verification."""
