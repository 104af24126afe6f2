"""Secret values never survive in a result's environment, whatever variable carries them."""

from suite.results.provenance import REDACTED, redact_env


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
