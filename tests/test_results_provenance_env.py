"""`provenance.env` records the variables that shape the stack (an allowlist), not the cell's whole environment."""

import json
from pathlib import Path

import pytest

from suite.results import provenance as prov
from suite.results.build import CellInfo, Observation, build_result
from suite.results.io import parse_result, read_result, write_result
from suite.results.schema import Provenance
from suite.run.cellenv import FORWARD_ENV, forwarded_env

KEPT = {
    "CUDA_VISIBLE_DEVICES": "0,1",
    "CUDA_DEVICE_MAX_CONNECTIONS": "1",
    "NCCL_NVLS_ENABLE": "0",
    "NVIDIA_VISIBLE_DEVICES": "all",
    "NVSHMEM_DISABLE_NVLS": "1",
    "TORCHINDUCTOR_CACHE_DIR": "/c/inductor",
    "TORCH_NCCL_AVOID_RECORD_STREAMS": "1",
    "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    "VLLM_USE_V1": "1",
    "RAY_TMPDIR": "/tmp/gsr-1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "VERL_FILE_LOGGER_PATH": "/out/metrics.jsonl",
    "GRPO_SUITE_IMAGE": "img:1",
    "OMP_NUM_THREADS": "16",
    "MKL_NUM_THREADS": "16",
    "TRITON_CACHE_DIR": "/c/triton",
    # flash-attn's Python files on a host without its CUDA module (tools/gpu/fa-site.sh): verl's log-prob path
    "FLASH_ATTENTION_TRITON_AMD_ENABLE": "TRUE",
    "LD_LIBRARY_PATH": "/usr/local/cuda/lib64",
    "PYTHONPATH": "/src",
    "CC": "gcc",
    "CXX": "g++",
    "CUDAHOSTCXX": "g++",
    "WANDB_MODE": "offline",
    "HYDRA_FULL_ERROR": "1",
}
# Unrelated host variables, all seen in the first real results: CA bundles, container names, shell variables,
# the caller's own script variables; near misses of the allowlist too.
DROPPED = {
    "AWS_CA_BUNDLE": "/etc/ssl/ca.pem",
    "CURL_CA_BUNDLE": "/etc/ssl/ca.pem",
    "NODE_EXTRA_CA_CERTS": "/etc/ssl/ca.pem",
    "CONTAINER_NAME": "box-7",
    "HOME": "/root",
    "PATH": "/usr/bin",
    "SHELL": "/bin/bash",
    "PWD": "/work",
    "LANG": "C.UTF-8",
    "MY_SWEEP_ROUND": "3",
    "NV_CUDA_LIB_VERSION": "12.8",
    "LIBRARY_PATH": "/usr/lib",
    "CCACHE_DIR": "/c/ccache",
    "cuda_home": "/usr/local/cuda",
}
SECRETS = {
    "HF_TOKEN": "hf_abcdef123456",
    "HUGGING_FACE_HUB_TOKEN": "hf_fedcba654321",
    "HF_TOKEN_PATH": "/root/.hf/token",
    "RAY_AUTH_TOKEN": "ray-auth-0001",
    "WANDB_API_KEY": "wandb-key-42",
    "VLLM_API_KEY": "vllm-key-42",
    "TORCH_SECRET": "torch-secret-42",
    "NCCL_PASSWORD": "nccl-pw-42",
    "CUDA_PRIVATE_KEY": "cuda-key-42",
}


def test_allowlisted_variables_are_kept_and_the_rest_dropped():
    env = prov.recorded_env({**KEPT, **DROPPED})
    assert env == dict(sorted(KEPT.items()))


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_secret_named_variables_are_never_recorded_even_with_an_allowed_prefix(name):
    assert prov.is_secret_env(name)
    assert prov.recorded_env({name: SECRETS[name], "OMP_NUM_THREADS": "8"}) == {"OMP_NUM_THREADS": "8"}


def test_hf_token_is_dropped_from_a_collected_result():
    p = prov.collect(argv=[], env={"HF_TOKEN": "hf_abcdef123456", "HF_HOME": "/hf", "HOME": "/root"}, runtime="host")
    assert p.env == {"HF_HOME": "/hf"}
    assert "hf_abcdef123456" not in p.model_dump_json()


def test_a_secret_value_copied_into_a_kept_variable_is_cut_out():
    # Ray hands a job's driver its whole runtime env, secrets included, under a harmless RAY_* name.
    job_config = json.dumps({"runtime_env": {"env_vars": {"HF_TOKEN": SECRETS["HF_TOKEN"], "X": "1"}}})
    env = prov.recorded_env({"HF_TOKEN": SECRETS["HF_TOKEN"], "RAY_JOB_CONFIG_JSON_ENV_VAR": job_config})
    assert list(env) == ["RAY_JOB_CONFIG_JSON_ENV_VAR"]
    assert SECRETS["HF_TOKEN"] not in env["RAY_JOB_CONFIG_JSON_ENV_VAR"]
    assert '"X": "1"' in env["RAY_JOB_CONFIG_JSON_ENV_VAR"]


def test_credentials_in_urls_of_kept_variables_are_removed():
    env = prov.recorded_env({"HF_ENDPOINT": "https://user:pw@hub.example"})
    assert env == {"HF_ENDPOINT": f"https://{prov.REDACTED}@hub.example"}


def test_every_forwarded_variable_is_recorded_except_secrets():
    # One variable per FORWARD_ENV pattern: what docker / Ray / Slurm forward to a cell, its result records.
    environ = {pat.replace("*", "X_SETTING"): "1" for pat in FORWARD_ENV}
    forwarded = forwarded_env(environ)
    assert set(forwarded) == set(environ)
    recorded = prov.recorded_env(environ)
    assert set(recorded) == {k for k in forwarded if not prov.is_secret_env(k)}
    assert {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY"}.isdisjoint(recorded)
    assert {"GLOO_X_SETTING", "UCX_X_SETTING", "TP_SOCKET_IFNAME", "WANDB_BASE_URL"} <= set(recorded)


def test_the_recorded_env_stays_a_str_to_str_mapping():
    assert Provenance.model_fields["env"].annotation == dict[str, str]
    p = prov.collect(argv=[], env={**KEPT, **DROPPED, **SECRETS}, runtime="host")
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in p.env.items())


# -- old results, written before the allowlist, hold the whole environment: still read, unchanged ------------------
OLD_RESULT = (
    Path(__file__).parents[1]
    / "baselines/evidence/2026-11-28-h100x4-short/h100-graphs/qwen2.5-0.5b/h100x1/fsdp/full-off_none-tp1-rb16/result.json"
)


def test_a_committed_result_with_the_full_environment_is_still_read():
    r = read_result(OLD_RESULT)
    assert {"HOME", "AWS_CA_BUNDLE", "CONTAINER_NAME", "NV_CUDA_LIB_VERSION"} <= set(r.provenance.env)
    assert r.provenance.env == json.loads(OLD_RESULT.read_text())["provenance"]["env"]


def test_a_full_environment_survives_a_write_and_read_back(tmp_path):
    info = CellInfo(
        id="tiny/h100x1/fsdp/lora8",
        matrix="m",
        profile="bench",
        gpu="h100",
        n_gpus=1,
        model="fake/tiny",
        backend="fsdp",
        axes={"lora_rank": 8},
        warmup_steps=1,
    )
    full = {**KEPT, **DROPPED, "HF_TOKEN": prov.REDACTED}  # what the writer used to record
    result = build_result(info, Observation(exit_code=0), Provenance(env=full))
    path = write_result(tmp_path / "result.json", result)
    assert read_result(path).provenance.env == full
    assert parse_result(path.read_text()).provenance.env == full
