"""Planner protocol, the registry of planners, and type-checked `--set key=value` overrides.

A planner module defines a `@dataclass` config whose fields carry the paper defaults and a
`Planner` subclass decorated with `@register`. Dropping a file into `benchctl/planners/` is all
it takes: the package discovers its modules.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from benchctl.agents.base import WorldModel
from benchctl.draws import Draws
from benchctl.errors import BenchctlError, did_you_mean, unknown


@dataclass
class Plan:
    """A planner's decision for one environment step.

    action: (A,) in [-1, 1]; predicted_return: the planner's own estimate of what it chose (its
    objective; None when it makes none); predicted_rewards: a discounted H-step sum of predicted
    rewards. The episode loop replaces both by `rollout.predict_plan` of `sequence` where a planner
    gives one, so every planner's model-exploitation data (spec/planners.md section 10) is the
    model's prediction for the plan it executes; info: planner-specific scalars; distribution:
    (mean (A,), std (A,)) of the action distribution the planner settled on, for planners that keep
    one (MPPI: BMPC's imitation target); sequence: the open-loop plan (H, A) whose first action is
    executed.
    """

    action: torch.Tensor
    predicted_return: float | None = None
    predicted_rewards: float | None = None
    info: dict[str, float] = field(default_factory=dict)
    distribution: tuple[torch.Tensor, torch.Tensor] | None = None
    sequence: torch.Tensor | None = None  # (H, A): the open-loop plan whose first action is `action`


@dataclass
class Plans:
    """The decisions of one planner call for E episodes in lockstep (E = 1 for a single episode):
    `Plan`'s fields with the episodes as a leading axis (sequences: the episode axis second).

    actions (E, A); predicted_returns, predicted_rewards (E,) or None; info: name -> (E,);
    distribution: ((E, A), (E, A)) or None; sequences (H, E, A) or None.
    """

    actions: torch.Tensor
    predicted_returns: torch.Tensor | None = None
    predicted_rewards: torch.Tensor | None = None
    info: dict[str, torch.Tensor] = field(default_factory=dict)
    distribution: tuple[torch.Tensor, torch.Tensor] | None = None
    sequences: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.actions.shape[0]

    def episode(self, e: int) -> Plan:
        """Episode e's decision as a Plan (a NaN prediction becomes None)."""

        def number(values: torch.Tensor | None) -> float | None:
            if values is None:
                return None
            x = float(values[e])
            return None if x != x else x

        return Plan(
            action=self.actions[e],
            predicted_return=number(self.predicted_returns),
            predicted_rewards=number(self.predicted_rewards),
            info={key: float(values[e]) for key, values in self.info.items()},
            distribution=None if self.distribution is None else (self.distribution[0][e], self.distribution[1][e]),
            sequence=None if self.sequences is None else self.sequences[:, e],
        )


class Planner(ABC):
    """Chooses actions in latent space. State kept across steps (warm starts) is cleared by `reset()`.

    A planner implements `plan_episodes`: one call plans for E episodes in lockstep, with the
    episodes as a batch dimension (never a Python loop) and every random draw taken from each
    episode's own generator (`benchctl.draws`), so an episode plans the same alone or in a batch.
    Its warm starts then hold E episodes; `reset()` clears them.
    """

    name: ClassVar[str]
    paper: ClassVar[str]
    Config: ClassVar[type]
    uses_gradients: ClassVar[bool] = False
    counted_info: ClassVar[tuple[str, ...]] = ()  # Plan.info keys the episode record sums (`info_counts`)
    reports_distribution: ClassVar[bool] = False  # fills Plan.distribution (what BMPC imitates)

    def __init__(self, model: WorldModel, config: Any):
        self.model = model
        self.config = config

    def reset(self) -> None:  # noqa: B027 - planners without cross-step state keep this no-op
        """Episode start: forget warm starts."""

    def keep_episodes(self, keep: torch.Tensor) -> None:  # noqa: B027 - as reset
        """Some lockstep episodes ended: the next call plans only for episodes `keep` (indices into
        the last call's E, ascending), so the others' warm starts are dropped."""

    @abstractmethod
    def plan_episodes(self, z: torch.Tensor, generator: Draws) -> Plans:
        """z: (E, Z), the current latent of each episode; `generator`: a torch.Generator (E = 1) or
        EpisodeGenerators (one per episode). All randomness comes from it."""

    def plan(self, z: torch.Tensor, generator: Draws) -> Plan:
        """One episode's decision: z (1, Z), the encoded current observation."""
        return self.plan_episodes(z, generator).episode(0)

    @classmethod
    def model_evals_per_step(cls, config: Any, action_dim: int) -> int:
        """World-model evaluations (candidate x horizon step) per planning step at this config."""
        return 0

    @classmethod
    def effective_settings(cls, config: Any, family: str, action_dim: int) -> dict[str, Any]:
        """What the planner actually runs where its config leaves it to the agent (an automatic
        default, a rule on the action size); recorded in every results header."""
        return {}


_REGISTRY: dict[str, type[Planner]] = {}


def register(cls: type[Planner]) -> type[Planner]:
    _REGISTRY[cls.name] = cls
    return cls


def registry() -> dict[str, type[Planner]]:
    """Every planner, by name. Imports each module of this package once."""
    if not _REGISTRY or not getattr(registry, "_loaded", False):
        import benchctl.planners as package

        for module in pkgutil.iter_modules(package.__path__):
            if module.name != "base":
                importlib.import_module(f"benchctl.planners.{module.name}")
        registry._loaded = True  # type: ignore[attr-defined]
    return dict(sorted(_REGISTRY.items()))


def planner_class(name: str) -> type[Planner]:
    planners = registry()
    if name not in planners:
        raise unknown("planner", name, planners)
    return planners[name]


def parse_set(items: list[str]) -> dict[str, str]:
    """['horizon=5', ...] -> {'horizon': '5'}; a malformed item is a BenchctlError."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BenchctlError(f"--set {item!r} is not key=value; write e.g. --set horizon=5")
        out[key.strip()] = value.strip()
    return out


def _coerce(planner: str, key: str, text: str, kind: Any, flag: str = "--set") -> Any:
    args = typing.get_args(kind)
    if type(None) in args:  # Optional[X]: "none" resets to the automatic default
        if text.lower() in ("none", "null", "auto"):
            return None
        kind = next(a for a in args if a is not type(None))
    if typing.get_origin(kind) is typing.Literal:
        choices = [str(c) for c in typing.get_args(kind)]
        if text not in choices:
            raise BenchctlError(f"{flag} {key}={text}: {planner}.{key} must be one of {', '.join(choices)}")
        return text
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return str(text)
    except ValueError:
        raise BenchctlError(
            f"{flag} {key}={text}: {planner}.{key} takes a {getattr(kind, '__name__', kind)}, e.g. "
            f"{flag} {key}={'true' if kind is bool else 1}"
        ) from None


def resolve_config(name: str, overrides: dict[str, str], flag: str = "--set") -> Any:
    """The planner's config dataclass with paper defaults, then `overrides` applied and type-checked.

    `flag` names the option the overrides came from in error messages (--set, --grid).
    """
    cls = planner_class(name)
    hints = typing.get_type_hints(cls.Config, include_extras=False)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    values = {}
    for key, text in overrides.items():
        if key not in fields:
            raise BenchctlError(
                f"{flag} {key}: {name} has no option {key!r}{did_you_mean(key, fields)}; "
                f"its options: {', '.join(sorted(fields))}"
            )
        values[key] = _coerce(name, key, text, hints[key], flag)
    config = cls.Config(**values)
    for f in dataclasses.fields(config):
        problem = range_problem(f.name, getattr(config, f.name), f.metadata)
        if problem:
            raise BenchctlError(f"{flag} {f.name}={getattr(config, f.name)}: {name}.{problem}")
    check = getattr(config, "validate", None)
    if check is not None:
        problem = check()
        if problem:
            raise BenchctlError(f"{name}: {problem}")
    return config


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def make_planner(name: str, model: WorldModel, config: Any) -> Planner:
    return planner_class(name)(model, config)


def field_docs(config_cls: type) -> dict[str, str]:
    """Each config field's doc (the `doc` metadata: what it is and which equation/table it comes from)."""
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(config_cls)}


# Largest integer any planner option takes: beyond it a planning step allocates more than any machine has.
MAX_INT_OPTION = 1_000_000


def option(
    default: Any,
    doc: str,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
) -> Any:
    """A config field with its default, a one-line provenance doc, and its valid range.

    Unless a bound is given, an int option must be >= 1 and a float option > 0 (counts and
    step sizes); every float must be finite.
    """
    bounds = {"at_least": at_least, "above": above, "at_most": at_most}
    return field(default=default, metadata={"doc": doc, **{k: v for k, v in bounds.items() if v is not None}})


def range_problem(key: str, value: Any, meta: Any) -> str | None:
    """Why `value` is outside the range `option()` declared for `key`, or None."""
    if value is None or isinstance(value, (bool, str)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{key} must be a finite number, not {value}"
    at_least, above, at_most = meta.get("at_least"), meta.get("above"), meta.get("at_most")
    if at_least is None and above is None:
        at_least, above = (1, None) if isinstance(value, int) else (None, 0.0)
    if isinstance(value, int) and at_most is None:
        at_most = MAX_INT_OPTION
    if at_least is not None and value < at_least:
        return f"{key} must be >= {_number(at_least)}, not {value}"
    if above is not None and value <= above:
        return f"{key} must be > {_number(above)}, not {value}"
    if at_most is not None and value > at_most:
        return f"{key} must be <= {_number(at_most)}, not {value}"
    return None


def _number(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"
