"""The export stage: a checkpoint (or a LoRA adapter, merged first) as one GGUF file for
llama.cpp, and an Ollama Modelfile that prompts it as it was trained (`python -m export`).

- `config`: the typed flags (`ExportConfig`) and their command line;
- `gguf_file`: the families, architecture metadata, the tensor plan and the streaming writer;
- `gguf_vocab`: a Hugging Face tokenizer as GGUF tokenizer metadata;
- `modelfile`: the Ollama Modelfile (template, stops, parameters);
- `run`: merge if needed, then the GGUF and the Modelfile; `cli`: the entry point.

The `gguf` package is an optional extra (`pip install -e '.[gguf]'`); without it the command
says so in one line.
"""
