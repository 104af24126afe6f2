"""Validate cells against the verl that is installed: compose each cell's overrides with Hydra over the config
verl ships (`verl/trainer/config/ppo_trainer.yaml`, as `main_ppo` does), then run verl's own CPU-safe checks
(`verl.utils.config.validate_config`: batch divisibility, actor dataclass `__post_init__`/`validate`) and
build the rollout and algorithm dataclasses. A failure marks the cell invalid with verl's own message.

Speed: a full Hydra compose costs ~1 s. Cells of one matrix share their key set, so Hydra composes once per
config-group choice (e.g. `model_engine=megatron`), applies the overrides once per key-set "shape" through
Hydra's own override code (which is where unknown or removed keys fail), and then reuses that config,
overwriting only values, for every cell of the same shape. The value checks are cached on the overrides
they can depend on."""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

CONFIG_NAME = "ppo_trainer"  # main_ppo: @hydra.main(config_path="config", config_name="ppo_trainer")
# Overrides that cannot change any check below (identity and paths); left out of the value-cache keys.
_INERT_PREFIXES = (
    "trainer.project_name=",
    "trainer.experiment_name=",
    "trainer.default_local_dir=",
    "trainer.validation_data_dir=",
    "data.train_files=",
    "data.val_files=",
    "actor_rollout_ref.model.path=",
    "+ray_kwargs.",
    "++ray_kwargs.",
    "ray_kwargs.",
    "trainer.logger=",
)


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
                self._parse("+" + o) if p.type == OverrideType.ADD else p
                for o, p in zip(rest, parsed, strict=True)
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
        try:
            self._init()
            for o in overrides:
                self._parse(o)
        except Exception as exc:
            return f"hydra: {_short(exc)}"
        key = tuple(o for o in overrides if not o.startswith(_INERT_PREFIXES))
        if key in self._checks:
            return self._checks[key]
        try:
            cfg = self.compose(overrides)
        except Exception as exc:
            result = f"hydra: {' '.join(str(exc).split())}"
            self._checks[key] = result
            return result
        result = _verl_checks(cfg)
        self._checks[key] = result
        return result


def _verl_checks(cfg: Any) -> str | None:
    """verl's own run-time checks that need no GPU."""
    from omegaconf import open_dict
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    rollout = cfg.actor_rollout_ref.rollout
    name = rollout.name
    try:
        # validate_config imports vLLM only to round a LoRA rank (suite.plan.constraints checks the bound),
        # so it runs with the rollout name masked; everything else in it is plain Python.
        with open_dict(rollout):
            rollout.name = "suite-plan-check"
        # It prints progress to stdout; the plan's stdout is JSON or a table, so capture it.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    except Exception as exc:
        return f"verl validate_config: {_short(exc)}"
    finally:
        with open_dict(rollout):
            rollout.name = name
    for section in ("actor_rollout_ref.rollout", "algorithm"):
        try:
            node = cfg
            for part in section.split("."):
                node = node[part]
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                omega_conf_to_dataclass(node)
        except Exception as exc:
            return f"verl {section}: {_short(exc)}"
    return None
