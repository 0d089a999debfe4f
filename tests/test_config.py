"""Configs: loading, validation messages, overrides, sweep files, run keys.

Long because it checks every declared field rule (bounds, unique names, ranges, identity) and
loads every file in sweeps/, as the style guide asks of configs.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from pathlib import Path

import pytest
import yaml

from dualsweep.config import (
    SECTIONS,
    ConfigError,
    RunConfig,
    field_docs,
    flat_fields,
    load_run_config,
    load_sweep,
    run_config_from_dict,
    run_key,
)
from dualsweep.config.fields import SEED, Bound, Unique
from dualsweep.config.run import NOT_IDENTITY
from dualsweep.config.sweep import Resources, SearchConfig, SweepConfig

from .helpers import REPO


def test_every_field_has_a_docstring_and_a_unique_name():
    names = []
    for cls in (*SECTIONS.values(), RunConfig, SweepConfig, Resources, SearchConfig):
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(field_docs(cls)) == fields, cls.__name__
    for cls in SECTIONS.values():
        names += [f.name for f in dataclasses.fields(cls)]
    # Unique names are what lets Parquet columns and --set use plain field names.
    assert len(names) == len(set(names))


def _rules(kind: type) -> list:
    """(section, class, field, rule) for each rule of type `kind` in the sections' metadata."""
    return [
        pytest.param(section, cls, f, rule, id=f"{f.name}-{rule.why}")
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
        for rule in f.metadata.get("checks", ())
        if isinstance(rule, kind)
    ]


def _edges(rule: Bound, integer: bool) -> list[tuple[float, float]]:
    """(just outside, at the edge) for each end of the range: the bound itself if closed,
    else the nearest value inside (the next integer, or the next float)."""
    if integer:
        step = lambda x, d: x + d  # noqa: E731
    else:
        step = lambda x, d: math.nextafter(x, d * math.inf)  # noqa: E731
    edges = []
    for end, is_open, out in ((rule.low, rule.low_open, -1), (rule.high, rule.high_open, 1)):
        if end is not None:
            end = end if integer else float(end)
            edges.append((end, step(end, -out)) if is_open else (step(end, out), end))
    return edges


@pytest.mark.parametrize("section, cls, f, rule", _rules(Bound))
def test_every_bound_refuses_just_outside_and_accepts_its_edge(section, cls, f, rule):
    tp = typing.get_type_hints(cls)[f.name]
    if typing.get_origin(tp) is tuple:  # each value of a tuple: vary the last one
        tp = typing.get_args(tp)[0]
        as_value = lambda v: (*f.default[:-1], v)  # noqa: E731
    else:
        as_value = lambda v: v  # noqa: E731
    edges = _edges(rule, tp is int)
    assert edges
    for outside, edge in edges:
        # Through the loader, as a user meets it: the field's dotted path, the rule, the value.
        got = re.escape(repr(as_value(outside)))
        message = rf"^{section}\.{f.name}: {re.escape(rule.why)} \(got {got}\)$"
        with pytest.raises(ConfigError, match=message):
            run_config_from_dict({section: {f.name: as_value(outside)}})
        try:  # a check across fields may still object to the edge, but not this rule
            cls(**{f.name: as_value(edge)})
        except ConfigError as e:
            assert not str(e).startswith(f"{f.name}: {rule.why}"), e
    if rule.integer:
        with pytest.raises(ConfigError, match=rf"^{f.name}: {re.escape(rule.why)} "):
            cls(**{f.name: as_value(edges[0][1] + 0.5)})


@pytest.mark.parametrize("section, cls, f, rule", _rules(Unique))
def test_every_unique_field_refuses_a_repeat(section, cls, f, rule):
    # An empty default: any item (for plugins, a module that imports: they are imported first).
    item = f.default[0] if f.default else {"plugins": "json"}.get(f.name, "arc_easy")
    repeated = (item, item)
    with pytest.raises(ConfigError, match=rf"^{section}\.{f.name}: {re.escape(rule.why)} "):
        run_config_from_dict({section: {f.name: repeated}})
    cls(**{f.name: f.default})


def test_every_number_field_declares_its_range():
    # These two are checked against other fields in their section's __post_init__.
    explicit = {"micro_batch_size", "checkpoint_interval"}
    for cls in SECTIONS.values():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] in (int, float) or f.name == "betas":
                assert bool(f.metadata.get("checks")) != (f.name in explicit), f.name


def test_rules_and_identity_metadata_combine():
    assert (NOT_IDENTITY | SEED) == (SEED | NOT_IDENTITY) == {**NOT_IDENTITY, **SEED}
    not_identity = {
        f.name
        for cls in SECTIONS.values()
        for f in dataclasses.fields(cls)
        if not f.metadata.get("identity", True)
    }
    assert not_identity == {
        "cache_dir",
        "plugins",
        "micro_batch_size",
        "loader_workers",
        "loss_chunk_tokens",
        "loggers",
        "progress_bar",
        "checkpoint_interval",
        "checkpoint_minutes",
        "wandb_project",
        "wandb_group",
        "tasks",
        "modes",
        "md_mask_span",
        "task_items",
        "task_seed",
        "bootstrap_samples",
        "lm_eval_tasks",
        "lm_eval_include_path",
        "lm_eval_limit",
        "lm_eval_num_fewshot",
    }
    # Committed results are found by run key: the default config's key must never drift.
    assert run_key(RunConfig()) == "8bdeb9268d3163b2"


@pytest.mark.parametrize(
    "raw, field, value",
    [
        ({"objective": {"alpha": 1.5}}, "objective.alpha", "1.5"),
        ({"objective": {"alpha": -0.1}}, "objective.alpha", "-0.1"),
        ({"data": {"repetitions": 0}}, "data.repetitions", "0"),
        ({"data": {"repetitions": 2.5}}, "data.repetitions", "2.5"),
        ({"data": {"repetitions": "many"}}, "data.repetitions", "many"),
        ({"model": {"d_model": "wide"}}, "model.d_model", "wide"),
        ({"model": {"tie_embeddings": "yes"}}, "model.tie_embeddings", "yes"),
        ({"model": {"d_modle": 64}}, "model.d_modle", "did you mean 'd_model'"),
        ({"modle": {}}, "modle", "did you mean 'model'"),
        ({"model": {"n_heads": 3}}, "model.n_heads", "3"),
        ({"optim": {"optimizer": "sgd"}}, "optim.optimizer", "sgd"),
        ({"optim": {"betas": [0.9]}}, "optim.betas", "0.9"),
        ({"train": {"loggers": ["csv", "print"]}}, "train.loggers[1]", "print"),
        ({"data": {"source": "jsonl"}}, "data.path", "required"),
        ({"train": {"seed": -1}}, "train.seed", "-1"),
        ({"data": {"order_seed": 2**32}}, "data.order_seed", str(2**32)),
        ({"model": {"vocab_size": 100}}, "model.vocab_size", "100"),
        ({"train": {"micro_batch_size": 5}}, "train.micro_batch_size", "5"),
        ({"train": {"checkpoint_interval": 15}}, "train.checkpoint_interval", "15"),
        ({"evaluation": {"modes": ["ar", "pll"]}}, "evaluation.modes[1]", "pll"),
        ({"evaluation": {"tasks": ["hellaswag"]}}, "evaluation.tasks", "hellaswag"),
    ],
)
def test_errors_name_the_field_and_the_value(raw, field, value):
    with pytest.raises(ConfigError) as info:
        run_config_from_dict(raw)
    message = str(info.value)
    assert message.startswith(field + ":"), message
    assert value in message


def test_budget_too_small_for_one_batch_at_that_repetition():
    # 16 x 128 = 2048 tokens per batch; 65536 / 64 = 1024 unique tokens: less than a batch.
    raw = {"train": {"token_budget": 65536, "batch_size": 16}, "model": {"seq_len": 128}}
    run_config_from_dict({**raw, "data": {"repetitions": 32}})  # 2048: exactly one batch
    with pytest.raises(
        ConfigError, match=r"^data\.repetitions: R=64 leaves token_budget / R = 1024"
    ):
        run_config_from_dict({**raw, "data": {"repetitions": 64}})
    with pytest.raises(
        ConfigError, match=r"^train\.token_budget: 1000 tokens is less than one batch"
    ):
        run_config_from_dict({"train": {"token_budget": 1000}})


def test_small_vocabularies_are_fine_for_token_shards():
    config = run_config_from_dict(
        {"model": {"vocab_size": 100}, "data": {"source": "shards", "path": "x", "shard_eos_id": 0}}
    )
    assert config.model.vocab_size == 100


def test_numbers_as_yaml_leaves_them():
    # PyYAML reads 2e-3 as a string and users write the paper's alphas as fractions.
    config = run_config_from_dict(
        yaml.safe_load(
            "objective: {alpha: 63/64}\noptim: {lr: 2e-3}\ntrain: {token_budget: 1.0e+6, precision: 32}"
        )
    )
    assert config.train.precision == "32"  # the YAML integer 32 is the precision "32"
    assert config.objective.alpha == 63 / 64
    assert config.optim.lr == 0.002
    assert config.train.token_budget == 1_000_000


def test_derived_sizes():
    config = run_config_from_dict(
        {
            "model": {"seq_len": 100},
            "train": {"token_budget": 10_050, "batch_size": 4},
            "data": {"repetitions": 3},
        }
    )
    assert config.steps == 25  # 10050 // 400
    assert config.tokens == 10_000
    assert config.unique_sequences == 33  # 10050 // 3 = 3350 tokens -> 33 whole sequences
    assert config.unique_tokens == 3300
    assert abs(config.unique_tokens - 10_050 / 3) < 100  # to within one sequence


def test_overrides_by_plain_or_dotted_name(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {d_model: 64, n_heads: 4}\n")
    config = load_run_config(path, {"alpha": "1/4", "data.repetitions": 8, "d_model": 32})
    assert (config.objective.alpha, config.data.repetitions, config.model.d_model) == (0.25, 8, 32)
    with pytest.raises(ConfigError, match="^nonsense: no such config field"):
        load_run_config(path, {"nonsense": 1})
    with pytest.raises(ConfigError, match=r"^objective\.alpha: must be in \[0, 1\] \(got 2\.0\)"):
        load_run_config(path, {"alpha": 2})


def test_replace_revalidates():
    config = RunConfig()
    assert config.replace(alpha=0.5).objective.alpha == 0.5
    assert config.objective.alpha == 1.0  # frozen: the original is untouched
    with pytest.raises(ConfigError, match="objective.alpha"):
        config.replace(alpha=3)


def test_run_key_tracks_identity_not_presentation():
    config = RunConfig()
    assert run_key(config) == run_key(RunConfig())
    assert run_key(config.replace(alpha=0.5)) != run_key(config)
    assert run_key(config.replace(seed=1)) != run_key(config)
    assert run_key(config.replace(progress_bar=False)) == run_key(config)
    assert run_key(config.replace(loggers=("csv", "tensorboard"))) == run_key(config)


def test_flat_fields_round_trip():
    config = RunConfig().replace(alpha=0.75, repetitions=4)
    flat = flat_fields(config)
    assert flat["alpha"] == 0.75 and flat["repetitions"] == 4
    assert RunConfig().replace(**flat) == config


# The held-out settings before they had their own section: how run folders' config.yaml and
# older sweep files still write them.
OLD_LAYOUT = {
    "data": {"validation_sequences": 8, "repetitions": 2},
    "objective": {"md_eval_draws": 3, "held_out_seed": 5, "alpha": 0.5},
    "train": {"eval_interval": 7, "seed": 1},
}
NEW_LAYOUT = {
    "data": {"repetitions": 2},
    "objective": {"alpha": 0.5},
    "train": {"seed": 1},
    "held_out": {
        "validation_sequences": 8,
        "md_eval_draws": 3,
        "held_out_seed": 5,
        "eval_interval": 7,
    },
}


def test_held_out_fields_moved_section_but_keep_their_run_key():
    config = run_config_from_dict(NEW_LAYOUT)
    assert config.held_out.validation_sequences == 8 and config.held_out.eval_interval == 7
    assert config.held_out.md_eval_draws == 3 and config.held_out.held_out_seed == 5
    # The run key hashes them under their old dotted names: this is the key the same run had
    # before the move (computed then), so finished runs and committed results are still found.
    assert run_key(config) == "2f413019aa11806e"
    flat = flat_fields(config)  # the Parquet columns keep their plain names
    assert (flat["validation_sequences"], flat["md_eval_draws"]) == (8, 3)
    assert (flat["held_out_seed"], flat["eval_interval"]) == (5, 7)
    # Overrides by plain name find the new section.
    assert config.replace(md_eval_draws=2).held_out.md_eval_draws == 2
    assert RunConfig().replace(validation_sequences=8).held_out.validation_sequences == 8


def test_old_layout_loads_as_the_new(tmp_path):
    old = run_config_from_dict(OLD_LAYOUT)
    assert old == run_config_from_dict(NEW_LAYOUT)
    assert run_key(old) == run_key(run_config_from_dict(NEW_LAYOUT))
    assert OLD_LAYOUT["data"] == {"validation_sequences": 8, "repetitions": 2}  # not modified
    # A run folder's config.yaml, with overrides by plain or old dotted name.
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(OLD_LAYOUT))
    assert load_run_config(path) == old
    overridden = load_run_config(path, {"validation_sequences": 4, "train.eval_interval": 2})
    assert (overridden.held_out.validation_sequences, overridden.held_out.eval_interval) == (4, 2)
    # A sweep file's base, inline or by path, with base_overrides by plain name.
    sweep = f"name: s\nbase: {yaml.safe_dump(OLD_LAYOUT, default_flow_style=True)}"
    sweep += "base_overrides: {md_eval_draws: 6}\npoints: [[1, 1]]\n"
    base = load_sweep(_sweep(tmp_path, sweep)).base
    assert base == old.replace(md_eval_draws=6)
    companion = tmp_path / "companion.yaml"
    companion.write_text("name: c\nbase: sweep.yaml\npoints: [[1, 1]]\n")
    assert load_sweep(companion).base == base


def test_a_moved_field_set_in_both_places_is_an_error(tmp_path):
    raw = {"data": {"validation_sequences": 8}, "held_out": {"validation_sequences": 16}}
    message = (
        r"^held_out\.validation_sequences: also set as data\.validation_sequences .*"
        r"got 16 and 8"
    )
    with pytest.raises(ConfigError, match=message):
        run_config_from_dict(raw)
    base = yaml.safe_dump(raw, default_flow_style=True)
    sweep = _sweep(tmp_path, f"name: s\nbase: {base}points: [[1, 1]]\n")
    with pytest.raises(
        ConfigError, match=r"^base\.held_out\.validation_sequences: also set as base\.data"
    ):
        load_sweep(sweep)


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sweep_file_loads(path):
    sweep = load_sweep(path)
    assert sweep.name == path.stem
    trials = sweep.trials()
    assert len(trials) == len(sweep.points) * len(sweep.seeds)
    assert len({run_key(t) for t in trials}) == len(trials)
    # --config accepts a sweep file: its base run config.
    assert load_run_config(path) == sweep.base


def test_smoke_sweep_points():
    sweep = load_sweep(REPO / "sweeps" / "smoke.yaml")
    assert [(p.alpha, p.repetitions) for p in sweep.points] == [
        (1, 1),
        (0, 1),
        (0.5, 4),
        (15 / 16, 16),
    ]


def _sweep(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


BASE = "base: {train: {token_budget: 65536, batch_size: 4}, model: {seq_len: 64}}\n"


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "name: s\n" + BASE + "grid: {alpha: [1.5], repetitions: [1]}",
            r"^grid\.alpha\[0\]: alpha must be in \[0, 1\] \(got 1\.5\)",
        ),
        ("name: s\n" + BASE + "points: [[0.5, 0]]", r"^points\[0\]\.repetitions: .*\(got 0\)"),
        (
            "name: s\n" + BASE + "points: [[0.5, 2], {alpha: 1/2, repetitions: 2}]",
            r"^points\[1\]: is listed twice \(also points\[0\]\)",
        ),
        (
            "name: s\n" + BASE + "points: [[0.5, 2]]\nretires: 2",
            r"^retires: unknown sweep field; did you mean 'retries'\?",
        ),
        (
            "name: s\n" + BASE + "points: [[0.5, 1024]]",
            r"^points\[0\] \(alpha=0\.5, repetitions=1024\): data\.repetitions",
        ),
        ("name: s\nbase: missing.yaml\npoints: [[0.5, 2]]", r"^base: base config file not found"),
        ("name: s\n" + BASE, r"^points: a sweep needs `grid`"),
        (BASE + "points: [[1, 1]]", r"^name: required field is missing"),
    ],
)
def test_bad_sweep_files(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(_sweep(tmp_path, text))


def test_sweep_seeds_default_to_the_base_seed(tmp_path):
    sweep = load_sweep(_sweep(tmp_path, "name: s\nbase: {train: {seed: 7}}\npoints: [[1, 1]]\n"))
    assert sweep.seeds == (7,) and sweep.trials()[0].train.seed == 7


def test_a_cuda_sweep_must_reserve_gpus(tmp_path):
    text = "name: s\nbase: {train: {device: cuda}}\npoints: [[1, 1]]\nresources: {cpu: 1, gpu: 0}\n"
    with pytest.raises(
        ConfigError, match=r"^resources\.gpu: is 0 but base\.train\.device is 'cuda'"
    ):
        load_sweep(_sweep(tmp_path, text))


def test_sweep_base_from_a_relative_path(tmp_path):
    (tmp_path / "base.yaml").write_text("objective: {alpha: 0.5}\n")
    sweep = load_sweep(
        _sweep(tmp_path, "name: s\nbase: base.yaml\ngrid: {alpha: [0, 1], repetitions: [1, 2]}\n")
    )
    assert len(sweep.points) == 4
    assert [t.objective.alpha for t in sweep.trials()] == [0, 0, 1, 1]


def test_untiled_dims_names_the_widths_off_a_multiple_of_64():
    from dualsweep.config import ModelConfig

    assert (
        ModelConfig(d_model=1024, n_heads=16, ffn_hidden=3584, vocab_size=51200).untiled_dims()
        == {}
    )
    model = ModelConfig(d_model=1024, n_heads=16, ffn_hidden=3554, vocab_size=50257)
    assert model.untiled_dims() == {"ffn_hidden": 3554, "vocab_size": 50257}
    assert model.untiled_dims(multiple=2) == {"vocab_size": 50257}
    assert ModelConfig(d_model=120, n_heads=10, ffn_hidden=128, vocab_size=64).untiled_dims() == {
        "d_model": 120,
        "head_dim": 12,
    }


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ("{workers: 0}", r"^resources\.workers: must be a positive integer \(got 0\)"),
        (
            "{workers: 3}",
            r"^resources\.workers: must divide base\.train\.batch_size \(16\).*\(got 3\)",
        ),
        (
            "{gpu: 0.5, workers: 2}",
            r"^resources\.gpu: each data-parallel worker needs whole GPUs .*got 0\.5",
        ),
    ],
)
def test_bad_data_parallel_resources(tmp_path, resources, message):
    text = (
        f"name: s\nbase: {{train: {{batch_size: 16}}}}\npoints: [[1, 1]]\nresources: {resources}\n"
    )
    with pytest.raises(ConfigError, match=message):
        load_sweep(_sweep(tmp_path, text))


def test_a_data_parallel_trial_reserves_its_workers_and_a_sliver():
    from dualsweep.config import Resources

    assert Resources(cpu=2, gpu=1).per_trial() == {"CPU": 2, "GPU": 1}
    assert Resources(cpu=8, gpu=1, workers=4).per_trial() == {"CPU": pytest.approx(32.01), "GPU": 4}


# -- The sweep file's sections: the same declared rules as a run config's ---------------------

SEARCH = {"repetitions": [1, 2], "trials_per_repetition": 2}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "a/b"}, "name: must be a non-empty name without slashes or spaces (got 'a/b')"),
        ({"name": ".hidden"}, "name: must be a non-empty name without slashes or spaces"),
        ({"seeds": []}, "seeds: must list at least one seed (got ())"),
        ({"seeds": [0, 0]}, "seeds: lists a seed twice (got (0, 0))"),
        ({"seeds": [0, 2**32]}, "seeds[1]: must be in [0, 2^32) (got 4294967296)"),
        ({"seeds": [-1]}, "seeds[0]: must be in [0, 2^32) (got -1)"),
        ({"max_concurrent_trials": -1}, "max_concurrent_trials: must be >= 0 (got -1)"),
        ({"retries": -1}, "retries: must be >= 0 (got -1)"),
        ({"resources": {"cpu": 0}}, "resources.cpu: must be positive (got 0.0)"),
        ({"resources": {"gpu": -1}}, "resources.gpu: must be >= 0 (got -1.0)"),
        ({"search": {**SEARCH, "repetitions": []}}, "search.repetitions: must list at least one R"),
        (
            {"search": {**SEARCH, "repetitions": [2, 0]}},
            "search.repetitions[1]: repetitions must be a positive integer (got 0)",
        ),
        (
            {"search": {**SEARCH, "seed": 2**31}},
            "search.seed: must be in [0, 2^31) (got 2147483648)",
        ),
        (
            {"search": {**SEARCH, "algorithm": "a-b"}},
            "search.algorithm: must be a searcher's name, e.g. optuna or suggest (got 'a-b')",
        ),
        ({"search": {**SEARCH, "round_size": 0}}, "search.round_size: must be >= 1 (got 0)"),
        (
            {"search": {**SEARCH, "sampler": "grid"}},
            "search.sampler: must be one of gp, tpe (got 'grid')",
        ),
        ({"points": [[1, 1], ["3/2", 2]]}, "points[1].alpha: alpha must be in [0, 1] (got 1.5)"),
        ({"zzz": 1}, "zzz: unknown sweep field; known: name, base, points, seeds,"),
    ],
)
def test_sweep_level_errors_name_the_field_and_the_value(tmp_path, change, message):
    raw = {"name": "s", "base": {"train": {"batch_size": 4}}, "points": [[1, 1]], **change}
    with pytest.raises(ConfigError) as info:
        load_sweep(_sweep(tmp_path, yaml.safe_dump(raw)))
    assert str(info.value).startswith(message)


def test_sweep_sections_check_themselves_when_built_in_python():
    from dualsweep.config import Point

    with pytest.raises(ConfigError, match=r"^workers: must be a positive integer \(got 1\.5\)$"):
        Resources(workers=1.5)
    with pytest.raises(ConfigError, match=r"^gpu: each data-parallel worker needs whole GPUs"):
        Resources(gpu=1.5, workers=2)
    assert Resources(gpu=1.5).per_trial() == {"CPU": 1.0, "GPU": 1.5}  # one worker: a share
    # A Literal annotation would check `sampler` only when read from YAML; the rule checks both.
    with pytest.raises(ConfigError, match=r"^sampler: must be one of gp, tpe \(got 'random'\)$"):
        SearchConfig(repetitions=(1,), trials_per_repetition=1, sampler="random")
    with pytest.raises(ConfigError, match=r"^repetitions\[2\]: repetitions must be a positive"):
        SearchConfig(repetitions=(1, 4, -2), trials_per_repetition=1)
    with pytest.raises(ConfigError, match=r"^alpha: alpha must be in \[0, 1\] \(got 1\.25\)$"):
        Point(1.25, 4)
    # Checks across fields run on every SweepConfig, a changed copy too.
    sweep = SweepConfig(name="s", base=RunConfig(), points=(Point(1.0, 1),))
    with pytest.raises(ConfigError, match=r"^seeds: lists a seed twice \(got \(3, 3\)\)$"):
        dataclasses.replace(sweep, seeds=(3, 3))
    with pytest.raises(ConfigError, match=r"^points\[1\] \(alpha=0\.5, repetitions=4096\): data"):
        dataclasses.replace(sweep, points=(Point(1.0, 1), Point(0.5, 4096)))
    search = SearchConfig(repetitions=(1,), trials_per_repetition=1, metric="score_nope")
    with pytest.raises(ConfigError, match=r"^search\.metric: must be one of final_held_out"):
        dataclasses.replace(sweep, search=search)


def test_every_number_field_of_a_sweep_declares_its_range():
    for cls in (Resources, SearchConfig, SweepConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if hints[f.name] in (int, float, tuple[int, ...]):
                assert f.metadata.get("checks"), f"{cls.__name__}.{f.name}"


def test_a_written_search_section_leaves_out_the_fields_at_their_default(tmp_path):
    from dualsweep.config import sweep_yaml

    raw = {"name": "s", "base": {}, "points": [[0.5, 1]], "search": {**SEARCH, "sampler": "tpe"}}
    sweep = load_sweep(_sweep(tmp_path, yaml.safe_dump(raw)))
    written = yaml.safe_load(sweep_yaml(sweep))
    # The required fields and the one set away from its default; no `algorithm: optuna`.
    assert written["search"] == {**SEARCH, "sampler": "tpe"}
    assert load_sweep(_sweep(tmp_path, sweep_yaml(sweep))) == sweep
    rounds = {**SEARCH, "algorithm": "suggest", "round_size": 3, "seed": 7}
    sweep = load_sweep(_sweep(tmp_path, yaml.safe_dump({**raw, "search": rounds})))
    assert yaml.safe_load(sweep_yaml(sweep))["search"] == rounds
