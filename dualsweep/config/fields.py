"""Typed construction of frozen config dataclasses from plain YAML data.

Everything a user can get wrong in a config file is caught here, before any work starts,
and reported as one `ConfigError` whose message names the field (as a dotted path) and
the offending value. No torch here: this module sits at the bottom of the layer stack.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Literal, get_args, get_origin


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the field and value."""


def fail(path: str, value: Any, why: str) -> typing.NoReturn:
    raise ConfigError(f"{path}: {why} (got {value!r})")


def unknown_key(path: str, value: Any, known, what: str = "field") -> typing.NoReturn:
    """Fail on an unknown key, suggesting the closest known one."""
    key = path.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
    fail(path, value, f"unknown {what}{hint}")


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def parse_float(value: Any, path: str) -> float:
    """Numbers, numeric strings ('2e-3', which YAML leaves as a string) and fractions ('63/64')."""
    if isinstance(value, bool):
        fail(path, value, "expected a number, not a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            pass
    fail(path, value, "expected a number (e.g. 0.5, 2e-3 or 63/64)")


def coerce(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against the annotation `tp` and convert it; raise ConfigError if it does not fit."""
    origin = get_origin(tp)
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, int) and not isinstance(value, bool) and str(value) in choices:
            value = str(value)  # `precision: 32` in YAML is the integer 32
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            fail(path, value, f"must be one of {', '.join(repr(c) for c in choices)}")
        return value
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if value is None and len(options) < len(get_args(tp)):
            return None
        errors = []
        for option in options:
            try:
                return coerce(value, option, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            fail(path, value, "expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            fail(path, value, f"expected a list of {len(args)} values")
        return tuple(
            coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if tp is bool:
        if not isinstance(value, bool):
            fail(path, value, "expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool):
            fail(path, value, "expected an integer, not a boolean")
        if isinstance(value, float) and value.is_integer():
            return int(value)  # 1e9 written as 1.0e9 in YAML
        if isinstance(value, str):
            try:
                as_float = float(value.replace("_", ""))
            except ValueError:
                fail(path, value, "expected an integer")
            if as_float.is_integer():
                return int(as_float)
        if not isinstance(value, int):
            fail(path, value, "expected an integer")
        return value
    if tp is float:
        return parse_float(value, path)
    if tp is str:
        if not isinstance(value, str):
            fail(path, value, "expected a string")
        return value
    if _is_dataclass_type(tp):
        return build(tp, value, path)
    raise TypeError(f"{path}: unsupported annotation {tp!r}")  # a bug in a config class


def build(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and bad types raise ConfigError."""
    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        fail(path or cls.__name__, data, "expected a mapping of field: value")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            unknown_key(join(path, key), data[key], fields)
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = coerce(data[name], hints[name], join(path, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{join(path, name)}: required field is missing")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        # Sections validate themselves with field names relative to the section.
        raise ConfigError(f"{path}.{e}" if path else str(e)) from None


def join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def to_plain(obj: Any) -> Any:
    """Dataclasses to nested dicts and tuples to lists: what YAML and JSON can hold."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def field_docs(cls: type) -> dict[str, str]:
    """The one-line docstring written under each field of a config class."""
    import ast
    import inspect
    import itertools
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for stmt, after in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


# -- Rules declared in field metadata ------------------------------------------------------
# A config field states its own range on its line, e.g.
#     lr: float = field(default=2e-3, metadata=POSITIVE)
#     task_seed: int = field(default=0, metadata=SEED | NOT_IDENTITY)
# and `Checked.__post_init__` checks every field against its rules, in field order, before
# a class's own checks across fields. A failed rule reads `name: why (got value)`.


@dataclasses.dataclass(frozen=True)
class Bound:
    """A number in a range (open or closed at either end); for a tuple, each of its numbers."""

    low: float | None
    high: float | None
    low_open: bool
    high_open: bool
    integer: bool
    why: str

    def holds(self, value: Any) -> bool:
        if self.integer and not isinstance(value, int):
            return False
        return all(self._inside(v) for v in (value if isinstance(value, tuple) else (value,)))

    def _inside(self, v: Any) -> bool:
        above = self.low is None or (self.low < v if self.low_open else self.low <= v)
        below = self.high is None or (v < self.high if self.high_open else v <= self.high)
        return above and below


@dataclasses.dataclass(frozen=True)
class Unique:
    """A tuple without repeats."""

    why: str

    def holds(self, value: Any) -> bool:
        return len(set(value)) == len(value)


@dataclasses.dataclass(frozen=True)
class NonEmpty:
    """A tuple (or string) with at least one item."""

    why: str

    def holds(self, value: Any) -> bool:
        return len(value) > 0


@dataclasses.dataclass(frozen=True)
class Each:
    """Every item of a tuple meets `rule`. A failure names the first item that does not
    (`seeds[1]: ... (got 4294967296)`), where a `Bound` on the tuple names the whole tuple."""

    rule: Any

    @property
    def why(self) -> str:
        return self.rule.why

    def holds(self, value: Any) -> bool:
        return self.first_miss(value) is None

    def first_miss(self, value: Any) -> int | None:
        return next((i for i, v in enumerate(value) if not self.rule.holds(v)), None)


@dataclasses.dataclass(frozen=True)
class Satisfies:
    """What no range states, said by a test of the value: a choice among names a `Literal`
    cannot hold, a name's characters."""

    test: Callable[[Any], bool]
    why: str

    def holds(self, value: Any) -> bool:
        return bool(self.test(value))


class Rules(dict):
    """Field metadata; `|` merges two, keeping the rules of both (`NOT_IDENTITY | SEED`)."""

    def __or__(self, other: Any) -> Rules:
        checks = (*self.get("checks", ()), *other.get("checks", ()))
        return Rules({**self, **other, "checks": checks})

    def __ror__(self, other: Any) -> Rules:
        return Rules(other) | self


def bound(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    why: str = "",
) -> Rules:
    """Metadata: the value (each value of a tuple) lies between `low` and `high`; `integer`
    also refuses non-integers. `why` defaults to the range in words ('must be in [0, 1)')."""
    rule = Bound(
        low, high, low_open, high_open, integer, why or _in_words(low, high, low_open, high_open)
    )
    return Rules(checks=(rule,))


def _in_words(low: Any, high: Any, low_open: bool, high_open: bool) -> str:
    if high is None:
        return f"must be {'>' if low_open else '>='} {low}"
    if low is None:
        return f"must be {'<' if high_open else '<='} {high}"
    if low_open and high_open:
        return f"must be strictly between {low} and {high}"
    return f"must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def unique(item: str) -> Rules:
    """Metadata: a tuple that holds no `item` twice ('a mode', 'an objective')."""
    return Rules(checks=(Unique(f"lists {item} twice"),))


def non_empty(item: str) -> Rules:
    """Metadata: a tuple that holds at least one `item` ('R', 'seed')."""
    return Rules(checks=(NonEmpty(f"must list at least one {item}"),))


def each(rules: Rules) -> Rules:
    """Metadata: every item of a tuple meets `rules` (e.g. `each(SEED)`), a failure naming
    the item by its index."""
    return Rules(checks=tuple(Each(rule) for rule in rules["checks"]))


def satisfies(test: Callable[[Any], bool], why: str) -> Rules:
    """Metadata: `test(value)` is true; `why` says what it asks ('must be ...')."""
    return Rules(checks=(Satisfies(test, why),))


def one_of(*choices: str) -> Rules:
    """Metadata: one of `choices`, also when built in Python (which a `Literal` annotation
    does not check)."""
    return satisfies(choices.__contains__, f"must be one of {', '.join(choices)}")


POSITIVE = bound(0, low_open=True, why="must be positive")
COUNT = bound(1, why="must be positive")  # an integer >= 1 (refusing 0.5 from Python too)
NON_NEGATIVE = bound(0)
UNIT_INTERVAL = bound(0, 1)
OPEN_UNIT_INTERVAL = bound(0, 1, low_open=True, high_open=True)
BELOW_ONE = bound(0, 1, high_open=True)  # [0, 1): momenta and betas
SEED = bound(0, 2**32, high_open=True, why="must be in [0, 2^32)")
POSITIVE_INTEGER = bound(1, integer=True, why="must be a positive integer")


def check(ok: bool, name: str, value: Any, why: str) -> None:
    """One explicit check: fail with `name: why (got value)` unless `ok`."""
    if not ok:
        fail(name, value, why)


def check_fields(obj: Any) -> None:
    """Check each field of dataclass instance `obj` against the rules in its metadata."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        for rule in f.metadata.get("checks", ()):
            if isinstance(rule, Each) and (i := rule.first_miss(value)) is not None:
                fail(f"{f.name}[{i}]", value[i], rule.why)
            check(rule.holds(value), f.name, value, rule.why)


class Checked:
    """Base of the config dataclasses: after `__init__`, every field meets its rules.
    A class with checks across fields overrides `__post_init__`, calling this one first."""

    def __post_init__(self) -> None:
        check_fields(self)
