"""What h200-1gpu-7b-flex rests on, checked with the real libraries on a tiny random Qwen2: verl's
remove-padding packs a micro batch into one row with position_ids and no attention mask and calls the model
with use_cache=False; transformers (the version verl runs here) then keeps the packed sequences apart under
flex_attention exactly as under sdpa. Forward only: flex attention's backward runs on CUDA alone, which the GPU
run measures."""

from __future__ import annotations

import inspect

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_qwen2 import VOCAB, tiny_qwen2_config  # noqa: E402

pytestmark = pytest.mark.slow  # flex attention compiles its kernel on first use (~10 s on CPU)

LENGTHS = (7, 12, 5)


def tiny_qwen2(impl: str, state: dict | None = None):
    torch.manual_seed(0)
    m = transformers.Qwen2ForCausalLM(tiny_qwen2_config()).eval()
    if state is not None:
        m.load_state_dict(state)
    m.set_attn_implementation(impl)
    return m


@pytest.fixture(scope="module")
def packed() -> tuple[list, object, object, dict]:
    torch.manual_seed(1)
    seqs = [torch.randint(0, VOCAB, (n,)) for n in LENGTHS]
    ids = torch.cat(seqs)[None]
    pos = torch.cat([torch.arange(n) for n in LENGTHS])[None]
    state = tiny_qwen2("sdpa").state_dict()
    return seqs, ids, pos, state


@pytest.mark.parametrize("impl", ["sdpa", "flex_attention"])
def test_packed_sequences_stay_apart(impl: str, packed: tuple) -> None:
    seqs, ids, pos, state = packed
    with torch.no_grad():
        alone = [tiny_qwen2("sdpa", state)(input_ids=s[None], use_cache=False).logits[0] for s in seqs]
        out = tiny_qwen2(impl, state)(input_ids=ids, position_ids=pos, use_cache=False).logits[0]
    got = torch.split(out, list(LENGTHS))
    worst = max(float((a - b).abs().max()) for a, b in zip(got, alone, strict=True))
    assert worst < 1e-5, f"{impl}: packed logits differ from each sequence alone by {worst}"


def test_without_the_separation_they_would_differ(packed: tuple) -> None:
    # the check above can fail: one causal mask over the whole row mixes the sequences
    seqs, ids, _pos, state = packed
    with torch.no_grad():
        alone = tiny_qwen2("sdpa", state)(input_ids=seqs[1][None], use_cache=False).logits[0]
        mixed = tiny_qwen2("sdpa", state)(input_ids=ids, use_cache=False).logits[0]
    start = LENGTHS[0]
    assert float((mixed[start : start + LENGTHS[1]] - alone).abs().max()) > 1e-3


def test_verls_fsdp_engine_calls_the_model_so() -> None:
    # the language-model engine the actor, the reference and the old log-prob pass run on in verl 0.9.1
    impl = pytest.importorskip("verl.workers.engine.fsdp.transformer_impl")
    source = inspect.getsource(impl.FSDPEngineWithLMHead.forward_step)
    assert "self.module(" in source and "use_cache=False" in source
