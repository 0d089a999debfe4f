"""The README's generated block: the report's verdicts, quoted by code, never copied by hand.

What belongs here: turning the numbers `analysis.report.build_report` states into the
README's claims table (one row per verdict of `analysis.verdicts`, the number behind it, a
link to the section of REPORT.md) and replacing the block between the README's markers. Building and writing the
report itself belong to `analysis.report`, which calls this module last.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from dualsweep.paths import atomic_write
from dualsweep.schema import REPORT_FILE

from .tables import alpha_label
from .verdicts import IN_SYMBOLS, verdicts


def _g(value: float) -> str:
    return f"{value:.3g}"


def _mix_measured(stated: dict) -> str:
    bars = [row["paired_threshold"] for row in stated["rows"] if row["compared"]]
    bars = [b for b in bars if math.isfinite(b)]  # NaN: no seed noise measured
    span = f"; paired thresholds {_g(min(bars))}–{_g(max(bars))}" if bars else ""
    return (
        f"best mix wins at {stated['wins']}/{stated['compared']} R, beyond paired noise at "
        f"{stated['significant']} (unpaired: {stated['significant_unpaired']}){span}"
    )


def _falls_measured(stated: dict) -> str:
    gp = (
        f"GP median best α {_g(stated['median_lowest_r'])} → {_g(stated['median_highest_r'])}"
        if "median_lowest_r" in stated
        else ""
    )
    swap = stated.get("paired")
    if stated.get("decided_by") == "GP" or swap is None:
        return gp + ("; decided by the GP (no noise threshold)" if swap else "")
    ends = (
        f"best trained α {alpha_label(swap['best_lowest_r'])} at R={swap['lowest_r']:g}, "
        f"{alpha_label(swap['best_highest_r'])} at R={swap['highest_r']:g}"
    )
    if swap["falls"]:
        ends += (
            f", behind {_g(swap['behind_lowest_r'])} / {_g(swap['behind_highest_r'])} vs paired "
            f"thresholds {_g(swap['paired_lowest_r'])} / {_g(swap['paired_highest_r'])} "
            f"(unpaired {_g(swap['unpaired_lowest_r'])} / {_g(swap['unpaired_highest_r'])})"
        )
    else:
        ends += ": does not fall"
    return f"{ends}; {gp}" if gp else ends


def _measured(section: str, stated: dict, first: str) -> str:
    """The one number (or few) behind a verdict, for the README's claims table (`first`: the
    objective alpha weighs, pure at alpha = 1)."""
    if section == "overfitting" and "gap" in stated:
        high, low = stated["highest_r"], stated["lowest_r"]
        return (
            f"pure {first.upper()} final − best at R={high:g}: {stated['gap'][high]:+.3f} nats; "
            f"final vs R={low:g}: {stated['rise'][high]:+.3f}"
        )
    if section == "mix_beats_pure" and "wins" in stated:
        return _mix_measured(stated)
    if section == "best_alpha_falls" and "verdict" in stated:
        return _falls_measured(stated)
    if section == "ar_vs_md_targets" and "agree" in stated:
        paired = (
            f"best trained α agree within paired noise at {stated['agree']}/"
            f"{stated['compared']} R (unpaired: {stated['agree_unpaired']})"
        )
        gp = f"GP intervals overlap at {stated['overlap']}/{stated['overlap_compared']}"
        if stated.get("decided_by") == "GP":
            return f"{gp} (decided by the GP: no noise threshold); {paired}"
        return f"{paired}; {gp}"
    if section == "time" and "share_median" in stated:
        return f"median {stated['share_median']:.1f}% (max {stated['share_max']:.1f}%)"
    if section == "stderr" and "stderr" in stated:
        return ", ".join(f"{mode} {se:.2f}" for mode, se in stated["stderr"].items())
    return ""


def readme_block(name: str, numbers: dict) -> list[str]:
    """The claims table of the README's generated block: each verdict, its numbers, a link."""
    report = f"results/{name}/{REPORT_FILE}"
    rows = verdicts(numbers, IN_SYMBOLS, ": ")
    first = numbers["objectives"][0]
    lines = [
        f"Claims of the paper against this sweep, written by `make plots` from the committed "
        f"tables (rules, intervals and seed noise in [{report}]({report})):",
        "",
        "| § | claim | verdict | measured |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| [{n}]({report}) | {what} | **{stated['verdict']}** | {_measured(key, stated, first)} |"
        for n, what, key, stated in rows
    ]
    return lines


def update_readme(readme: Path, name: str, lines: Sequence[str]) -> bool:
    """Replace the README's generated block for sweep `name`, if it has one; True if it did.

    The block sits between `<!-- results:NAME -->` and `<!-- /results:NAME -->`, so the
    README quotes the report's verdicts as written by code, never copied by hand.
    """
    if not readme.is_file():
        return False
    text = readme.read_text()
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    updated = head + start + "\n" + "\n".join(lines).rstrip() + "\n" + end + tail
    if updated != text:
        atomic_write(readme, lambda tmp: tmp.write_text(updated))
    return True
