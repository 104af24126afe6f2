"""The tiny random Qwen2 that tests run real transformers / verl code on (CPU, seconds): a 512-token vocabulary
keeps flex attention's compile and verl's FSDP wrapping small."""

from __future__ import annotations

import transformers

VOCAB = 512


def tiny_qwen2_config(*, tied: bool = False) -> transformers.Qwen2Config:
    """Two layers, 4 heads over 2 KV heads; `tied`: embeddings shared with lm_head (Qwen2.5 up to 3B)."""
    return transformers.Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=tied,
    )
