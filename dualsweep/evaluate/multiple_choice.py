"""Zero-shot multiple choice: score every choice in a mode, pick the best, report accuracy.

Accuracy is normalised so that 0 is chance and 100 is perfect:
score = 100 * (accuracy - chance) / (1 - chance), with chance the mean of 1 / n_choices;
its standard error is the standard deviation of that score over bootstrap resamples of items.
Each mode is reported with choices scored by their summed log-probability and by the
per-token mean (length-normalised, the `_per_token` columns), since choices differ in length.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dualsweep.config import strategy_name
from dualsweep.evaluate.scoring import Score, score_continuations
from dualsweep.evaluate.tasks import Task
from dualsweep.special_tokens import SpecialTokens


@dataclass(frozen=True)
class Accuracy:
    accuracy: float
    chance: float
    normalized_score: float
    stderr: float
    """Bootstrap standard error of `normalized_score` over items."""


@dataclass(frozen=True)
class TaskResult:
    """One task in one mode: choices scored by summed log-probability and per token."""

    task: str
    mode: str
    strategy: str
    n_items: int
    summed: Accuracy
    per_token: Accuracy
    scoring_time_s: float = float("nan")
    """Wall time of scoring every choice of the task in this mode."""

    def row(self) -> dict:
        return {
            "task": self.task,
            "mode": self.mode,
            "strategy": self.strategy,
            "n_items": self.n_items,
            "chance": self.summed.chance,
            "accuracy": self.summed.accuracy,
            "normalized_score": self.summed.normalized_score,
            "stderr": self.summed.stderr,
            "accuracy_per_token": self.per_token.accuracy,
            "normalized_score_per_token": self.per_token.normalized_score,
            "stderr_per_token": self.per_token.stderr,
            "scoring_time_s": self.scoring_time_s,
        }


def encode(
    tokenizer, special: SpecialTokens, task: Task
) -> list[list[tuple[list[int], list[int]]]]:
    """(context ids, choice ids) per choice per item; contexts start with eos, as documents do."""
    encoded = []
    for item in task.items:
        context = (
            [special.eos, *tokenizer.encode(item.context).ids] if item.context else [special.eos]
        )
        encoded.append([(context, tokenizer.encode(choice).ids) for choice in item.choices])
    return encoded


def normalized_score(accuracy: float, chance: float) -> float:
    return 100.0 * (accuracy - chance) / (1.0 - chance)


def summarize(
    task: Task,
    scores: Sequence[Sequence[Score]],
    *,
    length_normalized: bool,
    bootstrap: int = 1000,
    seed: int = 0,
) -> Accuracy:
    """Accuracy of picking each item's best-scoring choice, normalised, with a bootstrap error."""
    labels = np.array([item.label for item in task.items])
    chance_per_item = np.array([1 / len(item.choices) for item in task.items])
    picked = np.array(
        [
            int(
                np.argmax(
                    [s.log_prob / (s.n_tokens if length_normalized else 1) for s in item_scores]
                )
            )
            for item_scores in scores
        ]
    )
    correct = (picked == labels).astype(float)
    accuracy, chance = correct.mean(), chance_per_item.mean()
    rng = np.random.default_rng(seed)
    resamples = rng.integers(0, len(correct), size=(bootstrap, len(correct)))
    boot = normalized_score(
        correct[resamples].mean(axis=1), chance_per_item[resamples].mean(axis=1)
    )
    return Accuracy(
        accuracy=float(accuracy),
        chance=float(chance),
        normalized_score=float(normalized_score(accuracy, chance)),
        stderr=float(boot.std(ddof=1)),
    )


def evaluate_task(
    model: torch.nn.Module,
    tokenizer,
    special: SpecialTokens,
    task: Task,
    modes: Sequence[str],
    *,
    md_span: int = 1,
    batch_size: int = 32,
    max_batch_tokens: int = 0,
    bootstrap: int = 1000,
    seed: int = 0,
) -> list[TaskResult]:
    """Results of `task` in each mode, with summed and length-normalised choice scores."""
    encoded = encode(tokenizer, special, task)
    flat = [pair for item in encoded for pair in item]
    results = []
    for mode in modes:
        span = md_span if mode == "md" else 1
        started = time.perf_counter()
        scores = score_continuations(
            model,
            flat,
            mode,
            mask_id=special.mask,
            pad_id=special.pad,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            span=span,
        )
        per_item, start = [], 0
        for item in encoded:
            per_item.append(scores[start : start + len(item)])
            start += len(item)
        summed, per_token = (
            summarize(task, per_item, length_normalized=n, bootstrap=bootstrap, seed=seed)
            for n in (False, True)
        )
        results.append(
            TaskResult(
                task.name,
                mode,
                strategy_name(mode, span),
                len(task.items),
                summed,
                per_token,
                scoring_time_s=time.perf_counter() - started,
            )
        )
    return results
