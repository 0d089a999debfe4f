"""Trained models used afterwards: Hugging Face export, generation in both modes, and run
folders that stand alone (no corpus, no cache).

The run here is trained on a small text corpus in a temporary folder, so that "the corpus is
gone" is literal: the folder is copied elsewhere, the corpus and the cache deleted, and the
copy must still export, generate and score harness tasks.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from dualsweep.cli import main
from dualsweep.evaluate.loaded import load_run
from dualsweep.generation import Sampling, generate, generate_md

from .helpers import REPO, tiny_run_config, write_text_corpus

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, monkeypatch_module):
    """A finished run on a text corpus, with its own corpus cache (both deletable)."""
    from dualsweep.training import train

    root = tmp_path_factory.mktemp("use")
    monkeypatch_module.setenv("DUALSWEEP_CACHE", str(root / "cache"))
    corpus = write_text_corpus(root / "corpus", n_documents=200)
    config = tiny_run_config(alpha=0.5, source="text_dir", path=str(corpus), tie_embeddings=False)
    assert train(config, root / "run", log=lambda m: None).status == "finished"
    return root


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def alone(trained, tmp_path_factory):
    """The run folder copied elsewhere, its corpus and every cache gone."""
    copy = shutil.copytree(trained / "run", tmp_path_factory.mktemp("elsewhere") / "run")
    shutil.rmtree(trained / "corpus")
    shutil.rmtree(trained / "cache")
    return copy


@pytest.fixture(scope="module")
def exported(alone, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "hf"
    assert main(["export", str(alone), "--out", str(out)]) == 0
    return out


def test_the_export_loads_in_transformers_with_the_run_s_logits_and_ids(alone, exported):
    run = load_run(alone)
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(exported)
    ids = torch.randint(
        4, run.config.model.vocab_size, (3, 24), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        assert (hf(ids).logits - run.model(ids)).abs().max() < 1e-4  # causal: a stock Llama
        everywhere = torch.ones(3, 1, 24, 24, dtype=torch.bool)  # MD, as the model card says
        bidirectional = run.model(ids, 2**31 - 1)
        assert (hf(ids, attention_mask=everywhere).logits - bidirectional).abs().max() < 1e-4
    text = "document 7: alpha beta, gamma!  delta\nomega"
    assert tokenizer.encode(text) == run.tokenizer.encode(text).ids
    assert tokenizer.mask_token_id == run.special.mask == hf.config.mask_token_id
    card = (exported / "README.md").read_text()
    assert "| alpha (AR weight) | 0.5 |" in card and "mask_token_id" in card
    summary = json.loads((exported / "config.json").read_text())
    assert summary["architectures"] == ["LlamaForCausalLM"] and not summary["tie_word_embeddings"]


def test_an_export_never_writes_into_a_folder_of_other_files(alone, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["export", str(alone), "--out", str(tmp_path)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_greedy_generation_equals_transformers_greedy_decoding(alone, exported):
    run = load_run(alone)
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32).eval()
    prompt = "document 3: alpha"
    greedy = Sampling(temperature=0, max_new_tokens=12)
    (text,) = generate(run, [prompt], sampling=greedy)
    ids = torch.tensor([[run.special.eos, *run.tokenizer.encode(prompt).ids]])
    out = hf.generate(ids, do_sample=False, max_new_tokens=12, min_new_tokens=12, eos_token_id=None)
    reference = out[0, ids.shape[1] :].tolist()
    cut = reference.index(run.special.eos) if run.special.eos in reference else len(reference)
    assert text == run.tokenizer.decode(reference[:cut])


def test_generation_is_seeded_in_both_modes(alone, capsys):
    args = ["generate", str(alone), "--prompt", "document 1:", "--max-new-tokens", "10"]
    for mode in ("ar", "md"):
        outputs = []
        for _ in range(2):
            assert main([*args, "--mode", mode, "--seed", "7", "--steps", "4"]) == 0
            outputs.append(capsys.readouterr().out)
        assert outputs[0] == outputs[1] and outputs[0].startswith("document 1:")
    assert main([*args, "--seed", "8"]) == 0  # another seed, (almost surely) another text
    assert capsys.readouterr().out != outputs[0]


@pytest.mark.parametrize("order", ["confidence", "random"])
def test_masked_diffusion_fills_every_mask_within_its_steps(alone, order):
    run = load_run(alone)
    prompt = [run.special.eos, *run.tokenizer.encode("document 2:").ids]
    generator = torch.Generator().manual_seed(0)
    filled = []
    real = run.model.forward

    def counted(*args, **kwargs):  # each forward is one step
        filled.append(1)
        return real(*args, **kwargs)

    run.model.forward = counted
    sampling = Sampling(max_new_tokens=11, steps=3, order=order)
    new = generate_md(run.model, prompt, run.special, sampling, generator)
    assert len(new) == 11 and run.special.mask not in new and len(filled) <= 3
    assert not set(new) & {run.special.pad, run.special.bos}


def test_a_run_folder_alone_scores_harness_tasks_and_names_what_needs_the_corpus(alone, capsys):
    pytest.importorskip("lm_eval")
    include = REPO / "sweeps" / "lm_eval"
    args = ["lm-eval", str(alone), "--tasks", "idle_news", "--include-path", str(include)]
    assert main([*args, "--limit", "4"]) == 0
    assert "idle_news" in capsys.readouterr().out
    # The built-in tasks read held-out documents of the corpus: one line saying so.
    assert main(["evaluate", str(alone)]) == 2
    err = capsys.readouterr().err
    assert "the built-in tasks and held-out losses read the run's corpus" in err
    assert len(err.strip().splitlines()) == 1
