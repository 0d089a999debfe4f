"""Evaluation: choice scoring in three modes, multiple-choice summaries, built-in tasks, runs.

Long because each of the three scoring modes is checked against a hand computation on a real
model, and the lm-eval adapter and harness are tested here as well.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from dualsweep.config import ModelConfig
from dualsweep.evaluate.multiple_choice import evaluate_task, normalized_score, summarize
from dualsweep.evaluate.scoring import Score, fit_to_context, score_continuations
from dualsweep.evaluate.tasks import (
    Item,
    Task,
    TaskError,
    cloze_task,
    continuation_task,
    load_task,
    word_order_task,
)
from dualsweep.model import CAUSAL, Transformer, attention_mask
from dualsweep.special_tokens import SpecialTokens

SPECIAL = SpecialTokens(pad=0, bos=1, eos=2, mask=3)
V, T = 12, 16


class BagOfVisibleTokens(nn.Module):
    """logits at i = W[x_i] + the sum of U[x_k] over the other positions k that i may attend to."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.config = SimpleNamespace(seq_len=T)
        self.W = nn.Parameter(torch.randn(V, V, generator=g))
        self.U = nn.Parameter(0.5 * torch.randn(V, V, generator=g))

    def forward(self, tokens, prefix_lengths=CAUSAL, document_ids=None, at=None):
        B, n = tokens.shape
        if isinstance(prefix_lengths, int):
            prefix_lengths = torch.full((B,), min(prefix_lengths, n))
        visible = attention_mask(prefix_lengths, n, document_ids)[:, 0].float() * (1 - torch.eye(n))
        logits = self.W[tokens] + visible @ self.U[tokens]
        return logits if at is None else logits[at]


def reference_log_prob(model, context, continuation, mode, span=1):
    """The same score written out with loops over positions and plain floats."""
    W, U = model.W.tolist(), model.U.tolist()
    tokens = [*context, *continuation]
    positions = list(range(len(context), len(tokens)))

    def log_softmax_at(inputs, q, prefix, target):
        logits = list(W[inputs[q]])
        for k in range(len(inputs)):
            if k != q and (k <= q or k < prefix):
                logits = [a + b for a, b in zip(logits, U[inputs[k]], strict=True)]
        top = max(logits)
        return logits[target] - top - math.log(sum(math.exp(v - top) for v in logits))

    if mode in ("ar", "prefix"):
        prefix = 0 if mode == "ar" else len(context)
        return sum(log_softmax_at(tokens, j - 1, prefix, tokens[j]) for j in positions)
    total, step = 0.0, span or len(positions)
    for start in range(0, len(positions), step):
        chunk = positions[start : start + step]
        masked = [SPECIAL.mask if j in chunk else t for j, t in enumerate(tokens)]
        total += sum(log_softmax_at(masked, j - 1, len(tokens), tokens[j]) for j in chunk)
    return total


PAIRS = [([2, 5, 6], [7, 8]), ([2, 9], [4, 10, 11]), ([2, 5, 6, 7, 8, 9], [10])]


@pytest.mark.parametrize("mode, span", [("ar", 1), ("prefix", 1), ("md", 1), ("md", 2), ("md", 0)])
def test_scores_equal_a_hand_computation(mode, span):
    model = BagOfVisibleTokens()
    # Batch size 2: rows of different lengths share a padded batch.
    scores = score_continuations(
        model, PAIRS, mode, mask_id=SPECIAL.mask, pad_id=SPECIAL.pad, batch_size=2, span=span
    )
    for (context, continuation), score in zip(PAIRS, scores, strict=True):
        assert score.n_tokens == len(continuation)
        assert score.log_prob == pytest.approx(
            reference_log_prob(model, context, continuation, mode, span), abs=1e-4
        )


def test_an_unknown_mode_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"^unknown mode 'pll' \(one of ar, md, prefix\)$"):
        score_continuations(BagOfVisibleTokens(), PAIRS, "pll", mask_id=3, pad_id=0)


def test_mode_semantics_on_a_transformer():
    torch.manual_seed(0)
    model = Transformer(
        ModelConfig(vocab_size=V, n_layers=2, d_model=16, n_heads=2, ffn_hidden=32, seq_len=T)
    ).eval()
    context, continuation = [2, 5, 6, 7], [8, 9]

    def score(mode, pairs):
        return [s.log_prob for s in score_continuations(model, pairs, mode, mask_id=3, pad_id=0)]

    ar, md, prefix = (score(m, [(context, continuation)])[0] for m in ("ar", "md", "prefix"))
    assert md != pytest.approx(ar, abs=1e-4)  # MD reads with the future in view
    assert prefix != pytest.approx(ar, abs=1e-4)  # the context sees its right side
    # ... but under prefix the continuation does not: the log-prob of its first token does
    # not depend on the second, so changing the second token changes only its own term.
    a, b = score("prefix", [(context, [8, 9]), (context, [8, 10])])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([context + [8, 9]]), len(context)), -1)[0]
    assert a - b == pytest.approx((log_probs[4, 9] - log_probs[4, 10]).item(), abs=1e-5)
    a, b = score(
        "md", [(context, [8, 9]), (context, [8, 10])]
    )  # MD: the first token sees the second
    with torch.no_grad():
        masked = torch.log_softmax(model(torch.tensor([context + [3, 9]]), 10**9), -1)[0]
    assert a - b != pytest.approx((masked[4, 9] - masked[4, 10]).item(), abs=1e-4)


def test_summary_by_hand():
    task = Task(
        "t", (Item("", ("a", "b"), 0), Item("", ("a", "b"), 1), Item("", ("a", "b", "c", "d"), 2))
    )
    # Picks: item 0 -> choice 0 (right), item 1 -> choice 0 (wrong), item 2 -> choice 2 (right).
    scores = [
        [Score(-1.0, 1, True), Score(-2.0, 1, False)],
        [Score(-1.0, 1, True), Score(-2.7, 3, False)],  # per token, choice 1 wins (-0.9 > -1.0)
        [Score(-5.0, 5, False), Score(-4.0, 1, False), Score(-0.5, 1, True), Score(-9.0, 1, False)],
    ]
    result = summarize(task, scores, length_normalized=False, bootstrap=200)
    chance = (1 / 2 + 1 / 2 + 1 / 4) / 3
    assert result.accuracy == pytest.approx(2 / 3) and result.chance == pytest.approx(chance)
    assert result.normalized_score == pytest.approx(100 * (2 / 3 - chance) / (1 - chance))
    per_token = summarize(task, scores, length_normalized=True, bootstrap=200)
    assert per_token.accuracy == pytest.approx(1.0)  # item 1 flips to choice 1
    assert normalized_score(chance, chance) == 0 and normalized_score(1.0, chance) == 100


def test_a_model_that_ignores_its_input_scores_chance():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = SimpleNamespace(seq_len=T)
            self.bias = nn.Parameter(torch.randn(V, generator=torch.Generator().manual_seed(1)))

        def forward(self, tokens, prefix_lengths=CAUSAL, document_ids=None, at=None):
            logits = self.bias.expand(*tokens.shape, V)
            return logits if at is None else logits[at]

    rng = np.random.default_rng(0)
    items = []
    for _ in range(400):
        choices = tuple(" ".join(map(str, rng.integers(4, V, size=3))) for _ in range(4))
        if len(set(choices)) == 4:
            items.append(Item(context="4 5", choices=choices, label=int(rng.integers(4))))
    task = Task("random", tuple(items))
    tokenizer = SimpleNamespace(
        encode=lambda text: SimpleNamespace(ids=[int(t) for t in text.split()])
    )
    results = evaluate_task(
        Constant(), tokenizer, SPECIAL, task, ["ar", "md", "prefix"], bootstrap=500
    )
    assert [r.mode for r in results] == ["ar", "md", "prefix"]
    for scoring in (r for result in results for r in (result.summed, result.per_token)):
        assert abs(scoring.normalized_score) < 3 * scoring.stderr, scoring
        # The bootstrap error matches the binomial one: 100 sqrt(p (1 - p) / n) / (1 - chance).
        binomial = 100 * math.sqrt(0.25 * 0.75 / len(items)) / 0.75
        assert scoring.stderr == pytest.approx(binomial, rel=0.2)


from .helpers import WORDS  # noqa: E402

DOCS = [  # 30 documents of six 10-word sentences, every word distinct
    " ".join(" ".join(f"w{i}_{s}_{j}" for j in range(10)) + "." for s in range(6))
    for i in range(30)
]


def test_builtin_tasks_are_seeded_and_come_from_the_given_documents():
    plain = [  # plain lower-case words, as cloze asks for
        " ".join(
            " ".join(WORDS[(i * 7 + s * 3 + j) % len(WORDS)] for j in range(10)) + "."
            for s in range(6)
        )
        for i in range(30)
    ]
    for build, docs in ((continuation_task, DOCS), (word_order_task, DOCS), (cloze_task, plain)):
        a, b = build(docs, n_items=50, seed=3), build(docs, n_items=50, seed=3)
        assert a == b and a != build(docs, n_items=50, seed=4)
    for item in continuation_task(DOCS, n_items=50, seed=0).items:
        true = item.context + item.choices[item.label]
        assert any(true in doc for doc in DOCS)  # context and true continuation are contiguous
        assert len(set(item.choices)) == 4
    items = word_order_task(DOCS, n_items=200, seed=0).items
    assert len(set(items)) == 200  # distinct sentence positions
    for item in items:
        right, wrong = item.choices[item.label], item.choices[1 - item.label]
        assert any(item.context + right in doc for doc in DOCS)  # contiguous held-out text
        assert not any(item.context + wrong in doc for doc in DOCS)
        assert len(item.context.split()) <= 8
        a, b, *tail = right.split()  # the pair, then the next word unless the sentence ended
        assert len(tail) <= 1 and wrong.split() == [b, a, *tail]


def test_cloze_asks_frequent_words_in_their_sentence():
    docs = [
        "the cat sat on the mat. a dog ran to the park. the end of the day is near.",
        "it is the best of all. we go to a shop and the shop is open. this is a test.",
    ] * 3
    task = cloze_task(docs, n_items=20, seed=1, vocabulary=6, n_choices=3)
    counts = {}
    for d in docs:
        for w in d.replace(".", " ").split():
            counts[w] = counts.get(w, 0) + 1
    assert all(len(item.choices) == 3 and len(set(item.choices)) == 3 for item in task.items)
    for item in task.items:
        right = item.choices[item.label]
        assert any(item.context + right in d for d in docs)
        words = [c.split()[0] for c in item.choices]
        # every candidate is one of the 6 most frequent words; the rest of the choice is shared
        top = sorted(counts, key=lambda w: (-counts[w], w))[:6]
        assert set(words) <= set(top)
        assert len({tuple(c.split()[1:]) for c in item.choices}) == 1
    with pytest.raises(TaskError, match="fewer than evaluation.task_items=1000"):
        cloze_task(docs, n_items=1000, seed=1)


def test_task_files(tmp_path):
    path = tmp_path / "task.jsonl"
    path.write_text(json.dumps({"context": "a", "choices": ["b", "c"], "label": 1}) + "\n")
    assert load_task(path) == Task("task", (Item("a", ("b", "c"), 1),))
    path.write_text(json.dumps({"context": "a", "choices": ["b"], "label": 0}) + "\n")
    with pytest.raises(
        TaskError, match=re.escape(f"{path}:1: choices must be a list of at least two")
    ):
        load_task(path)
    path.write_text("\n" + json.dumps({"context": "a", "choices": ["b", "c"], "label": 2}) + "\n")
    with pytest.raises(
        TaskError, match=re.escape(f"{path}:2: label must be an index into choices (got 2)")
    ):
        load_task(path)


def test_evaluate_a_trained_run(tmp_path, capsys):
    from dualsweep.cli import main
    from dualsweep.data.corpus import is_validation
    from dualsweep.data.sources import text_documents
    from dualsweep.evaluate.loaded import held_out_documents, load_run
    from dualsweep.training import train

    from .helpers import tiny_run_config

    config = tiny_run_config(task_items=40, bootstrap_samples=100)
    assert train(config, tmp_path / "run", log=lambda m: None).status == "finished"
    assert (tmp_path / "run" / "tokenizer.json").is_file()

    # The built-in tasks' documents are exactly the held-out ones, never training documents.
    documents = held_out_documents(load_run(tmp_path / "run"))
    held_out = [
        d
        for d in text_documents(config.data)
        if is_validation(d.encode(), config.data.validation_fraction)
    ]
    assert documents == held_out

    assert main(["evaluate", str(tmp_path / "run"), "--modes", "ar", "md"]) == 0
    out = capsys.readouterr().out
    assert "held-out AR loss" in out and "word_order" in out and "prefix" not in out
    import pandas as pd

    evals = pd.read_parquet(tmp_path / "run" / "evals.parquet")
    assert len(evals) == 2 * 2  # tasks x modes
    assert set(evals["strategy"]) == {"next_token", "pll"}
    assert (evals["n_items"] == 40).all()
    # AR accuracy recomputed without the scoring code: one unpadded causal forward per
    # choice, log-softmax over the whole vocabulary, summed at the choice's positions.
    from dualsweep.evaluate.multiple_choice import encode
    from dualsweep.evaluate.run import tasks_for

    run = load_run(tmp_path / "run")
    for task in tasks_for(run, config.evaluation)[:1]:  # continuation: one task suffices
        right = 0
        for item, pairs in zip(
            task.items, encode(run.tokenizer, run.corpus.special, task), strict=True
        ):
            scores = []
            for context, choice in pairs:
                context, choice = fit_to_context(context, choice, config.model.seq_len)
                tokens = torch.tensor([context + choice])
                with torch.no_grad():
                    log_probs = torch.log_softmax(run.model(tokens)[0].double(), dim=-1)
                positions = range(len(context), len(context) + len(choice))
                scores.append(sum(log_probs[j - 1, tokens[0, j]].item() for j in positions))
            right += int(np.argmax(scores)) == item.label
        row = evals[(evals["task"] == task.name) & (evals["mode"] == "ar")].iloc[0]
        # Batched scoring pads rows: float32 rounding may flip at most a near-tie.
        assert abs(row["accuracy"] * 40 - right) <= 1, (task.name, row["accuracy"], right)
        assert row["chance"] == pytest.approx(task.chance)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from dualsweep.training import train

    from .helpers import tiny_run_config

    run_dir = tmp_path_factory.mktemp("lm-eval") / "run"
    assert train(tiny_run_config(), run_dir, log=lambda m: None).status == "finished"
    return run_dir


def test_lm_eval_adapter_answers_each_request(trained_run):
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance

    from dualsweep.evaluate.lm_eval_adapter import DualSweepLM

    requests = [
        Instance("loglikelihood", {}, ("def f(x):", " return x"), 0),
        Instance("loglikelihood", {}, ("", "Return the value."), 1),
        Instance("loglikelihood", {}, ("The module", " provides"), 2),
    ]
    for mode in ("ar", "md", "prefix"):
        answers = DualSweepLM(run_dir=str(trained_run), mode=mode).loglikelihood(requests)
        assert len(answers) == 3
        assert all(
            isinstance(lp, float) and lp < 0 and isinstance(greedy, bool) for lp, greedy in answers
        )
    lm = DualSweepLM(run_dir=str(trained_run))
    # Rolling log-likelihood of a string is the AR score of its tokens after an eos.
    text = "Return a new list of the values."
    (rolling,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    (pair,) = lm.loglikelihood([Instance("loglikelihood", {}, ("", text), 0)])
    assert rolling == pytest.approx(pair[0], abs=1e-4)
    (generated,) = lm.generate_until(
        [Instance("generate_until", {}, ("def ", {"until": ["\n"], "max_gen_toks": 8}), 0)]
    )
    assert isinstance(generated, str) and "\n" not in generated


def test_lm_eval_harness_runs_a_local_task_offline(trained_run, tmp_path):
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    from dualsweep.evaluate.lm_eval_adapter import DualSweepLM

    items = tmp_path / "items.jsonl"
    items.write_text(
        "\n".join(
            json.dumps(
                {"context": f"Item {i}:", "choices": [" yes", " no", " maybe"], "label": i % 3}
            )
            for i in range(12)
        )
    )
    (tmp_path / "local.yaml").write_text(
        "task: dualsweep_local\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {items}\n"
        "test_split: test\noutput_type: multiple_choice\n"
        "doc_to_text: '{{context}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: '{{label}}'\n"
        "metric_list:\n  - metric: acc\n"
    )
    lm = DualSweepLM(run_dir=str(trained_run), mode="md")
    answered = []  # what lm-eval asked and what the adapter answered

    def recording(requests):
        answers = DualSweepLM.loglikelihood(lm, requests)
        answered.extend(zip(requests, answers, strict=True))
        return answers

    lm.loglikelihood = recording
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=["dualsweep_local"],
        task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
    )
    assert results["n-samples"]["dualsweep_local"]["effective"] == 12
    # lm-eval's accuracy is the share of items whose gold choice got the highest
    # log-likelihood: recomputed here from the adapter's own answers.
    assert len(answered) == 12 * 3
    best: dict[int, tuple[float, int]] = {}
    for request, (log_prob, _) in answered:
        if request.doc_id not in best or log_prob > best[request.doc_id][0]:
            best[request.doc_id] = (log_prob, request.idx)
    expected = sum(best[i][1] == i % 3 for i in range(12)) / 12
    assert results["results"]["dualsweep_local"]["acc,none"] == pytest.approx(expected)


def test_lm_eval_registration_is_explicit(trained_run):
    pytest.importorskip("lm_eval")
    code = (
        "import dualsweep.evaluate.lm_eval_adapter as a, lm_eval.api.registry as r;"
        "names = lambda: set(r.model_registry.keys());"
        "assert 'dualsweep' not in names();"
        "a.register(); a.register();"  # twice: idempotent
        "assert r.get_model('dualsweep') is a.DualSweepLM"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
