"""Configuration: frozen, validated dataclasses loaded from YAML. Never imports torch."""

from dualsweep.config.fields import ConfigError, field_docs, to_plain
from dualsweep.config.fields import build as build_section
from dualsweep.config.loading import (
    apply_overrides,
    load_run_config,
    load_sweep,
    parse_override,
    read_yaml,
    run_config_from_dict,
    sweep_yaml,
)
from dualsweep.config.run import (
    SECTIONS,
    DataConfig,
    EvalConfig,
    HeldOutConfig,
    ModelConfig,
    ObjectiveConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    flat_fields,
    run_hparams,
    run_key,
    run_label,
    section_of,
    strategy_name,
)
from dualsweep.config.sweep import Point, Resources, SearchConfig, SweepConfig

__all__ = [
    "SECTIONS",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "HeldOutConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "Point",
    "Resources",
    "RunConfig",
    "SearchConfig",
    "SweepConfig",
    "TrainConfig",
    "apply_overrides",
    "build_section",
    "field_docs",
    "flat_fields",
    "load_run_config",
    "load_sweep",
    "parse_override",
    "read_yaml",
    "run_config_from_dict",
    "run_hparams",
    "run_key",
    "run_label",
    "section_of",
    "strategy_name",
    "to_plain",
    "sweep_yaml",
]
