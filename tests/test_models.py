"""Synthetic checkpoints: exact architectures, streamed random bf16 shards that transformers loads as-is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM

from suite.cli import main
from suite.errors import InputError
from suite.models import build, weights
from suite.models.archs import ARCHS, Arch

# A Qwen2 small enough to build and load in a test, with every kind of tensor the real ones have.
TINY = Arch(
    "tiny-qwen2",
    "test/tiny",
    "qwen2",
    hidden_size=64,
    intermediate_size=160,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=512,
    tie_word_embeddings=True,
)
TINY_UNTIED = Arch("tiny-untied", "test/tiny", "qwen2", 64, 160, 2, 4, 2, 151936, 512, False)


def config_of(arch: Arch):
    return AutoConfig.for_model(**arch.hf_config())


@pytest.mark.parametrize("key", [k for k, a in ARCHS.items() if a.model_type == "qwen2"])
def test_specs_are_transformers_own_parameters_and_the_published_count(key: str) -> None:
    arch = ARCHS[key]
    specs = weights.tensor_specs(config_of(arch))
    assert sum(s.numel for s in specs) == arch.num_parameters  # e.g. 494,032,768 for 0.5B
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    assert ("lm_head.weight" in names) == (not arch.tie_word_embeddings)
    assert names[0] == "model.embed_tokens.weight" and names[-1] in ("model.norm.weight", "lm_head.weight")
    inits = {s.name: s.init for s in specs}
    assert inits["model.layers.0.self_attn.q_proj.bias"] == "zeros"
    assert inits["model.layers.0.input_layernorm.weight"] == "ones"
    assert inits["model.norm.weight"] == "ones"
    assert inits["model.layers.0.mlp.down_proj.weight"] == "normal"


def test_plan_shards_is_greedy_in_order_and_bounded() -> None:
    specs = [weights.TensorSpec(f"t{i}", (n,), "normal") for i, n in enumerate([10, 20, 30, 100, 5, 5])]
    shards = weights.plan_shards(specs, max_shard_bytes=60)
    assert [[s.name for s in sh] for sh in shards] == [["t0", "t1"], ["t2"], ["t3"], ["t4", "t5"]]
    assert [s for sh in shards for s in sh] == specs  # nothing lost, order kept
    for sh in shards:
        assert sum(s.nbytes for s in sh) <= 60 or len(sh) == 1  # an oversize tensor stands alone
    assert weights.plan_shards([], 10) == []
    with pytest.raises(ValueError):
        weights.plan_shards(specs, 0)


def test_shard_names_and_index_follow_the_hf_convention() -> None:
    assert weights.shard_file_names(1) == ["model.safetensors"]
    assert weights.shard_file_names(3) == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    a, b = weights.TensorSpec("a", (2, 3), "normal"), weights.TensorSpec("b", (4,), "ones")
    idx = weights.index_json([[a], [b]], ["f1", "f2"])
    assert idx == {"metadata": {"total_size": 20}, "weight_map": {"a": "f1", "b": "f2"}}


def test_seeds_depend_on_name_and_seed_only() -> None:
    assert weights.tensor_seed(0, "x") == weights.tensor_seed(0, "x")
    assert weights.tensor_seed(0, "x") != weights.tensor_seed(1, "x")
    assert weights.tensor_seed(0, "x") != weights.tensor_seed(0, "y")
    spec = weights.TensorSpec("w", (64, 32), "normal")
    t = weights.make_tensor(spec, seed=3, std=0.02, device="cpu")
    assert t.dtype == torch.bfloat16 and t.shape == (64, 32)
    assert torch.equal(t, weights.make_tensor(spec, seed=3, std=0.02, device="cpu"))
    assert abs(t.float().std().item() - 0.02) < 0.004
    assert torch.equal(
        weights.make_tensor(weights.TensorSpec("n", (5,), "ones"), seed=0, std=1, device="cpu"),
        torch.ones(5, dtype=torch.bfloat16),
    )


@pytest.fixture
def tiny_build(tmp_path: Path) -> tuple[build.BuildReport, Path]:
    out = tmp_path / "tiny"
    # 256 KiB shards: the tiny model still spans several files, so the index path is exercised.
    report = build.write_synthetic(TINY, out, model="synthetic:tiny", device="cpu", seed=7, max_shard_bytes=256 * 1024)
    return report, out


def test_tiny_checkpoint_loads_in_transformers_with_nothing_missing(tiny_build) -> None:
    report, out = tiny_build
    assert report.num_parameters == TINY.num_parameters and report.device == "cpu"
    idx = json.loads((out / weights.INDEX_FILE).read_text())
    files = sorted(set(idx["weight_map"].values()))
    assert len(files) > 1 and all((out / f).is_file() for f in files)
    assert idx["metadata"]["total_size"] == 2 * TINY.num_parameters
    net, info = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert net.lm_head.weight.data_ptr() == net.model.embed_tokens.weight.data_ptr()  # tied, as the real 0.5B
    logits = net(torch.tensor([[151643, 10, 20, 30]])).logits
    assert logits.shape == (1, 4, 151936) and torch.isfinite(logits.float()).all()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForCausalLM"] and cfg["dtype"] == "bfloat16"
    assert cfg["hidden_size"] == 64 and cfg["tie_word_embeddings"] is True
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [151645, 151643] and gen["pad_token_id"] == 151643
    assert (out / "tokenizer.json").is_file()
    marker = json.loads((out / build.MARKER).read_text())
    assert marker["model"] == "synthetic:tiny" and marker["seed"] == 7 and marker["files"] == len(files)
    assert not list(out.parent.glob("tiny.tmp*"))  # built under a temporary name, renamed at the end


def test_bytes_do_not_depend_on_workers_or_shard_size(tiny_build, tmp_path: Path) -> None:
    _, out = tiny_build
    other = tmp_path / "again"
    build.write_synthetic(TINY, other, model="synthetic:tiny", device="cpu", seed=7, workers=1)
    assert (other / weights.SINGLE_FILE).is_file() and not (other / weights.INDEX_FILE).exists()
    idx = json.loads((out / weights.INDEX_FILE).read_text())["weight_map"]
    with safe_open(other / weights.SINGLE_FILE, "pt") as single:
        assert set(single.keys()) == set(idx)
        assert single.metadata() == {"format": "pt"}
        for name, f in idx.items():
            with safe_open(out / f, "pt") as part:
                assert torch.equal(part.get_tensor(name), single.get_tensor(name)), name
    third = tmp_path / "seed8"
    build.write_synthetic(TINY, third, model="synthetic:tiny", device="cpu", seed=8)
    with safe_open(other / weights.SINGLE_FILE, "pt") as a, safe_open(third / weights.SINGLE_FILE, "pt") as b:
        name = "model.layers.0.mlp.up_proj.weight"
        assert not torch.equal(a.get_tensor(name), b.get_tensor(name))


def test_untied_model_writes_its_lm_head(tmp_path: Path) -> None:
    out = tmp_path / "untied"
    report = build.write_synthetic(TINY_UNTIED, out, model="synthetic:x", device="cpu")
    assert report.num_parameters == TINY_UNTIED.num_parameters
    with safe_open(out / weights.SINGLE_FILE, "pt") as f:
        names = list(f.keys())
        assert "lm_head.weight" in names
        assert not torch.equal(f.get_tensor("lm_head.weight"), f.get_tensor("model.embed_tokens.weight"))


def test_a_failing_shard_leaves_no_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(spec, **kw):
        if spec.name.endswith("layers.1.mlp.up_proj.weight"):
            raise RuntimeError("CUDA out of memory (simulated)")
        return torch.zeros(spec.shape, dtype=torch.bfloat16)

    monkeypatch.setattr(weights, "make_tensor", boom)
    out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="simulated"):
        build.write_synthetic(TINY, out, model="synthetic:tiny", device="cpu", max_shard_bytes=256 * 1024)
    assert not out.exists()  # a later ensure_model rebuilds instead of loading half a checkpoint
    assert list(tmp_path.iterdir()) == []  # and the partial shards are gone


def test_unknown_synthetic_model_and_bad_workers_are_input_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match=r"unknown synthetic model 'synthetic:qwen9'; allowed: synthetic:qwen2.5"):
        build.build_synthetic("synthetic:qwen9")
    assert main(["model", "build", "synthetic:qwen2.5-0.5b", "--workers", "0"]) == 2
    assert "--workers: bad value 0; allowed: an integer >= 1" in capsys.readouterr().err


def test_default_workers() -> None:
    assert weights.default_workers(["cpu"]) == 2
    assert weights.default_workers(["cuda:0", "cuda:1", "cuda:2", "cuda:3"]) == 8
