"""Objectives: closed-form AR and MD losses, masking, the AR/MD allocation and the mix.

Long because every closed form the style guide names (uniform logits, shifted cross-entropy,
hand-computed MD loss, the mix at alpha 0 and 1) is its own test, with the allocation rules and
the objective registry.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dualsweep.config import ModelConfig
from dualsweep.evaluate.heldout import held_out_losses
from dualsweep.model import BIDIRECTIONAL, CAUSAL, Transformer
from dualsweep.objectives import (
    AR,
    MD,
    ar_nll_sums,
    corrupt_batch,
    document_ids,
    dual_objective_loss,
    first_sequence_flags,
    mask_tokens,
    maskable_positions,
    md_nll_sums,
    modelled,
    next_token_nll,
    objective_allocation,
    register,
    sample_mask_rates,
)
from dualsweep.schema import ObjectiveColumns, curve_columns
from dualsweep.special_tokens import SpecialTokens

from .helpers import fixed_rate_mlm

SPECIAL = SpecialTokens(pad=0, bos=1, eos=2, mask=3)
PAIR = (AR, MD)
PAPER_ALPHAS = [0, 1 / 256, 1 / 64, 1 / 16, 1 / 4, 1 / 2, 3 / 4, 15 / 16, 63 / 64, 255 / 256, 1]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


class FixedLogits(torch.nn.Module):
    """A 'model' returning given logits whatever its input; records the attention it was asked for."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.calls = []
        self.device_anchor = torch.nn.Parameter(torch.zeros(()))  # where evaluations look

    def forward(self, tokens, prefix_lengths=CAUSAL, document_ids=None):
        self.calls.append((tokens.clone(), prefix_lengths))
        return self.logits


def test_ar_loss_is_shifted_cross_entropy():
    logits = torch.randn(2, 6, 11, generator=gen())
    tokens = torch.randint(4, 11, (2, 6), generator=gen(1))
    targets = modelled(tokens[:, 1:], SPECIAL)
    sums = ar_nll_sums(next_token_nll(logits, tokens), targets)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 11), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(sums.sum() / 10, expected)


def test_uniform_logits_give_log_v():
    V = 37
    tokens = torch.randint(4, V, (3, 9), generator=gen())
    nll = next_token_nll(torch.zeros(3, 9, V), tokens)
    torch.testing.assert_close(nll, torch.full((3, 8), math.log(V)))


def test_md_loss_by_hand():
    # V = 8, T = 4, tokens 7 6 5 4; only input 2 (token 5) is masked, so only position 1
    # is a target. Its logits are 0 except ln 3 for token 5: p(5) = 3 / (3 + 7) = 0.3, NLL
    # -ln 0.3. With t = 1/2 and three targets per sequence the MD loss is -ln(0.3) / 0.5 / 3.
    V = 8
    logits = torch.zeros(1, 4, V)
    logits[0, 1, 5] = math.log(3)
    tokens = torch.tensor([[7, 6, 5, 4]])
    masked = torch.tensor([[False, False, True, False]])
    targets = modelled(tokens[:, 1:], SPECIAL)
    nll = next_token_nll(logits, tokens)
    loss = md_nll_sums(nll, targets, masked, torch.tensor([0.5])) / 3
    torch.testing.assert_close(loss, torch.tensor([-math.log(0.3) / 0.5 / 3]))
    # Unmasked targets contribute nothing: changing their logits leaves the loss unchanged.
    logits[0, 0] = torch.randn(V, generator=gen())
    logits[0, 2] = torch.randn(V, generator=gen(1))
    again = md_nll_sums(next_token_nll(logits, tokens), targets, masked, torch.tensor([0.5])) / 3
    torch.testing.assert_close(again, loss)


def test_md_targets_only_where_the_next_input_is_masked():
    # Gradient of the MD loss w.r.t. the logits is non-zero exactly at positions i whose
    # input i + 1 was masked.
    tokens = torch.randint(4, 20, (4, 16), generator=gen())
    rates = torch.full((4,), 0.4)
    inputs, masked = mask_tokens(
        tokens, rates, maskable_positions(tokens, SPECIAL), SPECIAL.mask, gen(3)
    )
    logits = torch.randn(4, 16, 20, generator=gen(1), requires_grad=True)
    md_nll_sums(
        next_token_nll(logits, tokens), modelled(tokens[:, 1:], SPECIAL), masked, rates
    ).sum().backward()
    has_grad = logits.grad.abs().sum(-1) > 0
    assert torch.equal(has_grad[:, :-1], masked[:, 1:])
    assert not has_grad[:, -1].any()
    assert torch.equal(inputs[masked], torch.full((int(masked.sum()),), SPECIAL.mask))
    assert torch.equal(inputs[~masked], tokens[~masked])


def test_mask_share_is_t_and_specials_are_never_masked():
    tokens = torch.randint(0, 30, (64, 256), generator=gen())  # ids 0..3 are the specials
    tokens[:, 0] = 9
    maskable = maskable_positions(tokens, SPECIAL)
    for t in (0.1, 0.5, 0.9):
        _, masked = mask_tokens(
            tokens, torch.full((64,), t), maskable, SPECIAL.mask, gen(int(t * 10))
        )
        assert not masked[torch.isin(tokens, torch.tensor([0, 1, 3]))].any()
        assert not masked[:, 0].any()
        n = int(maskable.sum())
        share = masked.sum().item() / n
        assert abs(share - t) < 4 * math.sqrt(t * (1 - t) / n)  # binomial: 4 standard errors
    # eos is a modelled token (the document boundary), so it can be masked.
    _, masked = mask_tokens(tokens, torch.ones(64), maskable, SPECIAL.mask, gen())
    assert masked[tokens == SPECIAL.eos].all()


def test_mask_rates():
    rates = sample_mask_rates(10_000, gen(), min_rate=1e-3)
    assert rates.min() >= 1e-3 and rates.max() < 1
    assert abs(rates.mean().item() - 0.5) < 4 * math.sqrt(1 / 12 / 10_000)
    stratified = sample_mask_rates(8, gen(1), stratified=True)
    assert sorted((stratified * 8).floor().long().tolist()) == list(range(8))  # one per stratum


def test_md_elbo_of_uniform_predictions_is_log_v_in_expectation():
    # For uniform logits every masked NLL is log V, and E[#masked / t | t] = #targets, so the
    # 1/t-weighted estimate has expectation exactly log V whatever the distribution of t.
    V, B, T = 40, 256, 64
    tokens = torch.randint(4, V, (B, T), generator=gen())
    model = FixedLogits(torch.zeros(B, T, V))
    result = held_out_losses(model, tokens, SPECIAL, PAIR, draws=8, seed=0, batch_size=B)
    assert result.values["held_out_ar_loss"] == pytest.approx(math.log(V), rel=1e-6)
    estimate, stderr = result.values["held_out_md_elbo"], result.values["held_out_md_elbo_stderr"]
    assert abs(estimate - math.log(V)) < 4 * stderr + 1e-3


@pytest.mark.parametrize("alpha", PAPER_ALPHAS)
def test_allocation_tracks_alpha_within_one_sequence(alpha):
    batch, steps = 16, 600
    flags = np.concatenate([first_sequence_flags(alpha, s * batch, batch) for s in range(steps)])
    cumulative = np.cumsum(flags)
    n = np.arange(1, len(flags) + 1)
    assert np.all(np.abs(cumulative - alpha * n) <= 0.5 + 1e-9)  # after every sequence
    # The flags depend on the global sequence index only, not on the batch size.
    halves = np.concatenate([first_sequence_flags(alpha, s * 8, 8) for s in range(2 * steps)])
    assert np.array_equal(flags, halves)


@pytest.mark.parametrize("alpha", PAPER_ALPHAS)
def test_per_step_allocation_has_both_objectives_and_weights_alpha(alpha):
    B = 16
    is_ar, weights = objective_allocation(alpha, 7, B, "step")
    n_ar = int(is_ar.sum())
    if 0 < alpha < 1:
        assert 1 <= n_ar <= B - 1  # both objectives in every batch, even at alpha = 1/256
        assert n_ar == min(max(round(alpha * B), 1), B - 1)
        # The AR rows carry exactly alpha of the batch loss, the MD rows 1 - alpha.
        assert weights[is_ar].sum() == pytest.approx(alpha, abs=1e-12)
        assert weights[~is_ar].sum() == pytest.approx(1 - alpha, abs=1e-12)
        assert np.ptp(weights[is_ar]) == 0 and np.ptp(weights[~is_ar]) == 0
    else:
        assert n_ar == B * alpha and np.all(weights == 1 / B)
    # The same split at every step: it depends on alpha and B only.
    assert np.array_equal(objective_allocation(alpha, 123, B, "step")[0], is_ar)


def test_per_step_allocation_by_hand():
    # alpha = 1/4, B = 8: 2 AR rows of weight (1/4)/2, 6 MD rows of weight (3/4)/6.
    is_ar, weights = objective_allocation(0.25, 0, 8, "step")
    assert is_ar.tolist() == [True, True] + [False] * 6
    assert weights.tolist() == [0.125, 0.125] + [0.125] * 6
    # alpha = 1/64, B = 16: round(0.25) = 0 is raised to 1 AR row carrying 1/64 of the loss.
    is_ar, weights = objective_allocation(1 / 64, 0, 16, "step")
    assert is_ar.sum() == 1 and weights[0] == 1 / 64 and weights[1] == pytest.approx(63 / 64 / 15)
    # alpha = 63/64, B = 16: round(15.75) = 16 is lowered to 15 AR rows, one MD row.
    is_ar, weights = objective_allocation(63 / 64, 0, 16, "step")
    assert (~is_ar).sum() == 1 and weights[-1] == pytest.approx(1 / 64)
    # The sequence rule: 1/B per row, whichever objective.
    is_ar, weights = objective_allocation(0.5, 3, 4, "sequence")
    assert np.array_equal(is_ar, first_sequence_flags(0.5, 12, 4)) and np.all(weights == 0.25)
    with pytest.raises(ValueError, match="unknown mix allocation 'batch'"):
        objective_allocation(0.5, 0, 4, "batch")


def test_per_step_mixed_loss_is_alpha_mean_ar_plus_one_minus_alpha_mean_md(tiny_model):
    tokens = torch.randint(4, 24, (8, 10), generator=gen())
    alpha = 1 / 16
    is_ar, weights = objective_allocation(alpha, 0, 8, "step")  # 1 AR row, 7 MD rows
    corruption = corrupt_batch(tokens, is_ar, SPECIAL, gen(2), PAIR, weights=weights)
    out = dual_objective_loss(tiny_model, tokens, corruption, SPECIAL, PAIR)
    per_row = out.sequence_losses
    expected = alpha * per_row[is_ar].mean() + (1 - alpha) * per_row[~is_ar].mean()
    torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=0)
    # Micro-batches: the parts' losses add up to the batch loss, their gradients to its gradient.
    (whole_grad,) = torch.autograd.grad(out.loss, tiny_model.embed.weight)
    parts = [
        dual_objective_loss(
            tiny_model, tokens[s : s + 2], corruption.rows(s, s + 2), SPECIAL, PAIR
        ).loss
        for s in range(0, 8, 2)
    ]
    torch.testing.assert_close(sum(parts), out.loss, rtol=1e-6, atol=0)
    grad = sum(torch.autograd.grad(p, tiny_model.embed.weight)[0] for p in parts)
    torch.testing.assert_close(grad, whole_grad, atol=1e-6, rtol=1e-5)


def test_allocation_endpoints():
    assert first_sequence_flags(1.0, 12345, 64).all()
    assert not first_sequence_flags(0.0, 12345, 64).any()
    assert first_sequence_flags(1 / 256, 0, 256).sum() == 1


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return Transformer(
        ModelConfig(vocab_size=24, n_layers=1, d_model=16, n_heads=2, ffn_hidden=32, seq_len=10)
    )


def test_alpha_one_is_exactly_the_ar_loss_and_draws_nothing(tiny_model):
    tokens = torch.randint(4, 24, (6, 10), generator=gen())
    g = gen(5)
    state = g.get_state()
    out = dual_objective_loss(
        tiny_model, tokens, corrupt_batch(tokens, np.ones(6, bool), SPECIAL, g, PAIR), SPECIAL, PAIR
    )
    logits = tiny_model(tokens)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 24), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=0)  # float32 rounding only
    assert torch.equal(g.get_state(), state)  # no MD work: no random draw


def check_md_corruption(tokens, corruption, rows):
    """The draws' invariants (whatever order they are made in): only MD rows are masked, only
    at maskable positions, with the mask id; each MD row has one rate t in [min_rate, 1)."""
    md = torch.zeros(len(tokens), dtype=torch.bool)
    md[rows] = True
    masked = corruption.masked
    assert not masked[~md].any() and torch.equal(corruption.inputs[~md], tokens[~md])
    assert not (masked & ~maskable_positions(tokens, SPECIAL)).any()
    assert torch.equal(corruption.inputs, tokens.masked_fill(masked, SPECIAL.mask))
    assert ((corruption.rates[md] >= 1e-3) & (corruption.rates[md] < 1)).all()
    assert (corruption.rates[~md] == 1).all()


def md_loss_by_hand(model, tokens, inputs, masked, rates):
    """Per-row MD loss from its definition: the masked targets' NLL under a bidirectional
    forward on the masked inputs, summed, over (t x targets per row)."""
    logits = model(inputs, BIDIRECTIONAL)
    nll = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="none"
    ).view(len(tokens), -1)
    masked_targets = masked[:, 1:]
    return (nll * masked_targets).sum(dim=1) / (rates * (tokens.shape[1] - 1))


def test_alpha_zero_is_exactly_the_md_loss(tiny_model):
    tokens = torch.randint(4, 24, (6, 10), generator=gen())
    corruption = corrupt_batch(tokens, np.zeros(6, bool), SPECIAL, gen(5), PAIR)
    out = dual_objective_loss(tiny_model, tokens, corruption, SPECIAL, PAIR)
    check_md_corruption(tokens, corruption, rows=list(range(6)))
    assert corruption.masked.any()  # something to predict
    expected = md_loss_by_hand(
        tiny_model, tokens, corruption.inputs, corruption.masked, corruption.rates
    ).mean()
    torch.testing.assert_close(out.loss, expected, rtol=1e-6, atol=0)


def test_mixed_batch_equals_each_objective_on_its_own_rows(tiny_model):
    tokens = torch.randint(4, 24, (4, 10), generator=gen())
    is_ar = np.array([True, False, True, False])
    recorder = FixedLogits(None)

    def model(inputs, prefix, docs=None):
        recorder.calls.append((inputs.clone(), prefix))
        return tiny_model(inputs, prefix, docs)

    corruption = corrupt_batch(tokens, is_ar, SPECIAL, gen(7), PAIR)
    out = dual_objective_loss(model, tokens, corruption, SPECIAL, PAIR)
    inputs, prefix = recorder.calls[0]
    assert len(recorder.calls) == 1  # one forward pass for both objectives
    assert prefix.tolist() == [CAUSAL, 10, CAUSAL, 10]
    ar_rows, md_rows = [0, 2], [1, 3]
    check_md_corruption(tokens, corruption, rows=md_rows)
    ar_alone = (
        F.cross_entropy(
            tiny_model(tokens[ar_rows])[:, :-1].reshape(-1, 24),
            tokens[ar_rows, 1:].reshape(-1),
            reduction="none",
        )
        .view(2, 9)
        .mean(dim=1)
    )
    torch.testing.assert_close(out.sequence_losses[ar_rows], ar_alone, atol=1e-5, rtol=1e-5)
    # MD rows alone: their masked inputs in a batch of their own, bidirectional.
    md_alone = md_loss_by_hand(
        tiny_model,
        tokens[md_rows],
        corruption.inputs[md_rows],
        corruption.masked[md_rows],
        corruption.rates[md_rows],
    )
    torch.testing.assert_close(out.sequence_losses[md_rows], md_alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.loss, out.sequence_losses.mean())


def test_micro_batches_see_the_same_corruption_and_gradient(tiny_model):
    tokens = torch.randint(4, 24, (8, 10), generator=gen())
    is_ar = first_sequence_flags(0.5, 0, 8)
    corruption = corrupt_batch(tokens, is_ar, SPECIAL, gen(3), PAIR)
    whole = dual_objective_loss(tiny_model, tokens, corruption, SPECIAL, PAIR)
    (whole_grad,) = torch.autograd.grad(whole.loss, tiny_model.embed.weight)
    grads, losses = [], []
    for start in (0, 4):
        part = dual_objective_loss(
            tiny_model, tokens[start : start + 4], corruption.rows(start, start + 4), SPECIAL, PAIR
        )
        grads.append(torch.autograd.grad(part.loss, tiny_model.embed.weight)[0])
        losses.append(part.sequence_losses)
    torch.testing.assert_close(torch.cat(losses), whole.sequence_losses, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grads[0] + grads[1], whole_grad, atol=1e-6, rtol=1e-5)


def test_document_ids():
    tokens = torch.tensor([[5, 6, 2, 7, 8, 2, 9]])
    assert document_ids(tokens, eos_id=2).tolist() == [[0, 0, 0, 1, 1, 1, 2]]
    # A masked eos does not split: the attention never reveals a hidden boundary.
    masked = torch.tensor([[5, 6, 3, 7, 8, 2, 9]])
    assert document_ids(masked, eos_id=2).tolist() == [[0, 0, 0, 0, 0, 0, 1]]


def test_a_third_objective_plugs_in_through_the_registry(tmp_path, monkeypatch):
    import pandas as pd

    from dualsweep import schema
    from dualsweep.config import ConfigError, run_key
    from dualsweep.objectives import registry
    from dualsweep.training import train

    from .helpers import tiny_run_config

    config = tiny_run_config(alpha=0.5, objectives=["ar", "mlm"], eval_interval=0)
    with pytest.raises(
        ConfigError, match=r"^objective\.objectives: unknown objective 'mlm' \(registered: ar, md\)"
    ):
        train(config, tmp_path / "unregistered", log=lambda m: None)
    assert not (tmp_path / "unregistered").exists()
    # Restored afterwards: the registry, and its torch-free half in the schema.
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(schema, "OBJECTIVE_COLUMNS", dict(schema.OBJECTIVE_COLUMNS))
    mlm = register(fixed_rate_mlm())
    summary = train(config, tmp_path / "run", log=lambda m: None)
    assert summary.status == "finished", summary.error
    curve = pd.read_parquet(tmp_path / "run" / "curve.parquet")
    assert list(curve.columns) == list(
        curve_columns((AR.columns, mlm.columns))
    )  # no MD column: the run trained AR and MLM
    assert {"train_mlm_loss", "held_out_mlm_loss", "held_out_mlm_loss_stderr"} <= set(curve)
    trained = curve.dropna(subset=["train_loss"])
    assert trained["train_mlm_loss"].notna().all() and trained["train_ar_loss"].notna().all()
    row = pd.read_parquet(tmp_path / "run" / "summary.parquet").iloc[0]
    assert (
        math.isfinite(row["final_held_out_mlm_loss"]) and row["final_held_out_mlm_loss_stderr"] > 0
    )
    # Masking 15% of the tokens leaves more context than MD's average 50%: a lower loss than
    # log V (uniform) after training, like the AR loss.
    assert row["final_held_out_mlm_loss"] < math.log(config.model.vocab_size)
    assert run_key(config) != run_key(config.replace(objectives=["ar", "md"]))


def test_the_scoring_modes_of_the_registry_are_the_schemas():
    # The torch-free list the config and the command line check against is what the
    # registry's scoring objectives give.
    from dualsweep.evaluate.scoring import scoring_modes
    from dualsweep.schema import SCORING_MODES

    assert scoring_modes() == tuple(SCORING_MODES) == ("ar", "md", "prefix")


def test_an_objective_that_scores_adds_its_mode(monkeypatch, request):
    from dualsweep import schema
    from dualsweep.config import ConfigError, run_config_from_dict, to_plain
    from dualsweep.evaluate.scoring import scoring_mode, scoring_modes
    from dualsweep.objectives import registry

    from .helpers import tiny_run_config

    class SecondAR(registry.Autoregressive):
        name = "ar2"
        columns = ObjectiveColumns("ar2", bound=False, estimated=False)

    # Restored afterwards: the registry, and the torch-free lists in place (importers hold them).
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(schema, "OBJECTIVE_COLUMNS", dict(schema.OBJECTIVE_COLUMNS))
    monkeypatch.setattr(schema, "CAUSAL_OBJECTIVES", set(schema.CAUSAL_OBJECTIVES))
    saved = list(schema.SCORING_MODES)
    request.addfinalizer(lambda: schema.SCORING_MODES.__setitem__(slice(None), saved))
    raw = to_plain(tiny_run_config())
    raw["evaluation"]["modes"] = ["ar", "ar2"]
    with pytest.raises(ConfigError, match=r"evaluation.modes\[1\]: must be one of"):
        run_config_from_dict(raw)
    registry.register(SecondAR())
    assert run_config_from_dict(raw).evaluation.modes == ("ar", "ar2")
    assert scoring_modes() == ("ar", "md", "prefix", "ar2")
    rows = scoring_mode("ar2").rows([5, 6], [7], mask_id=3, span=1)
    assert [(r.tokens, r.targets) for r in rows] == [([5, 6, 7], [2])]  # read as ar reads


def test_two_random_objectives_draw_for_their_own_rows_and_held_out_sets():
    # (mlm, md): both replace tokens, so the batch's corruption merges two draws; on the
    # held-out set each has its own generator, and MD's draws do not depend on its partner.
    tokens = torch.randint(4, 24, (6, 12), generator=gen())
    is_first = np.array([True, False, True, False, True, False])
    pair = (fixed_rate_mlm(), MD)
    corruption = corrupt_batch(tokens, is_first, SPECIAL, gen(3), pair)
    mlm, md = torch.from_numpy(is_first), torch.from_numpy(~is_first)
    assert torch.equal(corruption.inputs, tokens.masked_fill(corruption.masked, SPECIAL.mask))
    assert not (corruption.masked & ~maskable_positions(tokens, SPECIAL)).any()
    assert (corruption.rates[mlm] == pair[0].rate).all()
    assert ((corruption.rates[md] >= 1e-3) & (corruption.rates[md] < 1)).all()

    model = FixedLogits(torch.zeros(6, 12, 24))
    both = held_out_losses(model, tokens, SPECIAL, pair, draws=2, seed=0, batch_size=6)
    alone = held_out_losses(model, tokens, SPECIAL, PAIR, draws=2, seed=0, batch_size=6)
    assert both.values["held_out_md_elbo"] == alone.values["held_out_md_elbo"]
    assert set(both.values) == {
        "held_out_mlm_loss",
        "held_out_mlm_loss_stderr",
        "held_out_md_elbo",
        "held_out_md_elbo_stderr",
    }


def test_the_chunked_cross_entropy_equals_the_whole_one_with_its_gradients():
    """The chunked head + cross-entropy computes the same per-position NLL and gradients as
    the whole-logits path (only the matmul blocking differs), for a chunk size that divides
    neither T nor B * T, and through the training loss of a mixed batch."""
    from dualsweep.objectives import chunked_next_token_nll, corrupt_batch, dual_objective_loss

    from .helpers import tiny_run_config

    config = tiny_run_config()
    B, T = 6, config.model.seq_len
    tokens = torch.randint(
        4, config.model.vocab_size, (B, T), generator=torch.Generator().manual_seed(3)
    )
    torch.manual_seed(0)
    model = Transformer(config.model)

    features = model.features(tokens)
    whole = next_token_nll(model.head(features), tokens)
    chunked = chunked_next_token_nll(features, model.head.weight, tokens, chunk_tokens=37)
    assert chunked.shape == (B, T - 1)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)

    is_first = np.array([True, False, True, False, False, True])
    corruption = corrupt_batch(
        tokens, is_first, SPECIAL, torch.Generator().manual_seed(4), (AR, MD)
    )
    grads = []
    for chunk in (0, 37):
        model.zero_grad()
        loss = dual_objective_loss(
            model, tokens, corruption, SPECIAL, (AR, MD), loss_chunk_tokens=chunk
        )
        loss.loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.slow  # torch.compile on the CPU: seconds of compilation
@pytest.mark.parametrize("chunk_tokens", [0, 37])
def test_the_compiled_head_and_cross_entropy_equal_the_eager_ones(chunk_tokens):
    from dualsweep.objectives import chunked_next_token_nll

    torch.manual_seed(0)
    features = torch.randn(2, 24, 16, requires_grad=True)
    head = torch.randn(50, 16, requires_grad=True)
    tokens = torch.randint(0, 50, (2, 24))
    results = []
    for compiled in (False, True):
        nll = chunked_next_token_nll(features, head, tokens, chunk_tokens, compiled=compiled)
        grads = torch.autograd.grad(nll.sum(), (features, head))
        results.append((nll.detach(), *grads))
    for eager, compiled in zip(*results, strict=True):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
