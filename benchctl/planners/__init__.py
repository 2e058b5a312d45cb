"""Test-time planners. One module per planner; see `base.py` for the protocol and registry."""

from benchctl.planners.base import (
    Plan,
    Planner,
    config_dict,
    make_planner,
    parse_set,
    planner_class,
    registry,
    resolve_config,
)

__all__ = ["Plan", "Planner", "config_dict", "make_planner", "parse_set", "planner_class", "registry", "resolve_config"]
