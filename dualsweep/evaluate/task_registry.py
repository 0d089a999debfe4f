"""The registry of multiple-choice tasks built from held-out documents: one entry per task.

An entry names a task (its name in `evaluation.tasks` and in the evals rows), builds its items
from the corpus's held-out documents (`n_items` of them, from `seed`) and describes it in one
line (the command line's help lists it). `continuation`, `word_order` and `cloze` are
registered here; `register_task` adds one more in the process that evaluates, and its name to
the torch-free `schema.TASK_NAMES` that the config checks task names against.

Torch-free, like `tasks`: the command line builds its help from this registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dualsweep import schema
from dualsweep.evaluate.tasks import (
    Task,
    TaskError,
    cloze_task,
    continuation_task,
    word_order_task,
)


@dataclass(frozen=True)
class TaskEntry:
    """One task built from held-out documents."""

    name: str
    """Its name in `evaluation.tasks` and in the evals rows' `task` column."""
    build: Callable[..., Task]
    """`build(held_out_documents, *, n_items, seed)`: the task's items, the same for every
    call with the same documents and seed."""
    description: str
    """One line saying what a model is asked (the command line's help shows it)."""


_REGISTRY: dict[str, TaskEntry] = {}


def register_task(entry: TaskEntry) -> TaskEntry:
    """Make `entry` available by its name to configs (`evaluation.tasks`) and evaluation."""
    current = _REGISTRY.get(entry.name)
    if current is not None and current != entry:
        raise ValueError(f"a task named {entry.name!r} is already registered")
    if not entry.name or entry.name.endswith(".jsonl") or "/" in entry.name:
        # A name ending in .jsonl, or a path, is read as a task file.
        raise ValueError(f"task name {entry.name!r}: must be a plain name, not a file path")
    _REGISTRY[entry.name] = entry
    if entry.name not in schema.TASK_NAMES:
        schema.TASK_NAMES.append(entry.name)
    return entry


def registered_tasks() -> tuple[TaskEntry, ...]:
    """Every registered task, in registration order (the built-in ones first)."""
    return tuple(_REGISTRY.values())


def build_task(name: str, held_out_documents: Sequence[str], *, n_items: int, seed: int) -> Task:
    """The registered task `name`, its items built from `held_out_documents`."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise TaskError(f"{name}: not a registered task ({', '.join(_REGISTRY)}) nor a .jsonl file")
    task = entry.build(held_out_documents, n_items=n_items, seed=seed)
    # Rows are matched to the config by the task's name: the registered one, whatever the
    # builder called it.
    return task if task.name == name else dataclasses.replace(task, name=name)


register_task(
    TaskEntry(
        "continuation",
        continuation_task,
        "the true next 8 words of a held-out passage, against spans of other documents",
    )
)
register_task(
    TaskEntry(
        "word_order",
        word_order_task,
        "two adjacent words of a held-out sentence in their order, against the two swapped",
    )
)
register_task(
    TaskEntry(
        "cloze",
        cloze_task,
        "a frequent word of a held-out sentence (the, of, is, ...), against three others",
    )
)
