"""lm-evaluation-harness tasks scored inside dualsweep: into a run's evals rows, per mode.

The sweep's `evaluation.lm_eval_tasks` are run through `lm_eval.simple_evaluate` with the
`DualSweepLM` adapter, once per scoring mode, on a model loaded once per run. Each leaf task
(a group's subtasks each) gives one evals row per mode with the columns of the built-in
tasks: accuracy (the harness's `acc`), the score normalised so that 0 is chance and 100 is
perfect (chance: the mean of 1 / choices over the scored documents; 0 for a task that is
not multiple choice), its standard error (the harness's `acc_stderr`, scaled alike), and
the length-normalised variants from the harness's `acc_norm` (normalised by the choice's
bytes, where the built-in tasks normalise by tokens). The harness's own metric values are
kept under their names (`acc`, `acc_norm` and their `_stderr`).

Tasks load offline first: when `lm_eval_include_path` holds every named task, only that folder
is indexed (instant, no network); a relative `data_files` path in a local YAML is resolved
against the YAML's folder (the harness alone resolves it against the working directory, which
a sweep trial does not share). A task that cannot be found or loaded is a `TaskError` naming
it; `check_tasks` raises it before a sweep trains anything.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from dualsweep.config import EvalConfig, strategy_name
from dualsweep.evaluate.tasks import TaskError


def _require_lm_eval():
    try:
        import lm_eval
    except ImportError:
        raise TaskError(
            "evaluation.lm_eval_tasks: lm-evaluation-harness is not installed; "
            "pip install 'dualsweep[lmeval]'"
        ) from None
    return lm_eval


def task_manager(include_path: str | None, names: Iterable[str]):
    """A harness TaskManager that knows `names`: the include folder alone when it holds all of
    them, else the harness's own tasks too (about 7 s to index, and their datasets download)."""
    _require_lm_eval()
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        folder = Path(include_path).expanduser()
        if not folder.is_dir():
            raise TaskError(f"evaluation.lm_eval_include_path: {folder} is not a folder")
        local = TaskManager(include_path=str(folder.resolve()), include_defaults=False)
        if all(name in local.task_index for name in names):
            return local
    return TaskManager(
        include_path=str(Path(include_path).expanduser().resolve()) if include_path else None
    )


def task_spec(manager, name: str):
    """What to give the harness for `name`: the name, or for a local YAML task whose
    `data_files` are relative paths, its config with those made absolute."""
    entry = manager.task_index.get(name)
    if entry is None:
        known = (
            "the include path's and the harness's tasks"
            if manager.include_path
            else "the harness's tasks"
        )
        raise TaskError(f"evaluation.lm_eval_tasks: {name!r} is not among {known}")
    files = ((entry.cfg or {}).get("dataset_kwargs") or {}).get("data_files")
    if entry.yaml_path is None or not files:
        return name
    folder = Path(entry.yaml_path).parent

    def absolute(path):
        return path if Path(path).is_absolute() or "://" in path else str(folder / path)

    spec = copy.deepcopy(entry.cfg)
    data_files = spec["dataset_kwargs"]["data_files"]
    if isinstance(data_files, str):
        spec["dataset_kwargs"]["data_files"] = absolute(data_files)
    elif isinstance(data_files, list):
        spec["dataset_kwargs"]["data_files"] = [absolute(p) for p in data_files]
    else:
        spec["dataset_kwargs"]["data_files"] = {
            split: [absolute(p) for p in paths] if isinstance(paths, list) else absolute(paths)
            for split, paths in data_files.items()
        }
    return spec


def check_tasks(evaluation: EvalConfig) -> None:
    """Fail now (TaskError naming the task) when a harness task is unknown, or is local and
    does not load (a bad YAML, a missing data file); hub tasks download when scored."""
    if not evaluation.lm_eval_tasks:
        return
    manager = task_manager(evaluation.lm_eval_include_path, evaluation.lm_eval_tasks)
    for name in evaluation.lm_eval_tasks:
        spec = task_spec(manager, name)
        entry = manager.task_index[name]
        if (
            entry.yaml_path is not None
            and manager.include_path
            and _inside(entry.yaml_path, manager.include_path)
        ):
            try:
                manager.load([spec])
            except Exception as e:  # noqa: BLE001 - any failure to load names the task
                raise TaskError(
                    f"evaluation.lm_eval_tasks: {name!r} ({entry.yaml_path}) does not load: "
                    f"{type(e).__name__}: {e}"
                ) from None


def _inside(path, folder) -> bool:
    folders = folder if isinstance(folder, (list, tuple)) else [folder]
    return any(Path(path).resolve().is_relative_to(Path(f).resolve()) for f in folders)


def _leaves(name: str, group_subtasks: dict) -> list[str]:
    """The leaf tasks of `name` (itself, for a task) in the harness's order."""
    if name not in group_subtasks:
        return [name]
    return [leaf for sub in group_subtasks[name] for leaf in _leaves(sub, group_subtasks)]


def harness_rows(
    lm,
    evaluation: EvalConfig,
    pairs: set[tuple[str, str]],
    *,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Evals rows (without run_key) of the harness tasks in `pairs` ((requested task, mode)),
    scored by the `DualSweepLM` `lm`, whose mode is set for each mode in turn."""
    lm_eval = _require_lm_eval()
    manager = task_manager(evaluation.lm_eval_include_path, {t for t, _ in pairs})
    rows = []
    for mode in evaluation.modes:  # in the configured order
        names = [t for t in evaluation.lm_eval_tasks if (t, mode) in pairs]
        if not names:
            continue
        lm.set_mode(mode, md_mask_span=evaluation.md_mask_span)
        started = time.perf_counter()
        try:
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=[task_spec(manager, name) for name in names],
                task_manager=manager,
                num_fewshot=evaluation.lm_eval_num_fewshot,
                limit=evaluation.lm_eval_limit or None,
                bootstrap_iters=evaluation.bootstrap_samples,
                log_samples=True,
                random_seed=evaluation.task_seed,
                numpy_random_seed=evaluation.task_seed,
                torch_random_seed=evaluation.task_seed,
                fewshot_random_seed=evaluation.task_seed,
            )
        except TaskError:
            raise
        except Exception as e:  # noqa: BLE001 - a dataset that cannot load (no network, bad file)
            raise TaskError(
                f"evaluation.lm_eval_tasks: {', '.join(names)} could not be scored in {mode} mode: "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            ) from None
        spent = time.perf_counter() - started
        mode_rows = [
            _row(results, leaf, requested, mode, evaluation)
            for requested in names
            for leaf in _leaves(requested, results.get("group_subtasks", {}))
        ]
        documents = sum(r["n_items"] for r in mode_rows) or 1
        for row in mode_rows:  # the mode's time, shared by documents scored
            row["scoring_time_s"] = spent * row["n_items"] / documents
        rows.extend(mode_rows)
        log(f"lm-eval {mode}: {', '.join(names)} ({documents} documents) in {spent:.1f}s")
    return rows


def _row(results: dict, task: str, requested: str, mode: str, evaluation: EvalConfig) -> dict:
    from dualsweep.evaluate.multiple_choice import normalized_score

    metrics = {k.split(",")[0]: v for k, v in results["results"][task].items() if "," in k}
    samples = results.get("samples", {}).get(task, [])
    multiple_choice = results["configs"][task].get("output_type") == "multiple_choice"
    chance = (
        sum(1 / len(s["arguments"]) for s in samples) / len(samples)
        if multiple_choice and samples
        else 0.0
    )
    if "acc" not in metrics:
        raise TaskError(
            f"evaluation.lm_eval_tasks: {requested!r}: task {task!r} reports no acc "
            f"(it reports {', '.join(metrics) or 'nothing'}); only accuracy tasks are scored"
        )
    harness = {
        name: float(metrics[name]) if _number(metrics.get(name)) else math.nan
        for name in ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr")
    }
    per_token = "acc_norm" if not math.isnan(harness["acc_norm"]) else "acc"
    return {
        "task": task,
        "mode": mode,
        "strategy": strategy_name(mode, evaluation.md_mask_span if mode == "md" else 1),
        "n_items": int(results["n-samples"][task]["effective"]),
        "chance": chance,
        "accuracy": harness["acc"],
        "normalized_score": normalized_score(harness["acc"], chance),
        "stderr": 100 * harness["acc_stderr"] / (1 - chance),
        "accuracy_per_token": harness[per_token],
        "normalized_score_per_token": normalized_score(harness[per_token], chance),
        "stderr_per_token": 100 * harness[f"{per_token}_stderr"] / (1 - chance),
        "requested_task": requested,
        "item_limit": evaluation.lm_eval_limit,
        "num_fewshot": evaluation.lm_eval_num_fewshot,
        **harness,
    }


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
