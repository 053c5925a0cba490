"""Inference engines that sit behind the gateway: today a simulated, vLLM-compatible worker."""
