"""Export: merging adapters, writing and quantizing GGUF files, Modelfiles, checking them in llama.cpp."""
