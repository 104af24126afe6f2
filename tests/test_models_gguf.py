"""`model import-gguf`: a GGUF written here the way llama.cpp's converter lays out a Llama model (SmolLM2's
architecture) comes back as the same weights and a working tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM
from transformers.convert_slow_tokenizer import bytes_to_unicode

from suite.cli import main
from suite.errors import InputError
from suite.models.build import import_gguf

gguf = pytest.importorskip("gguf")

HEADS, KV_HEADS, HIDDEN, LAYERS = 4, 2, 32, 2
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he"]


def vocab() -> list[str]:
    # Byte-level BPE as SmolLM2's GPT-2 style tokenizer: every byte, a few merges, then the special tokens.
    toks = list(bytes_to_unicode().values())
    toks += [m.replace(" ", "") for m in MERGES]
    return toks + SPECIALS


def rotary_interleave(w: np.ndarray, heads: int) -> np.ndarray:
    """GGUF (llama.cpp) stores q/k rows of each head interleaved in pairs; HF keeps the two halves apart."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(path: Path, net: LlamaForCausalLM, tokens: list[str]) -> None:
    cfg = net.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-smollm2-like")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(len(tokens))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in tokens])
    w.add_token_merges(MERGES)
    w.add_bos_token_id(tokens.index("<|im_start|>"))
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_pad_token_id(tokens.index("<|endoftext|>"))
    w.add_chat_template(
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    )
    sd = {k: v.float().numpy() for k, v in net.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", rotary_interleave(sd[p + "self_attn.q_proj.weight"], HEADS))
        w.add_tensor(f"blk.{i}.attn_k.weight", rotary_interleave(sd[p + "self_attn.k_proj.weight"], KV_HEADS))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])  # tied embeddings: no output.weight
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[LlamaForCausalLM, Path, list[str]]:
    tokens = vocab()
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
    )
    net = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms away from 1, so a wrong mapping of them would show
        for name, p in net.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    write_llama_gguf(path, net, tokens)
    return net, path, tokens


def test_import_gives_back_the_same_weights(source, tmp_path: Path) -> None:
    net, path, _ = source
    report = import_gguf(path, tmp_path / "hf")
    assert report.arch == "llama" and report.num_parameters == sum(p.numel() for p in net.parameters())
    out, info = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert out.config.dtype == torch.bfloat16 or str(out.config.dtype) == "torch.bfloat16"
    want = net.state_dict()
    for name, t in out.state_dict().items():
        # bf16 on the way out: equal to the source rounded to bf16 (q/k rows back in HF order)
        assert torch.equal(t.to(torch.bfloat16), want[name].to(torch.bfloat16)), name
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["num_key_value_heads"] == KV_HEADS and cfg["tie_word_embeddings"] is True


def test_imported_model_computes_what_the_source_computes(source, tmp_path: Path) -> None:
    net, path, _ = source
    import_gguf(path, tmp_path / "hf")
    out = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    ids = torch.tensor([[5, 17, 200, 3, 99]])
    with torch.no_grad():
        ref = net.to(torch.bfloat16).float()(ids).logits
        got = out(ids).logits
    assert torch.allclose(got, ref, atol=1e-4), (got - ref).abs().max()


def test_tokenizer_comes_with_it(source, tmp_path: Path) -> None:
    _, path, tokens = source
    import_gguf(path, tmp_path / "hf")
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    # The special tokens of the GGUF metadata, not transformers' conversion (which made eos = bos).
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == tuple(
        tokens.index(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    )
    # The merges came along: " the" is one token after Ġ+t, h+e, Ġt+he.
    assert tok.encode(" the", add_special_tokens=False) == [tokens.index("Ġthe")]
    assert tok.decode(tok.encode("the hat", add_special_tokens=False)) == "the hat"
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n"


def test_missing_gguf_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match="no such GGUF file"):
        import_gguf(tmp_path / "nope.gguf", tmp_path / "out")
    assert main(["model", "import-gguf", str(tmp_path / "nope.gguf"), "--out", str(tmp_path / "o")]) == 2
    assert "gguf: no such GGUF file" in capsys.readouterr().err
