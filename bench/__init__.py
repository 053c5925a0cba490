"""Benchmarks of the local stack. Run from the repository root as modules: ``python -m bench.gateway``."""
