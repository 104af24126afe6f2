"""benchmarks/activation_probe.py --device cuda: its table names each row's path and keeps a failed row's error
(the CUDA child itself needs a GPU; its source must at least parse as the Python it is run as)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import activation_probe as probe  # noqa: E402


def _doc() -> dict:
    rows = [
        dict(mode="old_log_prob", layout="packed", cross_entropy="flash_attn", entropy_fn="eager", peak_units=4.0),
        dict(mode="old_log_prob", layout="packed", cross_entropy="flash_attn", entropy_fn="compiled", peak_units=2.5),
        dict(mode="ref_log_prob", layout="padded", cross_entropy="verl", entropy_fn=None, peak_units=1.0),
        dict(
            mode="update_entropy",
            layout="packed",
            cross_entropy="verl",
            entropy_fn="eager",
            error="OutOfMemoryError: x",
        ),
    ]
    return {"gpu": "NVIDIA H100 80GB HBM3", "tokens": 18165, "logits": [dict(r, what="w") for r in rows]}


def test_the_cuda_table_has_one_line_per_row_with_its_path_and_entropy_function() -> None:
    text = probe.markdown_cuda(_doc())
    lines = text.splitlines()
    assert lines[0] == "logits on NVIDIA H100 80GB HBM3 under CUDA autocast (bf16), 18165 tokens:"
    body = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| logits phase")]
    assert len(body) == 4
    assert body[0] == "| old_log_prob | packed | flash_attn | eager | w | 4.00 |"
    assert body[1] == "| old_log_prob | packed | flash_attn | compiled | w | 2.50 |"
    assert body[2] == "| ref_log_prob | padded | verl | - | w | 1.00 |"
    assert body[3].endswith("| failed: OutOfMemoryError: x |")


def test_the_cuda_child_is_python_and_measures_every_mode_on_every_layout() -> None:
    tree = ast.parse(probe._LOGITS_CUDA_CHILD)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "measure" for n in tree.body)
    src = probe._LOGITS_CUDA_CHILD
    # verl's FSDP engine compiles entropy_from_logits on the remove-padding path: the probe measures that too
    assert "torch.compile(F.entropy_from_logits, dynamic=True)" in src
    assert '("packed", "compiled")' in src and '("padded", "eager")' in src
    assert set(probe.LOGITS_MODES) == {"old_log_prob", "ref_log_prob", "update", "update_entropy"}


def test_padded_phases_run_at_a_token_count_four_does_not_divide() -> None:
    """The 7B cells' log-prob micro batch is 15 x 1211 = 18165 tokens: the padded rows of the first CUDA run failed
    there (labels one longer than the 4 x 4541 rows). Run on CPU through the probe's own child, small vocab."""
    import subprocess

    for mode in ("old_log_prob", "ref_log_prob", "update"):
        out = subprocess.run(
            [sys.executable, "-c", probe._LOGITS_CHILD, mode, "padded", "18165", "64"],
            capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        _available, units = out.stdout.split()
        assert float(units) > 0.9, (mode, out.stdout)
