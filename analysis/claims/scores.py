"""Claims on the multiple-choice scores: prefix-LM vs AR scoring (section 8), and the
paper's own 470M numbers beside ours (section 9).

What belongs here: comparisons of the task-averaged scores across scoring modes and against
the paper's table (`PAPER_470M`, the only numbers typed in by hand besides the targets).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import metric, pair
from ..tables import main_table
from .formatting import Section, fmt, fmt_alpha, fmt_se, table_lines
from .noise import paired, point_stderr

# The paper's 470M table, downstream average: (R, dual model = best mix, pure AR).
PAPER_470M = ((1, 26.9, 26.1), (32, 23.9, 22.0), (128, 19.1, 9.4))


# -- 8. prefix-LM vs AR scoring --------------------------------------------------------
def prefix_vs_ar(table: pd.DataFrame) -> Section:
    """Section 8: score_prefix − score_ar over models, per R, per alpha group and overall."""
    lines = ["## 8. Prefix-LM vs AR scoring", ""]
    if not {"score_prefix", "score_ar"} <= set(table.columns):
        return lines + ["Not evaluated: the sweep has no `prefix` and `ar` scores.", ""], {}
    d = table["score_prefix"] - table["score_ar"]
    first, second = (f"pure {o.name.upper()}" for o in pair(table))  # the trained pair's ends
    group = np.select([table["alpha"] == 1, table["alpha"] == 0], [first, second], "mixes")
    rows = [
        (f"R={r:g}", paired(d[table["repetitions"] == r]))
        for r in sorted(set(table["repetitions"]))
    ]
    rows += [(g, paired(d[group == g])) for g in (first, "mixes", second)]
    rows.append(("all models", paired(d)))
    lines += [
        "Mean of `score_prefix − score_ar` over trained models (each run once), ± the paired "
        "standard error (SD of the differences / sqrt(n)).",
        "",
    ]
    lines += table_lines(
        ["models", "n", "prefix − AR", "beyond 2 SE"],
        [
            [label, str(n), fmt_se(mean, se, "score_ar", signed=True)]
            + ["yes" if abs(mean) > 2 * se else "no"]
            for label, (mean, se, n) in rows
        ],
    )
    return lines, {label: {"mean": mean, "stderr": se, "n": n} for label, (mean, se, n) in rows}


# -- 9. the paper's numbers ------------------------------------------------------------
def paper_numbers(table: pd.DataFrame) -> Section:
    """Section 9: the paper's 470M downstream averages beside our best mix vs pure AR."""
    lines = ["## 9. The paper's numbers beside ours", ""]
    if "score_ar" not in table:
        return lines + ["Not evaluated: the sweep has no `score_ar`.", ""], {}
    if pair(table)[0].name != "ar":  # the paper's gap is a mix against pure AR (alpha = 1)
        first = pair(table)[0].name
        return lines + [f"Not comparable: the runs mix {first}, not AR, with alpha = 1.", ""], {}
    main = main_table(table, [metric(table, "score_ar")]).dropna(subset=["best_mix", "pure_ar"])
    if main.empty:
        return lines + ["No R has both a trained mix and pure AR.", ""], {}
    stderr, trained = point_stderr(table, "score_ar"), main.set_index("repetitions")
    rows, cells = [], []
    for paper_r, dual, ar in PAPER_470M:
        r = min(trained.index, key=lambda x: (abs(np.log2(x / paper_r)), x))
        mix, alpha, pure = trained.loc[r, ["best_mix", "best_mix_alpha", "pure_ar"]]
        se = float(np.hypot(stderr.get((r, alpha), np.nan), stderr.get((r, 1.0), np.nan)))
        rows.append({"paper_r": paper_r, "r": int(r), "gap": mix - pure, "stderr": se})
        cells.append(
            [str(paper_r), f"{dual:.1f}", f"{ar:.1f}", f"{dual - ar:+.1f}", str(r)]
            + [f"{fmt(mix, 'score_ar')} (α {fmt_alpha(alpha)})", fmt(pure, "score_ar")]
            + [fmt_se(mix - pure, se, "score_ar", signed=True)]
        )
    lines += [
        "Different scale, not directly comparable: the paper's numbers are its 470M models' "
        "downstream average; ours are `score_ar` (normalised multiple-choice score, AR scoring) "
        "of this sweep's models at the nearest trained R. Compare the sign of the gap and how "
        "it grows with R.",
        "",
    ]
    headers = ["paper R", "paper dual", "paper AR", "paper gap", "our R", "our best mix"]
    lines += table_lines([*headers, "our pure AR", "our gap"], cells)
    positive = sum(row["gap"] > 0 for row in rows)
    gaps = list({row["r"]: row["gap"] for row in rows}.values())  # one per distinct R
    grows = len(gaps) > 1 and all(b > a for a, b in zip(gaps, gaps[1:], strict=False))
    lines += [
        f"Sign: our gap is positive, as the paper's, in {positive} of {len(rows)} rows. "
        f"Grows with R (over the distinct R used): {'yes' if grows else 'no'}; the paper's "
        "grows from +0.8 to +1.9 to +9.7.",
        "",
    ]
    return lines, {"rows": rows, "positive": positive, "grows": grows}
