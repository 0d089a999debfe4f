"""Scoring a continuation given a context, in several attention modes (pure tensor functions).

The log-probability of the continuation's tokens, and whether each was the model's argmax.
A scoring mode is one registered entry: the rows it reads a continuation in, and how the model
attends in them. Each registered objective that scores (`Objective.score_rows`) is a mode of
its own name, attending as it trains, and `prefix` is one more:

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

from dualsweep.objectives import Objective, ScoreRow, get_objective, registered
from dualsweep.schema import SCORING_MODES


class ScoringMode:
    """How continuations are scored in one mode: the rows read, and how the model attends."""

    name: str

    def rows(
        self, context: list[int], continuation: list[int], *, mask_id: int, span: int
    ) -> list[ScoreRow]:
        raise NotImplementedError

    def attention(self, batch: Sequence[ScoreRow], width: int, device) -> tuple:
        """The model's `prefix_lengths` and `document_ids` for `batch`, right-padded to `width`."""
        raise NotImplementedError


class ObjectiveMode(ScoringMode):
    """A scoring objective's own mode: its `score_rows`, attending as the objective trains."""

    def __init__(self, objective: Objective):
        self.objective, self.name = objective, objective.name

    def rows(self, context, continuation, *, mask_id, span) -> list[ScoreRow]:
        return self.objective.score_rows(context, continuation, mask_id=mask_id, span=span)

    def attention(self, batch, width, device) -> tuple:
        if not self.objective.bidirectional:
            return self.objective.attention, None
        lengths = torch.tensor([len(r.tokens) for r in batch])
        pads = (torch.arange(width)[None, :] >= lengths[:, None]).long().to(device)
        return self.objective.attention, pads  # pads form their own document


class PrefixLM(ScoringMode):
    """The context attends bidirectionally, the continuation causally; read as in ar."""

    name = "prefix"

    def rows(self, context, continuation, *, mask_id, span) -> list[ScoreRow]:
        tokens = [*context, *continuation]
        return [ScoreRow(tokens, list(range(len(context), len(tokens))))]

    def attention(self, batch, width, device) -> tuple:
        # A row reads every continuation token, so what precedes them is its context.
        contexts = [len(r.tokens) - len(r.targets) for r in batch]
        return torch.tensor(contexts, device=device), None


_MODES: dict[str, ScoringMode] = {PrefixLM.name: PrefixLM()}
"""The modes that are not an objective's own, after the objectives' in `scoring_modes()`."""


def scoring_modes() -> tuple[str, ...]:
    """The scoring modes, in `schema.SCORING_MODES` order (the config's list, which each
    registered objective that scores joins): its own modes and the others (prefix)."""
    own = {o.name for o in registered() if o.scores}
    return tuple(m for m in SCORING_MODES if m in own or m in _MODES)


def scoring_mode(name: str) -> ScoringMode:
    """The mode `name` (ValueError naming the modes when there is none)."""
    if name in _MODES:
        return _MODES[name]
    if name not in scoring_modes():
        raise ValueError(f"unknown mode {name!r} (one of {', '.join(scoring_modes())})")
    return ObjectiveMode(get_objective(name))


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
    scorer = scoring_mode(mode)
    device = next(model.parameters()).device
    seq_len = model.config.seq_len
    pairs = [fit_to_context(c, x, seq_len) for c, x in pairs]
    if any(not c for c, _ in pairs):
        raise ValueError(
            "every context needs at least one token (e.g. the eos that starts a document)"
        )
    # Longest first, so each batch holds rows of similar length and pads little.
    rows = [
        (index, row)
        for index, (context, continuation) in enumerate(pairs)
        for row in scorer.rows(context, continuation, mask_id=mask_id, span=span)
    ]
    rows.sort(key=lambda owned: -len(owned[1].tokens))
    log_probs = [0.0] * len(pairs)
    greedy = [True] * len(pairs)
    start = 0
    while start < len(rows):
        width = len(rows[start][1].tokens)  # the widest of its batch: rows are longest first
        size = batch_size
        if max_batch_tokens:
            size = max(1, min(batch_size, max_batch_tokens // width))
        batch = rows[start : start + size]
        start += size
        tokens = torch.full((len(batch), width), pad_id, dtype=torch.long)
        for i, (_, row) in enumerate(batch):
            tokens[i, : len(row.tokens)] = torch.tensor(row.tokens)
        tokens = tokens.to(device)
        # Only the target positions' logits are computed (`at`), normalised on the device,
        # and only their scores copied back: a float32 log-softmax of the whole (batch,
        # width, vocabulary) logits, copied to the host, would not fit at paper scale.
        owners, batch_rows, positions, targets = [], [], [], []
        for i, (pair, row) in enumerate(batch):
            original = [*pairs[pair][0], *pairs[pair][1]]
            for j in row.targets:
                owners.append(pair)
                batch_rows.append(i)
                positions.append(j - 1)
                targets.append(original[j])
        at = (torch.tensor(batch_rows, device=device), torch.tensor(positions, device=device))
        prefix_lengths, document_ids = scorer.attention([row for _, row in batch], width, device)
        logits = model(tokens, prefix_lengths, document_ids, at=at)
        target_ids = torch.tensor(targets, device=device)
        predicted = torch.log_softmax(logits.float(), dim=-1)
        target_log_probs = predicted.gather(1, target_ids[:, None]).squeeze(1)
        hits = predicted.argmax(dim=-1) == target_ids
        read_back = torch.stack([target_log_probs.double(), hits.double()]).tolist()  # one copy
        for pair, log_prob, hit in zip(owners, *read_back, strict=True):
            log_probs[pair] += log_prob
            greedy[pair] &= hit == 1.0
    return [Score(lp, len(x), g) for lp, (_, x), g in zip(log_probs, pairs, greedy, strict=True)]
