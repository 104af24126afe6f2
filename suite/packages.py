"""The packages that matter: the one ordered list of distributions whose versions the suite shows and records.

One tuple, three consumers, all of it in this order:

- `suite.containers.build`: the image's `dev.grpo-suite.versions` label (those pinned in the generation's lock;
  the full set is the lockfile, whose hash is labelled);
- `suite.containers.versions`: the rows of the versions table in docs/containers.md;
- `suite.results.provenance`: what a result's `provenance.versions` records (those installed).

The stack first (torch, the rollout and trainer, Ray, the model libraries, the Megatron stack and its CUDA
kernels), then the libraries under them. Names are normalised distribution names (`suite.containers.lock.normalize`:
lower case, `-`), as the lockfiles and `importlib.metadata` know them. A leaf module: it imports nothing, so the
container code and the result code can both read it without importing each other.
"""

from __future__ import annotations

PACKAGES: tuple[str, ...] = (
    "torch",
    "vllm",
    "verl",
    "ray",
    "transformers",
    "peft",
    "megatron-core",
    "megatron-bridge",
    "nvidia-modelopt",  # Megatron-Bridge imports it: a missing or other modelopt breaks the Megatron cells
    "transformer-engine",  # which TE loads depends on the CUDA stack
    "flash-attn",
    "flashinfer-python",
    "tensordict",
    "nvidia-ml-py",
    "numpy",
    "pydantic",
)
