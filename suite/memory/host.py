"""Host memory (RAM) of one node during a verl 0.9.1 GRPO run. Pure arithmetic over `MemorySettings` and a
`Calibration`, in bytes here and GiB in the `HostPrediction`.

Why a host model at all: Ray's memory monitor kills workers at 95 % of host memory (verl #7489, #3453, #529),
and a cell can fail there while its GPUs look fine. What lives in host RAM (read off verl 0.9.1 and the torch /
vLLM code it calls):

- vLLM's sleep copy: with LoRA served as an adapter verl sleeps vLLM at level 1 (`_resolve_sleep_level` in
  workers/rollout/vllm_rollout/vllm_async_server.py), and vLLM's CuMemAllocator backs every "weights" allocation
  up into a pinned CPU tensor: the bf16 weights shard of each GPU worker (model bytes / rollout TP per GPU).
  Full fine-tuning sleeps at level 2: the weights are discarded, nothing stays on the host.
- FSDP param offload (`offload_fsdp_model_to_cpu`: non-blocking `.to("cpu")`, pinned) keeps each rank's shard of
  the actor in its model dtype (fp32 by default); optimizer offload (`offload_fsdp_optimizer`) keeps Adam's exp_avg
  and exp_avg_sq of the trainable parameters, in the parameter dtype (the fp32 parameters are the master weights:
  verl's FSDP keeps no separate copy). No gradient offload: gradients are freed after each step. FSDP2
  `offload_policy` (CPUOffloadPolicy) keeps parameters, gradients and Adam state on the CPU for the whole step.
- The FSDP reference of full fine-tuning with a KL term is always CPU-offloaded (`forward_only`: CPUOffload /
  CPUOffloadPolicy(pin_memory=True)), bf16. With LoRA the reference is the actor without adapters: no copy.
- Megatron (utils/megatron_utils.py): param offload copies the bf16 DDP parameter buffer into one pinned buffer
  (gradient buffers are freed, not copied) and frozen LoRA base weights tensor by tensor; optimizer offload
  moves the fp32 main parameters and Adam m, v (12 bytes per trainable parameter, split over TP x PP x DP);
  reference param offload a pageable bf16 copy.
- Pinned blocks are rounded up to a power of two and cached by torch's CachingHostAllocator: the host keeps the
  rounded size ("pinned_rounding").
- One resident set per process: the Ray driver and system processes, the TaskRunner, one trainer worker per GPU,
  per vLLM replica an HTTP server and an EngineCore, one vLLM GPU worker per GPU, and the agent-loop, reward and
  DataLoader workers.

Phases (the peak is the worst one, not the sum):
- startup: FSDP builds the actor on the CPU of global rank 0 (every rank with tied embeddings) in its model
  dtype from an mmapped checkpoint (a copy only where that dtype is not the file's), beside a reference that is
  already CPU-offloaded; only the driver, Ray, the TaskRunner and the trainer workers exist yet;
- base_sync: only with LoRA, `load_format=dummy` and no layered summon: the first weight sync gathers the whole
  base model on the CPU of every rank (`collect_lora_params`) on top of the steady state;
- steady: everything offloaded or backed up at once (cached pinned blocks are not given back).

Per node: the GPUs of one node; pinned copies are per GPU, so they scale with GPUs per node, while sharded
states shrink with the world size."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from suite.memory.calibration import Calibration, default_calibration
from suite.memory.model import Phase, lora_parameters, micro_batch_tokens
from suite.memory.settings import MemorySettings
from suite.models.archs import Arch

GIB = 1024**3
MIB = 1024**2

# The order of the breakdown and of the reason's parts when sizes tie.
COMPONENTS = (
    "model_load",
    "checkpoint_mmap",
    "base_sync_gather",
    "merge_backup",
    "vllm_sleep_copy",
    "offloaded_params",
    "offloaded_grads",
    "optimizer_states",
    "ref_params",
    "offloaded_activations",
    "pinned_rounding",
    "processes",
)

PROCESS_KINDS = (
    "driver",
    "ray_system",
    "task_runner",
    "trainer_worker",
    "vllm_server",
    "vllm_engine_core",
    "vllm_worker",
    "agent_worker",
    "reward_worker",
    "dataloader_worker",
    "tq_storage_unit",
    "tq_controller",
)
# What runs while the actor is built: verl 0.9.1's TaskRunnerV1 starts TransferQueue first (main_ppo.py tq.init),
# then init_workers calls the workers' init_model before it creates the RewardLoopManager and the
# AgentLoopManager (which launches vLLM); DataLoader workers start with the first iteration.
STARTUP_PROCESSES = ("driver", "ray_system", "task_runner", "trainer_worker", "tq_storage_unit", "tq_controller")


@dataclass(frozen=True)
class HostPrediction:
    peak_gib: float  # per node (the busiest: the head node, which also runs the driver and CPU workers)
    phase: str  # the worst phase
    phases: tuple[Phase, ...]
    nnodes: int
    gpus_per_node: int
    processes: dict[str, int]  # process kind -> count on the busiest node
    threshold: float = 0.95  # Ray's kill fraction, from the calibration
    notes: tuple[str, ...] = field(default=())
    # sizes (bytes) of unrounded cached blocks sharing a size class in one process (see `pinned_clashes`)
    pinned_clashes: tuple[tuple[int, ...], ...] = ()

    @property
    def breakdown(self) -> dict[str, float]:
        """Components of the worst phase, GiB rounded to 0.01 (what `Cell.host_memory_breakdown` stores)."""
        worst = next(p for p in self.phases if p.name == self.phase)
        return {k: round(v, 2) for k, v in worst.components.items() if round(v, 2) > 0}

    def phase_totals(self) -> dict[str, float]:
        return {p.name: round(p.total_gib, 2) for p in self.phases}

    def limit_gib(self, host_gib: float, fraction: float | None = None) -> float:
        return (self.threshold if fraction is None else fraction) * host_gib

    def fits(self, host_gib: float, fraction: float | None = None) -> bool:
        """Below `fraction` (default: the calibrated 0.95) of the node's RAM, where Ray starts killing."""
        return self.peak_gib <= self.limit_gib(host_gib, fraction)

    def reason(self, host_gib: float, fraction: float | None = None) -> str:
        """One line with the numbers, e.g. 'host: predicted 131.2 GiB > 0.95 x 125 GiB (vllm sleep copy 14.2,
        offloaded params 28.4, ...)'."""
        f = self.threshold if fraction is None else fraction
        op = "<=" if self.fits(host_gib, f) else ">"
        parts = sorted(self.breakdown.items(), key=lambda kv: (-kv[1], COMPONENTS.index(kv[0])))
        text = ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in parts)
        where = "" if self.phase == "steady" else f"{self.phase}: "
        return f"host: predicted {self.peak_gib:.1f} GiB {op} {f:g} x {host_gib:g} GiB ({where}{text})"


# --- tensors ------------------------------------------------------------------------------------------------
# A tensor is (rows, cols); sharding splits rows (dim 0), as FSDP2, vLLM's column-parallel layers and Megatron do.


def lora_targets(arch: Arch, target_modules: tuple[str, ...]) -> list[str]:
    """The HF linear names LoRA adapts (the same resolution as model.lora_parameters)."""
    megatron = {
        "linear_qkv": ("q_proj", "k_proj", "v_proj"),
        "linear_proj": ("o_proj",),
        "linear_fc1": ("gate_proj", "up_proj"),
        "linear_fc2": ("down_proj",),
    }
    shapes = arch.linear_shapes()
    names: set[str] = set()
    for t in target_modules:
        if t == "all-linear":
            names.update(shapes)
        else:
            names.update(megatron.get(t, (t,) if t in shapes else ()))
    return [n for n in shapes if n in names]


def hf_layer_tensors(arch: Arch) -> list[tuple[int, int]]:
    """One decoder layer's parameters in the Hugging Face layout (what FSDP shards)."""
    h, kv = arch.hidden_size, arch.num_key_value_heads * arch.head_dim
    out = [(o, i) for i, o in arch.linear_shapes().values()]  # weight rows = out features
    out += [(h, 1), (h, 1)]  # input / post-attention RMSNorm
    if arch.attention_bias:
        out += [(h, 1), (kv, 1), (kv, 1)]
    return out


def hf_root_tensors(arch: Arch) -> list[tuple[int, int]]:
    """Embedding, a separate lm_head unless tied, final norm."""
    head = [] if arch.tie_word_embeddings else [(arch.vocab_size, arch.hidden_size)]
    return [(arch.vocab_size, arch.hidden_size), *head, (arch.hidden_size, 1)]


def lora_tensors(arch: Arch, rank: int, target_modules: tuple[str, ...]) -> list[tuple[int, int]]:
    """One layer's adapters: lora_A (rank x in) and lora_B (out x rank) per adapted linear."""
    if rank <= 0:
        return []
    shapes = arch.linear_shapes()
    return [t for n in lora_targets(arch, target_modules) for t in ((rank, shapes[n][0]), (shapes[n][1], rank))]


def _numel(t: tuple[int, int]) -> int:
    return t[0] * t[1]


def _shard(t: tuple[int, int], world: int) -> int:
    return math.ceil(t[0] / world) * t[1]


def fsdp_rank_blocks(s: MemorySettings) -> list[tuple[int, bool]]:
    """(elements, trainable) of each separately allocated tensor one FSDP rank offloads. FSDP2 shards every
    parameter on dim 0 (one DTensor each); FSDP1 flattens each wrapped unit (a decoder layer, each LoRA linear,
    the root) and shards the flat parameter."""
    arch, world = s.arch, max(1, s.n_gpus)
    layer, root = hf_layer_tensors(arch), hf_root_tensors(arch)
    lora = lora_tensors(arch, s.lora_rank, s.target_modules)
    base_trainable = not s.lora
    blocks: list[tuple[int, bool]] = []
    if s.fsdp_strategy == "fsdp2":
        for _ in range(arch.num_hidden_layers):
            blocks += [(_shard(t, world), base_trainable) for t in layer]
            blocks += [(_shard(t, world), True) for t in lora]
        blocks += [(_shard(t, world), base_trainable) for t in root]
        return blocks
    for _ in range(arch.num_hidden_layers):
        blocks.append((math.ceil(sum(map(_numel, layer)) / world), base_trainable))
        blocks += [(math.ceil(_numel(t) / world), True) for t in lora]
    blocks.append((math.ceil(sum(map(_numel, root)) / world), base_trainable))
    return blocks


def vllm_worker_tensors(s: MemorySettings, c: Calibration) -> list[int]:
    """Elements of each weight tensor of one vLLM GPU worker (fused qkv and gate_up, split over rollout TP; KV
    heads replicated when fewer than TP), bf16."""
    arch, tp = s.arch, max(1, s.rollout_tp)
    h, i, hd = arch.hidden_size, arch.intermediate_size, arch.head_dim
    q = math.ceil(arch.num_attention_heads / tp) * hd
    kv = max(1, math.ceil(arch.num_key_value_heads / tp)) * hd
    ff = math.ceil(i / tp)
    layer = [(q + 2 * kv) * h, h * q, 2 * ff * h, h * ff, h, h]
    if arch.attention_bias:
        layer.append(q + 2 * kv)
    pad = c.host.vllm_vocab_padding
    vocab = math.ceil(math.ceil(arch.vocab_size / pad) * pad / tp) * h
    root = [vocab] + ([] if arch.tie_word_embeddings else [vocab]) + [h]
    return layer * arch.num_hidden_layers + root


def megatron_gpu_tensors(s: MemorySettings, c: Calibration) -> list[int]:
    """Elements of each base weight tensor on one Megatron GPU (TP-split, the layers of one PP stage; the
    embedding and output layer both counted: the first and last stage are the worst)."""
    arch, tp, pp = s.arch, max(1, s.megatron_tp), max(1, s.megatron_pp)
    h, i, kv = arch.hidden_size, arch.intermediate_size, arch.num_key_value_heads * arch.head_dim
    layer = [math.ceil((h + 2 * kv) / tp) * h, h * math.ceil(h / tp), 2 * math.ceil(i / tp) * h]
    layer += [h * math.ceil(i / tp), h, h]
    if arch.attention_bias:
        layer.append(math.ceil((h + 2 * kv) / tp))
    pad = c.host.megatron_vocab_padding * tp
    vocab = math.ceil(arch.vocab_size / pad) * pad // tp * h
    root = [vocab] + ([] if arch.tie_word_embeddings else [vocab]) + [h]
    return layer * math.ceil(arch.num_hidden_layers / pp) + root


@dataclass(frozen=True)
class Pinned:
    """Bytes asked for and bytes the pinned allocator keeps for them; `exact`: the sizes it caches unrounded."""

    raw: float = 0.0
    held: float = 0.0
    exact: frozenset[int] = frozenset()

    def __add__(self, other: Pinned) -> Pinned:
        return Pinned(self.raw + other.raw, self.held + other.held, self.exact | other.exact)

    def times(self, k: float) -> Pinned:
        return Pinned(self.raw * k, self.held * k, self.exact)

    @property
    def rounding(self) -> float:
        return self.held - self.raw


def pinned(sizes: list[float], c: Calibration, s: MemorySettings | None = None) -> Pinned:
    """Blocks of `sizes` bytes through torch's CachingHostAllocator: each rounded up to a power of two (blocks
    under `pinned_min_block_mib` share segments: counted as asked), unless the cell's allocator config keeps it
    unrounded: above `pinned_max_round_threshold_mb` or above `pinned_max_cached_size_mb` (torch rounds a block
    only when it is within both)."""
    raw = float(sum(sizes))
    if not c.host.pinned_power_of_two:
        return Pinned(raw, raw)
    small = c.host.pinned_min_block_mib * MIB
    round_max = math.inf if s is None or s.pinned_round_max_mib is None else s.pinned_round_max_mib * MIB
    cache_max = math.inf if s is None or s.pinned_cache_max_mib is None else s.pinned_cache_max_mib * MIB
    held, exact = 0.0, set()
    for b in sizes:
        if b < small:
            held += b
        elif b <= round_max and b <= cache_max:
            held += next_power_of_two(b)
        else:
            held += b
            if b <= cache_max:  # unrounded and cached: shares its size class with other sizes (pinned_clashes)
                exact.add(math.ceil(b))
    return Pinned(raw, held, frozenset(exact))


def next_power_of_two(nbytes: float) -> int:
    return 1 << max(0, math.ceil(nbytes) - 1).bit_length()


def size_class(nbytes: int) -> int:
    """The free list torch's host allocator files a block under: ceil(log2(size))."""
    return max(0, nbytes - 1).bit_length()


def pinned_clashes(exact: frozenset[int]) -> tuple[tuple[int, ...], ...]:
    """Groups of different unrounded, cached block sizes that share one size class of one process's allocator.
    torch's CachingHostAllocator (up to 2.13 at least) hands out the last cached block of a class without
    comparing sizes, so a larger request there can get a smaller block and write past it (pytorch #192722)."""
    classes: dict[int, set[int]] = {}
    for b in exact:
        classes.setdefault(size_class(b), set()).add(b)
    return tuple(tuple(sorted(v)) for _k, v in sorted(classes.items()) if len(v) > 1)


def pageable(nbytes: float) -> Pinned:
    return Pinned(nbytes, nbytes)


def _copies(sizes: list[float], exact: bool, c: Calibration, s: MemorySettings) -> Pinned:
    """Host copies of `sizes` bytes that verl or vLLM asks to pin, unless suite/run/pageable_copies.py makes them
    their own size (pageable, or registered in place: never rounded)."""
    return pageable(sum(sizes)) if exact else pinned(sizes, c, s)


# --- components (bytes per node) ----------------------------------------------------------------------------


def _dtype_bytes(dtype: str | None, default: str) -> int:
    return 4 if (dtype or default) in ("fp32", "float32") else 2


def _is_checkpoint_dtype(dtype: str, c: Calibration) -> bool:
    """Whether a model dtype is the checkpoint files' own: bf16 safetensors (`host.checkpoint_bytes` 2)."""
    return c.host.checkpoint_bytes == 2 and dtype.lower() in ("bf16", "bfloat16")


@dataclass(frozen=True)
class HostStates:
    vllm_sleep_copy: Pinned
    offloaded_params: Pinned
    offloaded_grads: Pinned
    optimizer_states: Pinned
    ref_params: Pinned
    offloaded_activations: float


def vllm_sleep_copy(s: MemorySettings, c: Calibration) -> Pinned:
    """Per node: each GPU worker's weights shard backed up at sleep level 1 (LoRA adapter mode only)."""
    if not (s.lora and not s.lora_merge and s.free_cache_engine):
        return Pinned()
    exact = s.pageable_copies or s.vllm_registered
    blocks = _copies([n * c.dtypes.compute_bytes for n in vllm_worker_tensors(s, c)], exact, c, s)
    # vLLM's LoRA buffers (max_loras 1 x max_lora_rank) sit in the same pool: small tensors, counted as asked
    adapters = lora_parameters(s.arch, s.lora_rank, s.target_modules) * c.dtypes.compute_bytes / max(1, s.rollout_tp)
    return (blocks + pageable(adapters)).times(s.node_gpus)


def _fsdp_states(s: MemorySettings, c: Calibration) -> HostStates:
    pbytes = _dtype_bytes(s.model_dtype, c.dtypes.fsdp_default_model_dtype)
    blocks = fsdp_rank_blocks(s)
    trainable = [n for n, t in blocks if t]
    params = grads = optim = ref = Pinned()
    if s.offload_policy and s.fsdp_strategy == "fsdp2":  # verl reads offload_policy in its FSDP2 branch only
        # FSDP2 CPUOffloadPolicy(pin_memory=True): pinned params and gradients; Adam state made on the CPU by
        # zeros_like of a pinned parameter is ordinary (pageable) memory
        params = pinned([n * pbytes for n, _ in blocks], c, s)
        grads = pinned([n * pbytes for n in trainable], c, s)
        optim = pageable(sum(trainable) * c.dtypes.adam_states * pbytes)
    else:
        # suite/run/pageable_copies.py replaces verl's FSDP2 model offload (FSDP1 moves flat parameters its own
        # way, pinned) and its optimizer offload (both strategies) with copies of their own size: pageable, or
        # registered buffers kept for the run (the same bytes on the host)
        exact = s.pageable_copies or s.registered_copies
        if s.param_offload:
            params = _copies([n * pbytes for n, _ in blocks], exact and s.fsdp_strategy == "fsdp2", c, s)
        if s.optimizer_offload:
            sizes = [n * pbytes for n in trainable for _ in range(c.dtypes.adam_states)]
            optim = _copies(sizes, exact, c, s)
    if s.use_kl_loss and not s.lora:
        # verl 0.9.1 reads forward_only as bf16 only where model_dtype is None, and its config defaults the
        # reference's model_dtype to fp32 like the actor's (logged: ref.fsdp_config.model_dtype fp32)
        rbytes = _dtype_bytes(s.ref_model_dtype, c.dtypes.fsdp_default_model_dtype)
        ref = pinned([n * rbytes for n, _ in fsdp_rank_blocks(s)], c, s)
    acts = 0.0
    if s.activation_offload:
        tokens = micro_batch_tokens(s, c, micro=s.ppo_micro_batch_size_per_gpu, max_tokens=s.ppo_max_token_len_per_gpu)
        acts = tokens * c.activations.checkpoint_h * s.arch.hidden_size * s.arch.num_hidden_layers
    k = s.node_gpus
    return HostStates(Pinned(), params.times(k), grads.times(k), optim.times(k), ref.times(k), acts * k)


def _megatron_states(s: MemorySettings, c: Calibration) -> HostStates:
    d = c.dtypes
    shards = max(1, s.megatron_tp * s.megatron_pp)
    dp = max(1, s.n_gpus // shards)
    base = megatron_gpu_tensors(s, c)
    layers = math.ceil(s.arch.num_hidden_layers / max(1, s.megatron_pp))
    # adapters split like the linears they adapt (an approximation: TP splits one of the two LoRA matrices)
    lora = [_numel(t) / max(1, s.megatron_tp) for t in lora_tensors(s.arch, s.lora_rank, s.target_modules)] * layers
    lora_numel = sum(lora)
    params = optim = ref = Pinned()
    if s.param_offload:
        # one pinned copy of the whole DDP parameter buffer (the trainable bf16 parameters); frozen LoRA base
        # weights move tensor by tensor (non_blocking .to("cpu"): pinned)
        trainable = lora_numel if s.lora else float(sum(base))
        params = pinned([trainable * d.megatron_param_bytes], c, s)
        if s.lora:
            params = params + pinned([n * d.megatron_param_bytes for n in base], c, s)
    if s.optimizer_offload:
        # fp32 main parameter, exp_avg, exp_avg_sq per trainable tensor, each a 1/DP shard
        per_state = d.megatron_optim_bytes // 3
        tensors = lora if s.lora else [float(n) for n in base]
        optim = pinned([n / dp * per_state for n in tensors for _ in range(3)], c, s)
    if s.use_kl_loss and not s.lora and s.ref_param_offload:
        ref = pageable(s.arch.num_parameters * d.megatron_param_bytes / shards)  # blocking .to("cpu")
    k = s.node_gpus
    return HostStates(Pinned(), params.times(k), Pinned(), optim.times(k), ref.times(k), 0.0)


def host_states(s: MemorySettings, c: Calibration) -> HostStates:
    st = _megatron_states(s, c) if s.backend == "megatron" else _fsdp_states(s, c)
    return HostStates(
        vllm_sleep_copy(s, c),
        st.offloaded_params,
        st.offloaded_grads,
        st.optimizer_states,
        st.ref_params,
        st.offloaded_activations,
    )


def process_counts(s: MemorySettings) -> dict[str, int]:
    """Processes on the busiest node (the head: the driver, TaskRunner and CPU-only Ray workers are assumed
    there, the worst placement Ray may choose)."""
    gpn = s.node_gpus
    replicas = max(1, gpn // max(1, s.rollout_tp))  # a replica wider than a node still has a server per node
    return {
        "driver": 1,
        "ray_system": 1,
        "task_runner": 1,
        "trainer_worker": gpn,
        "vllm_server": replicas,
        "vllm_engine_core": replicas,
        "vllm_worker": gpn,
        "agent_worker": max(0, s.agent_num_workers),
        "reward_worker": max(0, s.reward_num_workers),
        "dataloader_worker": max(0, s.dataloader_num_workers),
        "tq_storage_unit": max(0, s.tq_storage_units) if s.use_v1 else 0,
        "tq_controller": 1 if s.use_v1 else 0,
    }


def process_bytes(counts: dict[str, int], c: Calibration) -> float:
    return sum(n * getattr(c.host, f"{kind}_gib") * GIB for kind, n in counts.items())


# --- phases -------------------------------------------------------------------------------------------------


def _gib(parts: dict[str, float]) -> dict[str, float]:
    return {k: v / GIB for k, v in parts.items()}


def predict_host(s: MemorySettings, calibration: Calibration | None = None) -> HostPrediction:
    """Peak host RAM of the busiest node (GiB) of one cell, the worst of its phases, with the breakdown."""
    c = calibration or default_calibration()
    st = host_states(s, c)
    counts = process_counts(s)
    procs = process_bytes(counts, c)
    held = [st.vllm_sleep_copy, st.offloaded_params, st.offloaded_grads, st.optimizer_states, st.ref_params]
    notes: list[str] = list(s.notes)

    steady = {
        "vllm_sleep_copy": st.vllm_sleep_copy.raw,
        "offloaded_params": st.offloaded_params.raw,
        "offloaded_grads": st.offloaded_grads.raw,
        "optimizer_states": st.optimizer_states.raw,
        "ref_params": st.ref_params.raw,
        "offloaded_activations": st.offloaded_activations,
        "pinned_rounding": sum(p.rounding for p in held),
        "processes": procs,
    }
    out = [Phase("steady", _gib(steady))]

    if s.backend == "fsdp":
        n = s.arch.num_parameters
        lora = lora_parameters(s.arch, s.lora_rank, s.target_modules)
        pbytes = _dtype_bytes(s.model_dtype, c.dtypes.fsdp_default_model_dtype)
        loaders = s.node_gpus if s.arch.tie_word_embeddings else 1  # meta init everywhere else
        # transformers 5 keeps the mmapped checkpoint's tensors where the model dtype is the file's (bf16 from bf16
        # safetensors: 0.11 bytes a parameter of RSS after from_pretrained on CPU, 6.1 for fp32), so only a cast
        # (fp16 too: same width, other dtype) makes a copy; the pages count once, under checkpoint_mmap
        copied = 0.0 if _is_checkpoint_dtype(s.model_dtype or c.dtypes.fsdp_default_model_dtype, c) else n * pbytes
        startup = {
            "model_load": loaders * (copied + lora * pbytes),
            "checkpoint_mmap": loaders * n * c.host.checkpoint_bytes * c.host.checkpoint_mmap_fraction,
            "ref_params": st.ref_params.raw,  # the reference is built (and CPU-offloaded) before the actor
            "pinned_rounding": st.ref_params.rounding,
            "processes": process_bytes({k: counts[k] for k in STARTUP_PROCESSES}, c),
        }
        out.insert(0, Phase("startup", _gib(startup)))
        if s.lora and s.lora_merge:
            # verl 0.9.1 merges for each weight sync inside merged_lora_context(backup_adapters=True), which first
            # clones every base weight shard to the CPU (backup_base_model_weights: .data.clone().cpu(), pageable,
            # in the actor's dtype) and copies it back afterwards; the node's ranks hold node_gpus / n_gpus of it
            backup = n * pbytes * s.node_gpus / max(1, s.n_gpus)
            out.append(Phase("merge_sync", _gib({"merge_backup": backup, **steady})))
        if s.lora and not s.lora_merge and "dummy" in s.load_format:
            if s.layered_summon:
                notes.append("layered_summon with load_format=dummy: verl 0.9.1 refuses it at the first sync")
            else:
                # every rank moves its shard to the CPU and gathers the full base model there
                gather = s.node_gpus * n * pbytes * (1 + 1 / max(1, s.n_gpus))
                out.insert(1, Phase("base_sync", _gib({"base_sync_gather": gather, **steady})))
    else:
        notes.append("Megatron start-up reads checkpoint slices per rank: not modelled (below the steady state)")

    worst = max(out, key=lambda p: p.total_gib)
    # vLLM's worker backs its weights up in its own process; the trainer worker holds every other pinned state
    trainer = frozenset().union(*(p.exact for p in held[1:]))
    return HostPrediction(
        peak_gib=worst.total_gib,
        phase=worst.name,
        phases=tuple(out),
        nnodes=s.nnodes,
        gpus_per_node=s.node_gpus,
        processes=counts,
        threshold=c.host.memory_usage_threshold,
        notes=tuple(notes),
        pinned_clashes=pinned_clashes(st.vllm_sleep_copy.exact) + pinned_clashes(trainer),
    )
