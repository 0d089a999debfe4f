"""The list of claims a sweep's verdicts are quoted by: REPORT.md's glance and the README's block.

What belongs here: one list, each claim's section of REPORT.md, its words and where its
verdict and numbers sit in the numbers `analysis.report.build_report` states. The report
writes it in words (`IN_WORDS`), the README's table in symbols (`IN_SYMBOLS`); the numbers in
a claim (the objectives' names, the evaluation targets) come from the computed claims and
their constants, never typed in twice.
"""

from __future__ import annotations

from .claims import EVAL_SHARE_TARGET, SCORE_STDERR_TARGET

Verdict = tuple[str, str, str, dict]
"""(REPORT.md's section, the claim, the key of its numbers, its numbers with the verdict)."""

# How each rendering writes the few words that differ between prose and a table's cell.
IN_WORDS = {"alpha": "alpha", "at most": "at most", "about": "about", "scores": "scores'"}
IN_SYMBOLS = {"alpha": "α", "at most": "≤", "about": "≈", "scores": "score"}


def verdicts(numbers: dict, words: dict[str, str], separator: str) -> list[Verdict]:
    """Every verdict of sections 2-5, 7 and 10, in the report's order. `numbers`: the
    report's numbers by section, with `objectives` (the runs' pair: alpha weighs the
    first); `separator` joins a claim to the metric it is decided on."""
    first, second = (name.upper() for name in numbers["objectives"])
    alpha = words["alpha"]
    found = [("2", f"pure {first} overfits with repetition", "overfitting", numbers["overfitting"])]
    for section, key, claim in (
        ("3", "mix_beats_pure", "a mix beats both pure objectives at every R"),
        ("4", "best_alpha_falls", f"best {alpha} falls as R grows"),
        ("5", "ar_vs_md_targets", f"best {alpha} similar for {first} and {second} targets"),
    ):
        found += [
            (section, f"{claim}{separator}`{metric}`", key, stated)
            for metric, stated in numbers[key].items()
        ]
    found += [
        ("7", f"mix allocation, step vs sequence{separator}`{metric}`", "allocation", stated)
        for metric, stated in numbers["allocation"].get("metrics", {}).items()
    ]
    cost = numbers["evaluation_cost"]
    share = f"evaluation {words['at most']} {EVAL_SHARE_TARGET:g}% of a trial's time"
    stderr = (
        f"task-averaged {words['scores']} standard error {words['about']} "
        f"{SCORE_STDERR_TARGET:g} points or less"
    )
    return found + [("10", share, "time", cost["time"]), ("10", stderr, "stderr", cost["stderr"])]
