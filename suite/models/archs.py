"""Exact architectures of the models the suite can synthesise (`synthetic:<key>`): the fields of their
Hugging Face `config.json` that decide parameter count, memory and speed. Values from the published
Qwen2.5 configs (Qwen/Qwen2.5-*-Instruct) and SmolLM2-135M-Instruct."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Arch:
    key: str
    hf_id: str  # the real checkpoint this architecture copies
    model_type: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    attention_bias: bool = True  # Qwen2 has q/k/v biases

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_parameters(self) -> int:
        h, i, n_layers = self.hidden_size, self.intermediate_size, self.num_hidden_layers
        kv = self.num_key_value_heads * self.head_dim
        attn = h * h + 2 * h * kv + h * h  # q, k, v, o
        if self.attention_bias:
            attn += h + 2 * kv
        mlp = 3 * h * i
        norms = 2 * h
        embed = self.vocab_size * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return n_layers * (attn + mlp + norms) + embed + head + h

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder layer: what LoRA `all-linear` adapts."""
        h, i, kv = self.hidden_size, self.intermediate_size, self.num_key_value_heads * self.head_dim
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def hf_config(self) -> dict:
        """A complete `config.json` for transformers' Qwen2 / Llama classes."""
        d = asdict(self)
        for k in ("key", "hf_id", "attention_bias"):
            d.pop(k)
        arch_cls = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM"}[self.model_type]
        d.update(
            architectures=[arch_cls],
            hidden_act="silu",
            initializer_range=0.02,
            torch_dtype="bfloat16",
            use_cache=True,
            bos_token_id=151643 if self.model_type == "qwen2" else 1,
            eos_token_id=151645 if self.model_type == "qwen2" else 2,
        )
        if self.model_type == "qwen2":
            d.update(use_sliding_window=False, sliding_window=None, max_window_layers=self.num_hidden_layers)
        else:
            d.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
        return d


def _qwen(key: str, hf: str, h: int, i: int, layers: int, heads: int, kv: int, tie: bool, ctx: int = 32768) -> Arch:
    return Arch(key, hf, "qwen2", h, i, layers, heads, kv, 151936, ctx, tie)


ARCHS: dict[str, Arch] = {
    a.key: a
    for a in (
        _qwen("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct", 896, 4864, 24, 14, 2, True),
        _qwen("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct", 1536, 8960, 28, 12, 2, True),
        _qwen("qwen2.5-3b", "Qwen/Qwen2.5-3B-Instruct", 2048, 11008, 36, 16, 2, True),
        _qwen("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct", 3584, 18944, 28, 28, 4, False),
        _qwen("qwen2.5-14b", "Qwen/Qwen2.5-14B-Instruct", 5120, 13824, 48, 40, 8, False),
        _qwen("qwen2.5-32b", "Qwen/Qwen2.5-32B-Instruct", 5120, 27648, 64, 40, 8, False),
        _qwen("qwen2.5-72b", "Qwen/Qwen2.5-72B-Instruct", 8192, 29568, 80, 64, 8, False),
        Arch(
            "smollm2-135m",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "llama",
            576,
            1536,
            30,
            9,
            3,
            49152,
            8192,
            True,
            rope_theta=100000.0,
            rms_norm_eps=1e-5,
            attention_bias=False,
        ),
    )
}


def arch_for_model(model: str) -> Arch | None:
    """The architecture of `synthetic:<key>`, or of a known HF id / path naming one (e.g. Qwen/Qwen2.5-32B-Instruct)."""
    if model.startswith("synthetic:"):
        return ARCHS.get(model.split(":", 1)[1].lower())
    name = model.rstrip("/").split("/")[-1].lower()
    for a in ARCHS.values():
        if a.hf_id.split("/")[-1].lower() == name or name.startswith(a.key):
            return a
    return None
