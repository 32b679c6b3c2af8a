"""Checkpoints on disk, tensor by tensor: what the train and recover stages both read and write.

- `reader`: a Hugging Face checkpoint's tensors, memory-mapped (safetensors or legacy .bin);
- `layout`: which tensors are embeddings and buffers, for a model family;
- `rows`: a tensor as rows, processed a slice at a time (memory bounded by the slice);
- `shard_writer`: sharded safetensors written tensor by tensor, with their index;
- `output_dir`: a checkpoint directory written atomically, tokenizer files carried over;
- `hashing`: dtype names and the hashes manifests record;
- `adapter`, `adapter_merge`: a LoRA adapter read and merged into its base, streaming (training's
  `--merge_lora` and recovery from an adapter diff run the same merge);
- `adapter_load`: base + adapter as a peft model, for inference.

These modules need torch (and some safetensors, transformers or peft): importing them is for
the stages that have it installed; `core`'s other modules never import them.
"""
