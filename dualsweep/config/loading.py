"""Reading configs from YAML files and command-line overrides.

`--config` accepts a run config (sections model, data, objective, optim, train, held_out,
evaluation) or a sweep file (a `base` run config plus points); overrides are applied to the
raw mapping before validation, so they are checked exactly like the file itself. A mapping
written before a field moved section (`MOVED_FIELDS`: run folders' config.yaml, older sweep
files) is read into the current layout first (`upgrade_layout`).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml

from dualsweep.config.fields import ConfigError, build, fail, join
from dualsweep.config.run import MOVED_FIELDS, SECTIONS, RunConfig, section_of
from dualsweep.config.sweep import SweepConfig, is_sweep_mapping, sweep_from_dict


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last
    silently: `alpha: 0.5` then `alpha: 1` would train at 1 with no word)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506
    except yaml.MarkedYAMLError as e:  # one line: what is wrong, and where
        where = f", line {e.problem_mark.line + 1}" if e.problem_mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {e.problem or e.context}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if raw is None:  # empty or comments only: refused rather than read as "all defaults"
        raise ConfigError(
            f"{path}: the file is empty (or only comments); a run config needs sections "
            f"({', '.join(SECTIONS)}), a sweep file a base and points"
        )
    return raw


def run_config_from_dict(raw: Any) -> RunConfig:
    if not isinstance(raw, dict):
        fail("config", raw, "expected a mapping with sections " + ", ".join(SECTIONS))
    raw = upgrade_layout(raw)
    import_plugins(raw)
    return build(RunConfig, raw)


def import_plugins(raw: Any, path: str = "") -> None:
    """Import the modules a raw run config's `train.plugins` names, before it is checked:
    they register the objectives, data sources and tasks it may name. Every process that
    builds the config does this (a sweep's trials rebuild theirs from the base mapping), so
    a module importable everywhere (installed, or on PYTHONPATH) is all a sweep needs."""
    train = raw.get("train") if isinstance(raw, dict) else None
    plugins = train.get("plugins") if isinstance(train, dict) else None
    where = join(path, "train.plugins")
    if plugins is None:
        return
    if not isinstance(plugins, (list, tuple)):
        fail(where, plugins, "expected a list of module names")
    for i, name in enumerate(plugins):
        if not isinstance(name, str) or not name.strip():
            fail(f"{where}[{i}]", name, "expected a module name, e.g. mypackage.objectives")
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - a plugin's own error, said in one line
            raise ConfigError(
                f"{where}[{i}]: cannot import {name!r} ({type(e).__name__}: {e}); it must be "
                "importable in every process that reads the config (installed, or on PYTHONPATH)"
            ) from None


def upgrade_layout(raw: Any, path: str = "") -> Any:
    """A raw run config mapping with every moved field found in its old section (e.g.
    `data.validation_sequences`, before the held_out section) moved to its section now.
    Setting a field in both places is an error naming both. Anything else is left as is
    (and reported by `build`); the input is not modified."""
    if not isinstance(raw, dict) or not any(
        isinstance(raw.get(old), dict) and name in raw[old] for old, name in MOVED_FIELDS
    ):
        return raw
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for (old, name), section in MOVED_FIELDS.items():
        if not (isinstance(out.get(old), dict) and name in out[old]):
            continue
        value = out[old].pop(name)
        current = out.get(section)
        if current is None:
            current = out[section] = {}
        if not isinstance(current, dict):
            fail(join(path, section), current, "expected a mapping of field: value")
        if name in current:
            raise ConfigError(
                f"{join(path, f'{section}.{name}')}: also set as {join(path, f'{old}.{name}')} "
                f"(its place before the {section} section; got {current[name]!r} and "
                f"{value!r}); keep only {section}.{name}"
            )
        current[name] = value
    return out


def _base_mapping(raw: dict, source: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The base run config of a sweep mapping: inline, or a path relative to the sweep file
    (a run config, or another sweep file whose base is taken), then its `base_overrides`.

    A companion sweep (seeds, a variant) names its parent sweep file, so the two share one
    base config instead of two copies that can drift apart.
    """
    base = raw["base"]
    if isinstance(base, str):
        base_path = (source.parent / base).resolve()
        if not base_path.is_file():
            fail("base", base, f"base config file not found ({base_path})")
        if base_path in _seen or base_path == source.resolve():
            fail("base", base, "sweep files name each other as base (a cycle)")
        base = read_yaml(base_path)
        if is_sweep_mapping(base):
            base = _base_mapping(base, base_path, (*_seen, source.resolve()))
    if not isinstance(base, dict):
        fail("base", base, "must be a run config mapping or a path to one")
    base = upgrade_layout(base, "base")  # before the overrides, which use the new layout
    overrides = raw.get("base_overrides") or {}
    if not isinstance(overrides, dict):
        fail("base_overrides", overrides, "must map field names to values")
    return apply_overrides(base, overrides)


def load_sweep(path: str | Path) -> SweepConfig:
    """Load and fully validate a sweep file (every trial's config is built)."""
    path = Path(path)
    raw = read_yaml(path)
    if not is_sweep_mapping(raw):
        raise ConfigError(f"{path}: not a sweep file (no `base` run config)")
    base_mapping = _base_mapping(raw, path)
    import_plugins(base_mapping, "base")
    base = build(RunConfig, base_mapping, "base")
    return sweep_from_dict(raw, base)


def sweep_yaml(sweep: SweepConfig, *, header: str = "", notes: dict | None = None) -> str:
    """A sweep file that loads back to `sweep`: the base config in full (so the file stands
    alone wherever it is written), every point listed, `notes` (Point -> text) as comments
    on their point's line; of the search section, the required fields and those set to
    something other than their default."""
    import dataclasses

    from dualsweep.config.fields import to_plain

    def block(mapping: dict) -> str:
        return yaml.safe_dump(mapping, sort_keys=False, default_flow_style=False, width=100)

    notes = notes or {}
    lines = [f"# {line}".rstrip() for line in header.strip().splitlines()] if header else []
    head = {"name": sweep.name}
    if sweep.description:
        head["description"] = sweep.description.strip()
    lines.append(block(head).rstrip())
    lines.append(block({"base": to_plain(sweep.base)}).rstrip())
    lines.append("points:")
    for point in sweep.points:
        note = f"  # {notes[point]}" if point in notes else ""
        lines.append(f"  - {{alpha: {point.alpha!r}, repetitions: {point.repetitions}}}{note}")
    rest = {
        "seeds": list(sweep.seeds),
        "resources": dataclasses.asdict(sweep.resources),
        "max_concurrent_trials": sweep.max_concurrent_trials,
        "retries": sweep.retries,
    }
    if sweep.search:
        # Fields at their default are left out, so that a field added later does not appear
        # in every file written from a sweep that never set it.
        rest["search"] = {
            f.name: to_plain(getattr(sweep.search, f.name))
            for f in dataclasses.fields(sweep.search)
            if f.default is dataclasses.MISSING or getattr(sweep.search, f.name) != f.default
        }
    lines.append(block(rest).rstrip())
    return "\n".join(lines) + "\n"


def load_run_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """A run config from a run-config file or a sweep file's base, with overrides applied."""
    path = Path(path)
    raw = read_yaml(path)
    if is_sweep_mapping(raw):
        load_sweep(path)  # the whole file must be valid, not just the part we use
        raw = _base_mapping(raw, path)
    raw = apply_overrides(upgrade_layout(raw), overrides or {})
    return run_config_from_dict(raw)


def apply_overrides(raw: Any, overrides: dict[str, Any]) -> Any:
    """Set `section.field` or plain `field` keys (names are unique) in a raw config mapping;
    a moved field's old `section.field` sets it in its section now."""
    if not overrides:
        return raw
    if not isinstance(raw, dict):
        fail("config", raw, "expected a mapping")
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        if not section:
            section = section_of(name)
        section = MOVED_FIELDS.get((section, name), section)
        if section not in SECTIONS:
            raise ConfigError(f"{key}: unknown section {section!r} (known: {', '.join(SECTIONS)})")
        current = out.setdefault(section, {})
        if not isinstance(current, dict):
            fail(section, current, "expected a mapping")
        current[name] = value
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is read as YAML (numbers, lists, booleans)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set: expected key=value (got {text!r})")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed
