"""Before any GPU time: can this environment import what the selected cells will import?

Every lesson here cost a GPU run once: a Transformer Engine that cannot load on the host's cuBLAS, a
Megatron-Bridge without nvidia-modelopt, apex missing under Megatron-Bridge's gradient_accumulation_fusion,
flash-attn missing under FSDP's remove-padding path. `needs` derives the modules from the cells (pure),
`probe` imports them in a child process with the cells' interpreter and environment, `diagnose` turns the
two into findings with the fix (pure). `grpo-suite run` refuses to start (exit 2) on an error finding;
`grpo-suite doctor` prints the whole table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from suite.gpus import generation_of
from suite.plan.cell import (
    ALLOC_CONF_ENV,
    ALLOC_CONF_KEY,
    EXTERNAL_MODULES_KEY,
    PAGEABLE_COPIES_MODULE,
    PAGEABLE_CUMEM,
    PAGEABLE_FSDP_UTILS,
    PREDICTED_OOM,
    ROPE_FP32_MODULE,
    Cell,
    external_modules,
)

# Distribution names whose versions explain a failed import (the CUDA libraries TE links against).
CONTEXT_PACKAGES = (
    "torch",
    "nvidia-cublas",
    "nvidia-cublas-cu13",
    "nvidia-cublas-cu12",
    "transformer-engine",
    "transformer-engine-cu13",
    "transformer-engine-cu12",
    "nvidia-cudnn-cu13",
    "nvidia-cudnn-cu12",
)
PROBE_TIMEOUT_S = 600.0
ENTRY_MODULE = "verl.trainer.main_ppo"
# Plan statuses the runner starts (predicted-oom too, unless --skip-predicted-oom): what a preflight covers.
RUNNABLE = ("ok", *PREDICTED_OOM)


@dataclass(frozen=True)
class Need:
    module: str  # what is imported
    package: str  # what provides it (pip name)
    why: str
    cells: tuple[str, ...] = ()


@dataclass(frozen=True)
class Probe:
    """What one interpreter could import: module -> error (None when it imported), plus package versions."""

    python: str
    errors: dict[str, str | None]
    versions: dict[str, str] = field(default_factory=dict)
    failure: str | None = None  # the probe itself failed (no such interpreter, timeout)
    # allocator config key -> whether this torch's c10 libraries name it (None: torch's libraries not found)
    allocator_keys: dict[str, bool | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning | ok
    module: str
    package: str
    cells: tuple[str, ...]
    detail: str  # version when ok, the import error otherwise
    hint: str | None = None


FLASH_CE_MODULE = "flash_attn.ops.triton.cross_entropy"  # verl 0.9.1 utils/torch_functional.py
# attention implementations that need no flash-attn package, even with remove-padding
TORCH_ATTENTION = ("sdpa", "eager", "flex_attention")


def _true(value: object) -> bool:
    return value is True or str(value).strip().lower() == "true"


def needs(cells: Sequence[Cell]) -> list[Need]:
    """Modules the runnable cells will import, each with the cells that need it and why (pure)."""
    acc: dict[tuple[str, str, str], list[str]] = {}

    def add(module: str, package: str, why: str, cell: Cell) -> None:
        acc.setdefault((module, package, why), []).append(cell.id)

    for cell in cells:
        if cell.status not in RUNNABLE or ENTRY_MODULE not in cell.command:
            continue  # not run, or not verl's trainer (an ingested or hand-written command)
        add("torch", "torch", "every cell", cell)
        add("ray", "ray", "every cell (verl's trainer runs on Ray)", cell)
        add("vllm", "vllm", "every cell (vLLM rollout)", cell)
        add("verl.trainer.main_ppo", "verl", "every cell", cell)
        if cell.flash_attn:
            # what verl imports for its log-probs; without it the cell runs, on more memory than it was planned for
            add(FLASH_CE_MODULE, "flash-attn", "cells of a matrix that sets flash_attn = true", cell)
        if cell.backend == "fsdp":
            # verl 0.9.1 unpads with a pure-torch fallback; flash-attn is needed only by the attention kernel
            # itself. On sdpa/eager/flex, transformers 5 masks the packed sequences per sequence instead.
            attn = cell.setting("actor_rollout_ref.model.override_config.attn_implementation")
            if _true(cell.setting("actor_rollout_ref.model.use_remove_padding")) and attn not in TORCH_ATTENTION:
                add(
                    "flash_attn.bert_padding",
                    "flash-attn",
                    "FSDP cells with use_remove_padding=true on flash_attention_2 (verl's default attention)",
                    cell,
                )
            if cell.setting("actor_rollout_ref.model.lora_rank") not in (None, 0, "", "0"):
                add("peft", "peft", "LoRA cells", cell)
            if ROPE_FP32_MODULE in external_modules(cell.setting(EXTERNAL_MODULES_KEY)):
                # verl imports it in every worker: where the suite is not importable there, each worker fails
                add(
                    ROPE_FP32_MODULE, "grpo-suite", "FSDP cells with a 16-bit actor or reference (keep_rope_fp32)", cell
                )
        if PAGEABLE_COPIES_MODULE in external_modules(cell.setting(EXTERNAL_MODULES_KEY)):
            why = "cells with pageable_host_copies or registered_host_copies = true"
            add(PAGEABLE_COPIES_MODULE, "grpo-suite", why, cell)
            # imported after it, the modules it patches: one without the names it patches fails here, not in a worker
            add(PAGEABLE_FSDP_UTILS, "verl", why + " (what suite.run.pageable_copies patches)", cell)
            add(PAGEABLE_CUMEM, "vllm", why + " (what suite.run.pageable_copies patches)", cell)
        if cell.backend == "megatron":
            why = "Megatron cells"
            add("transformer_engine.pytorch", "transformer-engine[pytorch]", why, cell)
            add("megatron.core", "megatron-core", why, cell)
            add("megatron.bridge", "megatron-bridge", why + " (verl 0.9.1 builds models through AutoBridge)", cell)
            add("modelopt", "nvidia-modelopt", why + " (Megatron-Bridge imports it)", cell)
            key = "actor_rollout_ref.actor.megatron.override_transformer_config.gradient_accumulation_fusion"
            # Megatron-Bridge turns the fusion on unless the plan turns it off; then ColumnParallelLinear needs apex.
            if not cell.has_setting(key) or _true(cell.setting(key)):
                add(
                    "fused_weight_gradient_mlp_cuda",
                    "apex",
                    "Megatron cells with gradient_accumulation_fusion on",
                    cell,
                )
    return [Need(m, p, w, tuple(c)) for (m, p, w), c in acc.items()]


# torch reads PYTORCH_ALLOC_CONF and falls back to the older name; the cells set it through Ray's env_vars
ALLOC_CONF_NAMES = (ALLOC_CONF_ENV, "PYTORCH_CUDA_ALLOC_CONF")
ALLOC_CONF_SETTINGS = tuple(ALLOC_CONF_KEY.replace(ALLOC_CONF_ENV, n) for n in ALLOC_CONF_NAMES)


def allocator_keys(cells: Sequence[Cell]) -> dict[str, tuple[str, ...]]:
    """The torch allocator config keys the runnable cells set (`key:value,...` in PYTORCH_ALLOC_CONF, in the
    cell's environment or its Ray workers'), each with the cells that set it (pure). torch refuses a key it does
    not know when CUDA starts (2.11.0: `Unrecognized key 'pinned_max_round_threshold_mb' in CUDA allocator
    config`), inside every Ray worker: a whole cell's start-up lost, so it is checked here."""
    acc: dict[str, list[str]] = {}
    for cell in cells:
        if cell.status not in RUNNABLE:
            continue
        values = [cell.env.get(n) for n in ALLOC_CONF_NAMES] + [cell.setting(k) for k in ALLOC_CONF_SETTINGS]
        for value in values:
            for part in str(value or "").split(","):
                key = part.split(":", 1)[0].strip()
                if key and cell.id not in acc.setdefault(key, []):
                    acc[key].append(cell.id)
    return {k: tuple(v) for k, v in acc.items()}


# What a torch version's allocator was seen to accept, per config key: measured, never guessed (2.11.0 refused
# pinned_max_round_threshold_mb as CUDA started on a GPU host, 2026-12-05; 2.13.0's c10 libraries name it). The
# planner cannot probe an image's torch from the build machine: this table is what it knows of one.
ALLOCATOR_KEYS_MEASURED: dict[str, dict[str, bool]] = {
    "pinned_max_round_threshold_mb": {"2.11.0": False, "2.13.0": True},
}


def torch_gaps(cells: Sequence[Cell], torch_version: str | None, gen: str) -> list[str]:
    """Why the torch generation `gen`'s image pins (None: no image known here) cannot run the cells as planned:
    one line per allocator key the runnable cells set that this version is known to lack (pure; an unknown
    version gives nothing)."""
    if torch_version is None:
        return []
    runnable = sum(1 for c in cells if c.status in RUNNABLE)
    out = []
    for key, ids in allocator_keys(cells).items():
        seen = ALLOCATOR_KEYS_MEASURED.get(key, {})
        if seen.get(torch_version) is not False:
            continue
        has = sorted(v for v, ok in seen.items() if ok)
        also = f"; torch {', '.join(has)} has it" if has else ""
        out.append(
            f"torch {torch_version} (the {gen} image) lacks allocator key {key}, which {len(ids)} of {runnable} cells set{also}"
        )
    return out


PROBE_SCRIPT = r"""
import importlib, importlib.util, json, pathlib, sys
from importlib import metadata
mods, pkgs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
keys = json.loads(sys.argv[3]) if len(sys.argv) > 3 else []
errors, versions, alloc = {}, {}, {}
if keys:  # before any import: a torch that fails to import still names its allocator keys in its libraries
    spec = importlib.util.find_spec("torch")
    libs = sorted(pathlib.Path(spec.origin).parent.joinpath("lib").glob("libc10*.so*")) if spec and spec.origin else []
    blobs = [p.read_bytes() for p in libs]
    alloc = {k: (any(k.encode() in b for b in blobs) if blobs else None) for k in keys}
for m in mods:  # in order: torch first, as every verl process does
    try:
        importlib.import_module(m)
        errors[m] = None
    except BaseException as e:  # an extension's SystemExit or a missing symbol must not end the probe
        text = (str(e).strip().splitlines() or [""])[-1]
        errors[m] = f"{type(e).__name__}: {text}"[:500]
for p in pkgs:
    try:
        versions[p] = metadata.version(p)
    except Exception:
        pass
print("GRPO_SUITE_PROBE " + json.dumps({"errors": errors, "versions": versions, "allocator_keys": alloc}))
"""


def probe(
    modules: Sequence[str],
    *,
    python: str = "python3",
    env: Mapping[str, str] | None = None,
    packages: Sequence[str] = (),
    alloc_keys: Sequence[str] = (),
    timeout_s: float = PROBE_TIMEOUT_S,
) -> Probe:
    """Import `modules` in a child `python` with `env` (a child: a failed CUDA extension must not poison this
    process, and the cells' interpreter may not be this one)."""
    env = dict(os.environ if env is None else env)
    exe = shutil.which(python, path=env.get("PATH")) or python
    pkgs = sorted({*CONTEXT_PACKAGES, *packages})
    try:
        proc = subprocess.run(
            [exe, "-c", PROBE_SCRIPT, json.dumps(list(modules)), json.dumps(pkgs), json.dumps(list(alloc_keys))],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout_s,
        )
    except FileNotFoundError:
        return Probe(python, {}, failure=f"no interpreter {python!r} on PATH")
    except subprocess.TimeoutExpired:
        return Probe(python, {}, failure=f"imports took over {timeout_s:g} s")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("GRPO_SUITE_PROBE "):
            data = json.loads(line.split(" ", 1)[1])
            return Probe(python, data["errors"], data["versions"], allocator_keys=data.get("allocator_keys", {}))
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return Probe(python, {}, failure=f"probe exited {proc.returncode}: {tail}")


def hint(need: Need, error: str, versions: Mapping[str, str]) -> str | None:
    """The fix for a failed import, where one is known (pure)."""
    cublas = next(
        (versions[p] for p in ("nvidia-cublas", "nvidia-cublas-cu13", "nvidia-cublas-cu12") if p in versions), None
    )
    te = versions.get("transformer-engine")
    if need.module == ROPE_FP32_MODULE:
        return (
            "verl's workers import it (VERL_USE_EXTERNAL_MODULES): install the suite in the cells' environment "
            "(pip install -e <checkout>) or put its checkout on PYTHONPATH; or set keep_rope_fp32 = false and plan "
            "again (the trainer then computes RoPE from bf16 frequencies: docs/matrix.md)"
        )
    if need.module == PAGEABLE_COPIES_MODULE:
        return (
            "verl's workers import it (VERL_USE_EXTERNAL_MODULES): install the suite in the cells' environment "
            "(pip install -e <checkout>) or put its checkout on PYTHONPATH; or plan without pageable_host_copies"
        )
    if need.module.startswith("transformer_engine") and "undefined symbol" in error and "cublas" in error.lower():
        have = f"cuBLAS {cublas}" if cublas else "this cuBLAS"
        return (
            f"Transformer Engine {te or '?'} calls a cuBLAS function that {have} lacks: TE 2.13+ need "
            "cuBLAS 13.2+; on CUDA 13.0 / cuBLAS 13.1 install TE 2.12.0 (transformer-engine, "
            "transformer-engine-cu13 and the torch binding built against this torch; docs/containers.md)"
        )
    if need.module.startswith("transformer_engine") and "libtransformer_engine" in error:
        return (
            "the TE core library is missing or was overwritten: install exactly one of transformer-engine-cu12 "
            "/ -cu13, matching torch's CUDA, with --no-deps"
        )
    if need.module.startswith("transformer_engine") and "transformer_engine_torch" in error:
        return (
            "TE's torch binding (transformer_engine_torch) is not installed: it is an sdist, built against the "
            "installed torch with `pip install --no-build-isolation --no-deps transformer-engine-torch==<TE>`"
        )
    if need.module == "modelopt":
        return "pip install nvidia-modelopt 'pulp<4' (Megatron-Bridge imports modelopt, which imports pulp)"
    if need.module == "megatron.bridge":
        return "pip install --no-deps megatron-bridge (as verl installs it; its declared NeMo stack is not needed)"
    if need.module == "fused_weight_gradient_mlp_cuda":
        return (
            "set megatron_gradient_accumulation_fusion = false in the matrix's [base] (the default), or install "
            "NVIDIA apex with its CUDA extensions (never the PyPI package named 'apex')"
        )
    if need.module == FLASH_CE_MODULE:
        return (
            "the matrix says flash_attn = true and its memory was predicted for verl's Triton cross entropy: install "
            "flash-attn built for this torch, or set flash_attn = false (or leave it out) and plan again"
        )
    if need.module == "flash_attn.bert_padding":
        return (
            "set use_remove_padding = false in the matrix's [base] for these FSDP cells, or install flash-attn "
            "built for this torch"
        )
    if "pulp" in error:
        return "pip install 'pulp<4' (nvidia-modelopt imports it)"
    return None


def dist_name(package: str) -> str:
    """`transformer-engine[pytorch]` -> `transformer-engine`."""
    return package.split("[")[0].strip()


def diagnose(wanted: Sequence[Need], result: Probe) -> list[Finding]:
    """One finding per needed module: ok with its package version, or error with the import error and a fix."""
    if result.failure:
        return [Finding("error", n.module, n.package, n.cells, result.failure) for n in wanted]
    out: list[Finding] = []
    for n in wanted:
        err = result.errors.get(n.module, "not probed")
        if err is None:
            out.append(Finding("ok", n.module, n.package, n.cells, result.versions.get(dist_name(n.package), "")))
            continue
        out.append(Finding("error", n.module, n.package, n.cells, err, hint(n, err, result.versions)))
    return out


def allocator_findings(wanted: Mapping[str, Sequence[str]], result: Probe) -> list[Finding]:
    """One finding per allocator key the cells set: error where this torch's libraries do not name it (pure)."""
    if result.failure:
        return []  # diagnose reports the failed probe once per module already
    torch = result.versions.get("torch", "?")
    out: list[Finding] = []
    for key, cells in wanted.items():
        module = f"{ALLOC_CONF_ENV}:{key}"
        known = result.allocator_keys.get(key)
        if known:
            out.append(Finding("ok", module, "torch", tuple(cells), f"torch {torch} knows it"))
        elif known is None:
            out.append(
                Finding("warning", module, "torch", tuple(cells), "not checked: torch's c10 libraries not found")
            )
        else:
            hint_text = (
                "use a torch whose allocator has the key (2.13.0's has pinned_max_round_threshold_mb), or plan "
                "without the setting (pinned_round_max_mb in [base])"
                if key == "pinned_max_round_threshold_mb"
                else "use a torch whose allocator has the key, or drop it from the cells' PYTORCH_ALLOC_CONF"
            )
            detail = f"torch {torch} does not know allocator key {key!r}: every worker would fail as CUDA starts"
            out.append(Finding("error", module, "torch", tuple(cells), detail, hint_text))
    return out


def gpu_findings(cells: Sequence[Cell], info: Any | None, visible: int | None) -> list[Finding]:
    """What the host's GPUs mean for the cells (pure; `info` is telemetry.nvml.GpuInfo, `visible` the GPUs
    the run may use). Warnings only: a cell that needs more GPUs than the host offers is recorded `skipped`
    by the runner, and one planned for another generation runs and is filed under the one it ran on."""
    runnable = [c for c in cells if c.status in RUNNABLE]
    if not runnable:
        return []
    if info is None:
        return [Finding("warning", "gpus", "NVML", (), "no NVML here: GPU count and generation not checked")]
    count = visible if visible is not None else info.count
    out = [
        Finding(
            "ok",
            "gpus",
            "NVML",
            tuple(c.id for c in runnable),
            f"{count}x {info.name}, driver {info.driver}, CUDA {info.cuda}",
        )
    ]
    too_big = tuple(c.id for c in runnable if c.gpus_per_node > count)
    if too_big:
        need = max(c.gpus_per_node for c in runnable)
        out.append(
            Finding(
                "warning",
                "gpus",
                "NVML",
                too_big,
                f"need up to {need} GPUs per node, {count} visible",
                "these cells will be recorded `skipped`; select the others with --cells, or use a larger host",
            )
        )
    ran_on = generation_of(info.name) if info.name else None
    other = tuple(c.id for c in runnable if ran_on and c.gpu != ran_on)
    if other:
        planned = ", ".join(sorted({c.gpu for c in runnable if c.gpu != ran_on}))
        out.append(
            Finding(
                "warning",
                "gpus",
                "NVML",
                other,
                f"planned for {planned}, this host is {ran_on}",
                f"results are filed under {ran_on}; memory predictions were made for {planned}",
            )
        )
    return out


def errors(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == "error"]


def format_findings(findings: Sequence[Finding], *, python: str | None = None) -> str:
    """A plain table: level, module (package), cells, detail, and the fix under a failed row."""
    lines = [f"python: {python}"] if python else []
    if findings:
        lines.append(f"{'level':<7}  {'module':<31}  {'package':<28}  {'needed by':>9}  version or import error")
    for f in findings:
        cells = f"{len(f.cells)} cell{'s' if len(f.cells) != 1 else ''}" if f.cells else "-"
        lines.append(f"{f.level:<7}  {f.module:<31}  {f.package:<28}  {cells:>9}  {f.detail}")
        if f.hint:
            lines.append(f"{'':<9}fix: {f.hint}")
    return "\n".join(lines)


def check_cells(
    cells: Sequence[Cell], *, env: Mapping[str, str] | None = None, timeout_s: float = PROBE_TIMEOUT_S
) -> tuple[list[Finding], str]:
    """Probe with the cells' interpreter (argv[0]) and environment; (findings, interpreter)."""
    wanted = needs(cells)
    if not wanted:
        return [], ""
    keys = allocator_keys(cells)
    runnable = [c for c in cells if c.status in RUNNABLE]
    python = runnable[0].command[0] if runnable and runnable[0].command else "python3"
    merged = {**(os.environ if env is None else env), **(runnable[0].env if runnable else {})}
    result = probe(
        [n.module for n in wanted],
        python=python,
        env=merged,
        timeout_s=timeout_s,
        packages=[dist_name(n.package) for n in wanted],
        alloc_keys=list(keys),
    )
    return diagnose(wanted, result) + allocator_findings(keys, result), python
