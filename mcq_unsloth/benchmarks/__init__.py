"""Benchmarks: Unsloth against transformers, one process per job."""
