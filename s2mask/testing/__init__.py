"""Helpers for tests, demos and benchmarks: fake models and generated products."""
