"""The pre-tokenizer splits of the model families we build and convert, as their ``tokenizer.json`` files write
them: the tiny tokenizer splits as Qwen2 does, and the GGUF writer recognises each to name it for llama.cpp."""

# Qwen2's pre-tokenizer split, as its tokenizer.json writes it: letters in runs, digits one by one.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
# Llama 3's split, as its tokenizer.json writes it: like Qwen2's, with numbers in runs of up to three digits.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
