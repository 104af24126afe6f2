"""Validate cells against the verl that is installed: compose each cell's overrides with Hydra over the config
verl ships (`verl/trainer/config/ppo_trainer.yaml`, as `main_ppo` does), then run verl's own CPU-safe checks
(`verl.utils.config.validate_config`: batch divisibility, actor dataclass `__post_init__`/`validate`) and
build the rollout and algorithm dataclasses. A failure marks the cell invalid with verl's own message.

Speed: a full Hydra compose costs ~1 s. Cells of one matrix share their key set, so Hydra composes once per
config-group choice (e.g. `model_engine=megatron`), applies the overrides once per key-set "shape" through
Hydra's own override code (which is where unknown or removed keys fail), and then reuses that config,
overwriting only values, for every cell of the same shape. The value checks are cached on the overrides
they can depend on.

verl, Hydra and OmegaConf are imported inside the functions that use them: they take seconds to load, and a plan
with `--no-verl-check` (or a host without verl) never needs them."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from suite.plan.hydra import NOT_STRING

CONFIG_NAME = "ppo_trainer"  # main_ppo: @hydra.main(config_path="config", config_name="ppo_trainer")
_A = "actor_rollout_ref."
# Keys no value check reads (identity, paths, logging, Ray): left out of every value-cache key.
_INERT = (
    "trainer.project_name",
    "trainer.experiment_name",
    "trainer.default_local_dir",
    "trainer.validation_data_dir",
    "trainer.logger",
    "trainer.total_training_steps",
    "trainer.total_epochs",
    "trainer.save_freq",
    "trainer.test_freq",
    "trainer.val_before_train",
    "trainer.resume_mode",
    "data.train_files",
    "data.val_files",
    "data.val_max_samples",
    "data.seed",
    "data.dataloader_num_workers",
    "ray_kwargs",
    "reward.num_workers",
    f"{_A}model.path",
    f"{_A}model.lora_rank",
    f"{_A}model.lora_alpha",
    f"{_A}model.target_modules",
    f"{_A}model.lora",
    f"{_A}model.override_config",
    f"{_A}model.enable_gradient_checkpointing",
)
# Rollout-engine keys that validate_config and the algorithm config do not read (RolloutConfig does).
_ROLLOUT_ONLY = tuple(
    f"{_A}rollout.{k}"
    for k in (
        "tensor_model_parallel_size",
        "gpu_memory_utilization",
        "enforce_eager",
        "ignore_eos",
        "layered_summon",
        "load_format",
        "max_num_batched_tokens",
        "max_model_len",
        "max_num_seqs",
        "agent",
        "mode",
        "name",
    )
)
# Trainer-side keys that RolloutConfig does not read (validate_config does).
_TRAINER_ONLY = (
    f"{_A}actor.",
    f"{_A}ref.",
    "data.train_batch_size",
    "algorithm.",
    "trainer.critic_warmup",
    f"{_A}rollout.log_prob_",
    f"{_A}rollout.val_kwargs",
)


def _key(text: str) -> str:
    return text.split("=", 1)[0].lstrip("+~")


def _matches(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p if p.endswith((".", "_")) else p + ".") for p in prefixes)


_PLAIN = re.compile(r'^[^=]+=(?:"[^"\\$]*"|[A-Za-z_/.][A-Za-z0-9_./:@-]*)$')


_PLACEHOLDER = "suite_placeholder"


def _placeholder(text: str) -> str:
    """A per-cell value of an inert key (a path, a name) as one fixed string, so Hydra parses each such key
    once instead of once per cell. Only plain strings qualify: anything Hydra could read differently (escapes,
    interpolations, lists) is parsed as written."""
    key = _key(text)
    value = text.split("=", 1)[1]
    if _matches(key, _INERT) and _PLAIN.match(text) and not NOT_STRING.match(value):
        return text.split("=", 1)[0] + "=" + _PLACEHOLDER
    return text


def value_keys(overrides: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Cache keys of the two value checks: (validate_config + algorithm, RolloutConfig). Any override not
    known to be irrelevant to a check (raw [overrides] included) is part of its key."""
    live = [o for o in overrides if not _matches(_key(o), _INERT)]
    trainer = tuple(o for o in live if not _matches(_key(o), _ROLLOUT_ONLY))
    rollout = tuple(o for o in live if not _matches(_key(o), _TRAINER_ONLY))
    return trainer, rollout


def verl_config_dir() -> str:
    import verl

    return os.path.join(os.path.dirname(verl.__file__), "trainer", "config")


def _short(exc: BaseException) -> str:
    msg = str(exc).strip() or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in msg:
        msg = f"{msg}: {cause}"
    return f"{type(exc).__name__}: {' '.join(msg.split())}"


@dataclass
class VerlValidator:
    """Reusable across matrices; holds the Hydra context and the caches."""

    config_dir: str = field(default_factory=verl_config_dir)
    _bases: dict[tuple[str, ...], Any] = field(default_factory=dict)
    _shapes: dict[tuple, tuple[Any, str | None]] = field(default_factory=dict)
    _parsed: dict[str, Any] = field(default_factory=dict)
    _checks: dict[tuple[str, ...], str | None] = field(default_factory=dict)
    _types: dict[tuple[tuple[str, ...], str], str | None] = field(default_factory=dict)
    _groups: frozenset[str] | None = None
    _parser: Any = None

    # -- Hydra ---------------------------------------------------------------------------------------------
    def _init(self) -> None:
        if self._parser is not None:
            return
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self._parser = OverridesParser.create()
        self._groups = frozenset(
            d for d in os.listdir(self.config_dir) if os.path.isdir(os.path.join(self.config_dir, d))
        )

    def _base(self, group_overrides: tuple[str, ...]) -> Any:
        if group_overrides not in self._bases:
            from hydra import compose, initialize_config_dir
            from hydra.core.global_hydra import GlobalHydra

            GlobalHydra.instance().clear()
            with initialize_config_dir(config_dir=self.config_dir, version_base=None):
                self._bases[group_overrides] = compose(CONFIG_NAME, overrides=list(group_overrides))
        return self._bases[group_overrides]

    def _parse(self, text: str) -> Any:
        if text not in self._parsed:
            self._parsed[text] = self._parser.parse_override(text)
        return self._parsed[text]

    def _is_group(self, text: str) -> bool:
        key = text.split("=", 1)[0].lstrip("+~")
        return "." not in key and "@" not in key and key in (self._groups or ())

    # -- public ------------------------------------------------------------------------------------------
    def compose(self, overrides: Sequence[str]) -> Any:
        """The config verl's main_ppo would receive for these overrides (raises verl/Hydra's error)."""
        self._init()
        from hydra._internal.config_loader_impl import ConfigLoaderImpl
        from hydra.core.override_parser.types import OverrideType

        groups = tuple(o for o in overrides if self._is_group(o))
        rest = [o for o in overrides if not self._is_group(o)]
        parsed = [self._parse(o) for o in rest]
        shape = (groups, tuple((p.type, p.key_or_group, p.package, type(p.value()).__name__) for p in parsed))
        if shape not in self._shapes:
            base = self._base(groups)
            cfg = copy.deepcopy(base)
            try:
                ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
                self._shapes[shape] = (cfg, None)
            except Exception as exc:
                self._shapes[shape] = (None, _short(exc))
            return self._result(shape)
        cfg, err = self._shapes[shape]
        if err is None:
            if any(p.type == OverrideType.DEL for p in parsed):
                cfg = copy.deepcopy(self._base(groups))
                ConfigLoaderImpl._apply_overrides_to_config(parsed, cfg)
                return cfg
            # Same keys as the template: overwrite values in place ('+' adds become '++' so they overwrite).
            again = [
                self._parse("+" + o) if p.type == OverrideType.ADD else p for o, p in zip(rest, parsed, strict=True)
            ]
            ConfigLoaderImpl._apply_overrides_to_config(again, cfg)
        return self._result(shape)

    def _result(self, shape: tuple) -> Any:
        cfg, err = self._shapes[shape]
        if err is not None:
            raise ValueError(err)
        return cfg

    def check(self, overrides: Sequence[str]) -> str | None:
        """None when verl accepts the overrides, else verl's (or Hydra's) message."""
        overrides = [_placeholder(o) for o in overrides]
        try:
            self._init()
            for o in overrides:
                self._parse(o)
        except Exception as exc:
            return f"hydra: {_short(exc)}"
        groups = tuple(o for o in overrides if self._is_group(o))
        for o in overrides:
            if (groups, o) not in self._types:
                self._types[(groups, o)] = self._type_check(groups, o)
            if self._types[(groups, o)]:
                return self._types[(groups, o)]
        cfg = None
        for name, key, run in zip(
            ("trainer", "rollout"), value_keys(overrides), (_trainer_checks, _rollout_checks), strict=True
        ):
            full = (name, *key)
            if full not in self._checks:
                if cfg is None:
                    try:
                        cfg = self.compose(overrides)
                    except Exception as exc:
                        return f"hydra: {' '.join(str(exc).split())}"
                self._checks[full] = run(cfg)
            if self._checks[full]:
                return self._checks[full]
        if cfg is None:
            # Every value check was cached; the key set still has to compose (a cached shape answers at once).
            try:
                self.compose_shape_only(overrides)
            except Exception as exc:
                return f"hydra: {' '.join(str(exc).split())}"
        return None

    def _type_check(self, groups: tuple[str, ...], text: str) -> str | None:
        """verl's YAML is untyped, so Hydra accepts `lr=abc`; compare with the type of verl's default instead
        (bool stays bool, a number stays a number). Keys without a typed default pass."""
        if self._is_group(text) or text.endswith("=" + _PLACEHOLDER):
            return None
        from omegaconf import OmegaConf

        p = self._parse(text)
        base = self._base(groups)
        key = p.key_or_group
        try:
            node = OmegaConf.select(base, key, throw_on_missing=False)
        except Exception:
            return None
        if node is None or isinstance(node, str) or OmegaConf.is_config(node) or p.is_delete():
            return None
        v = p.value()
        ok = (
            isinstance(v, bool)
            if isinstance(node, bool)
            # A YAML int default may back a float field (entropy_coeff: 0), so numbers take either.
            else (isinstance(v, int | float) and not isinstance(v, bool))
            if isinstance(node, int | float)
            else True
        )
        if ok:
            return None
        return f"type: {key}={v!r} ({type(v).__name__}) where verl's default is {node!r} ({type(node).__name__})"

    def compose_shape_only(self, overrides: Sequence[str]) -> None:
        """Raise Hydra's error when this key set does not compose; no config is built for a known shape."""
        groups = tuple(o for o in overrides if self._is_group(o))
        parsed = [self._parse(o) for o in overrides if not self._is_group(o)]
        shape = (groups, tuple((p.type, p.key_or_group, p.package, type(p.value()).__name__) for p in parsed))
        if shape in self._shapes:
            self._result(shape)
        else:
            self.compose(overrides)


def _quiet():
    """verl prints progress and warnings while checking; the plan's stdout is JSON or a table."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _trainer_checks(cfg: Any) -> str | None:
    """verl's `validate_config` (batch divisibility, actor dataclass and its `validate`) + AlgoConfig."""
    from omegaconf import open_dict
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    rollout = cfg.actor_rollout_ref.rollout
    name = rollout.name
    try:
        # validate_config imports vLLM only to round a LoRA rank up (suite.plan.constraints checks the bound),
        # so it runs with the rollout name masked; the rest of it is plain Python.
        with open_dict(rollout):
            rollout.name = "suite-plan-check"
        with _quiet():
            validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    except Exception as exc:
        return f"verl validate_config: {_short(exc)}"
    finally:
        with open_dict(rollout):
            rollout.name = name
    try:
        with _quiet():
            omega_conf_to_dataclass(cfg.algorithm)
    except Exception as exc:
        return f"verl algorithm: {_short(exc)}"
    return None


def _rollout_checks(cfg: Any) -> str | None:
    """verl's RolloutConfig dataclass (types and its `__post_init__` checks)."""
    from omegaconf import OmegaConf
    from verl.utils.config import omega_conf_to_dataclass
    from verl.workers.config import RolloutConfig

    node = cfg.actor_rollout_ref.rollout
    try:
        with _quiet():
            omega_conf_to_dataclass(node)
            # instantiate() does not check field types; a merge into the structured dataclass does.
            plain = OmegaConf.to_container(node, resolve=True)
            plain.pop("_target_", None)
            omega_conf_to_dataclass(plain, RolloutConfig)
    except Exception as exc:
        return f"verl rollout: {_short(exc)}"
    return None
