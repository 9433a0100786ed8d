"""Export: a trained adapter as itself, merged into its base's 16-bit weights, or as a GGUF file for llama.cpp
and Ollama, checked against the model it came from.

``merge`` merges LoRA weights with PEFT; ``gguf_file`` writes GGUF with gguf-py (no llama.cpp checkout, no
compiler, no network); ``quantize`` makes K-quants with llama.cpp's own quantizer; ``llamacpp`` runs a GGUF file
through llama-cpp-python; ``verify`` compares it with the Hugging Face model; ``modelfile`` writes Ollama's
Modelfile.
"""
