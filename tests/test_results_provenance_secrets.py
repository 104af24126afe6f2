"""Secret values never survive in a result's environment, whatever variable carries them."""

import pytest

from suite.results.provenance import REDACTED, is_secret, redact_argv, redact_env


def test_secret_named_variables_are_redacted():
    env = redact_env({"HF_TOKEN": "hf_abcdef123", "PATH": "/usr/bin"})
    assert env["HF_TOKEN"] == REDACTED
    assert env["PATH"] == "/usr/bin"


def test_secret_value_copied_under_a_harmless_name_is_cut_out():
    job_config = '{"runtime_env": {"env_vars": {"WANDB_API_KEY": "wandb-secret-42", "X": "1"}}}'
    env = redact_env({"WANDB_API_KEY": "wandb-secret-42", "RAY_JOB_CONFIG_JSON_ENV_VAR": job_config})
    assert "wandb-secret-42" not in env["RAY_JOB_CONFIG_JSON_ENV_VAR"]
    assert REDACTED in env["RAY_JOB_CONFIG_JSON_ENV_VAR"]
    assert '"X": "1"' in env["RAY_JOB_CONFIG_JSON_ENV_VAR"]


def test_short_secret_values_do_not_blank_unrelated_text():
    env = redact_env({"API_KEY": "1", "OMP_NUM_THREADS": "16"})
    assert env["OMP_NUM_THREADS"] == "16"


SECRET_NAMES = [
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "GITHUB_TOKEN",
    "auth_token",
    "WANDB_API_KEY",
    "API_KEY",
    "OPENAI_APIKEY",
    "KEY",
    "KEY_FILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "aws_secret",
    "SSH_PRIVATE_KEY",
    "DB_PASSWORD",
    "PGPASSWORD",
    "PASSPHRASE",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AUTHORIZATION",
    "NCCL_IB_AUTH",
    "GH_OAUTH",
    "SESSION_COOKIE",
    "trainer.wandb_api_key",
]
# verl settings and ordinary variables that merely contain a secret-looking fragment: found redacted in the
# first real H100 results (max_num_batched_tokens=<redacted>), which hid a setting the memory model needs
SETTING_NAMES = [
    "max_num_batched_tokens",
    "actor_rollout_ref.rollout.max_num_batched_tokens",
    "ppo_max_token_len_per_gpu",
    "log_prob_max_token_len_per_gpu",
    "max_tokens",
    "max_new_tokens",
    "TOKENIZERS_PARALLELISM",
    "tokenizer",
    "num_keys",
    "AUTHOR",
    "OMP_NUM_THREADS",
    "PATH",
    "VERL_FILE_LOGGER_PATH",
    "keep_ray_tmp",
    "response_length",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names(name):
    assert is_secret(name)
    assert redact_argv([f"{name}=s3cr3t"]) == [f"{name}={REDACTED}"]


@pytest.mark.parametrize("name", SETTING_NAMES)
def test_settings_that_look_like_secrets_are_kept(name):
    assert not is_secret(name)
    assert redact_argv([f"{name}=8192"]) == [f"{name}=8192"]
    assert redact_env({name: "8192"}) == {name: "8192"}
