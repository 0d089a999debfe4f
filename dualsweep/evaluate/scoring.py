"""Scoring a continuation given a context, in several attention modes (pure tensor functions).

The log-probability of the continuation's tokens, and whether each was the model's argmax.
Each registered objective that scores (`Objective.score_rows`) is a mode of its own name, and
`prefix` is one more:

- `ar`: causal attention; token j is read at position j - 1 (next-token prediction).
- `md`: pseudo-log-likelihood with masked next-token prediction: continuation tokens are
  replaced by the mask id, a chunk of `span` at a time (1: one token at a time, the classic
  PLL; 0: the whole continuation at once), attention is bidirectional, and each masked
  token j is read at position j - 1, as in training. One forward per chunk.
- `prefix`: the context attends bidirectionally, the continuation causally (prefix-LM);
  read as in `ar`.

Rows of a batch are right-padded; pads are kept out of attention (a separate document in
bidirectional mode, and after every real token in causal and prefix modes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dualsweep.model import BIDIRECTIONAL, CAUSAL
from dualsweep.objectives import get_objective, registered

PREFIX_MODE = "prefix"


def scoring_modes() -> tuple[str, ...]:
    """The scoring modes: each registered objective that scores, then prefix."""
    return (*(o.name for o in registered() if o.scores), PREFIX_MODE)


MODES = scoring_modes()  # the built-in ones (ar, md, prefix), for argument choices


@dataclass(frozen=True)
class Score:
    log_prob: float
    """Summed log-probability of the continuation's tokens (nats)."""
    n_tokens: int
    is_greedy: bool
    """Every continuation token was the model's most likely token where it was read."""


def fit_to_context(context: Sequence[int], continuation: Sequence[int], seq_len: int):
    """Drop context from the left (then continuation from the right) to fit `seq_len` tokens.

    At least one context token is kept: position j - 1 must exist to read token j.
    """
    continuation = list(continuation)[: seq_len - 1]
    context = list(context)[-(seq_len - len(continuation)) :]
    return context, continuation


@dataclass(frozen=True)
class _Row:
    pair: int  # which (context, continuation) pair this row scores
    tokens: list[int]  # model input
    targets: list[int]  # positions whose token is read (at position - 1)
    prefix: int  # prefix length (ar: 0, prefix: context length, md: whole row)


def _rows(pairs, mode: str, mask_id: int, span: int) -> list[_Row]:
    if mode == PREFIX_MODE:
        rows = []
        for index, (context, continuation) in enumerate(pairs):
            tokens = [*context, *continuation]
            rows.append(_Row(index, tokens, list(range(len(context), len(tokens))), len(context)))
        return rows
    if mode not in scoring_modes():
        raise ValueError(f"unknown mode {mode!r} (one of {', '.join(scoring_modes())})")
    objective = get_objective(mode)
    rows = []
    for index, (context, continuation) in enumerate(pairs):
        for row in objective.score_rows(context, continuation, mask_id=mask_id, span=span):
            prefix = len(row.tokens) if objective.bidirectional else CAUSAL
            rows.append(_Row(index, row.tokens, row.targets, prefix))
    return rows


@torch.no_grad()
def score_continuations(
    model: torch.nn.Module,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    mode: str,
    *,
    mask_id: int,
    pad_id: int,
    batch_size: int = 32,
    span: int = 1,
    max_batch_tokens: int = 0,
) -> list[Score]:
    """Score each (context ids, continuation ids) pair; contexts need at least one token.

    A forward pass holds at most `batch_size` rows and, when `max_batch_tokens` is set, at
    most that many tokens (rows x the batch's widest row): many short rows share one pass,
    while long rows never take more memory than a training batch would.
    """
    device = next(model.parameters()).device
    seq_len = model.config.seq_len
    pairs = [fit_to_context(c, x, seq_len) for c, x in pairs]
    if any(not c for c, _ in pairs):
        raise ValueError(
            "every context needs at least one token (e.g. the eos that starts a document)"
        )
    # Longest first, so each batch holds rows of similar length and pads little.
    rows = sorted(_rows(pairs, mode, mask_id, span), key=lambda row: -len(row.tokens))
    bidirectional = mode != PREFIX_MODE and get_objective(mode).bidirectional
    log_probs = [0.0] * len(pairs)
    greedy = [True] * len(pairs)
    start = 0
    while start < len(rows):
        width = len(rows[start].tokens)  # the widest of its batch: rows are longest first
        size = batch_size
        if max_batch_tokens:
            size = max(1, min(batch_size, max_batch_tokens // width))
        batch = rows[start : start + size]
        start += size
        tokens = torch.full((len(batch), width), pad_id, dtype=torch.long)
        for i, row in enumerate(batch):
            tokens[i, : len(row.tokens)] = torch.tensor(row.tokens)
        lengths = torch.tensor([len(r.tokens) for r in batch])
        tokens = tokens.to(device)
        # Only the target positions' logits are computed (`at`), normalised on the device,
        # and only their scores copied back: a float32 log-softmax of the whole (batch,
        # width, vocabulary) logits, copied to the host, would not fit at paper scale.
        owners, batch_rows, positions, targets = [], [], [], []
        for i, row in enumerate(batch):
            original = [*pairs[row.pair][0], *pairs[row.pair][1]]
            for j in row.targets:
                owners.append(row.pair)
                batch_rows.append(i)
                positions.append(j - 1)
                targets.append(original[j])
        at = (torch.tensor(batch_rows, device=device), torch.tensor(positions, device=device))
        if mode == PREFIX_MODE:
            prefixes = torch.tensor([r.prefix for r in batch], device=device)
            logits = model(tokens, prefixes, at=at)
        elif bidirectional:
            pads = (torch.arange(width)[None, :] >= lengths[:, None]).long().to(device)
            logits = model(tokens, BIDIRECTIONAL, pads, at=at)  # pads form their own document
        else:
            logits = model(tokens, CAUSAL, at=at)
        target_ids = torch.tensor(targets, device=device)
        predicted = torch.log_softmax(logits.float(), dim=-1)
        target_log_probs = predicted.gather(1, target_ids[:, None]).squeeze(1)
        hits = predicted.argmax(dim=-1) == target_ids
        read_back = torch.stack([target_log_probs.double(), hits.double()]).tolist()  # one copy
        for pair, log_prob, hit in zip(owners, *read_back, strict=True):
            log_probs[pair] += log_prob
            greedy[pair] &= hit == 1.0
    return [Score(lp, len(x), g) for lp, (_, x), g in zip(log_probs, pairs, greedy, strict=True)]
