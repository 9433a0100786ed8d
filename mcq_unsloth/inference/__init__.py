"""Answering questions: letter scoring and generation, whole files with resume, GGUF files in llama.cpp."""
