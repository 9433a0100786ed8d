"""Models: loading them on either backend (the one place that imports Unsloth), precision, tiny and SmolLM2 models."""
