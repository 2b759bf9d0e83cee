"""Tests of evo.network.settings: the torch-free training settings, their checks and the fast schedule."""
from __future__ import annotations

import subprocess
import sys

import pytest

from evo.network.settings import SettingsError, TrainConfig, check_train_settings, parse_device


def test_settings_import_no_torch():
    code = ("import sys, evo.network, evo.network.settings; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_defaults_are_the_papers_recipe_and_valid():
    c = TrainConfig().validate()
    assert c.recipe == "paper" and c.batch_size == 50 and c.device == "auto"
    assert [c.lr_at(0.1, s) for s in (0, 100, 25599)] == [0.1, 0.1, 0.1]  # constant


@pytest.mark.parametrize("settings, name", [
    ({"batch_size": "abc"}, "batch_size"),
    ({"batch_size": -5}, "batch_size"),
    ({"batch_size": 2.5}, "batch_size"),
    ({"momentum": 1.5}, "momentum"),
    ({"weight_decay": -1}, "weight_decay"),
    ({"recipe": "slow"}, "recipe"),
    ({"augment": "yes"}, "augment"),
    ({"augment_mode": "wrap"}, "augment_mode"),
    ({"warmup": 2}, "warmup"),
    ({"label_smoothing": float("nan")}, "label_smoothing"),
    ({"checkpoint_every_steps": 0}, "checkpoint_every_steps"),
    ({"cuda_graph": "always"}, "cuda_graph"),
    ({"lr": 0}, "lr"),
    ({"lr": "fast"}, "lr"),
])
def test_wrong_types_and_ranges_name_the_setting_and_the_fix(settings, name):
    with pytest.raises(SettingsError) as e:
        check_train_settings(settings)
    msg = str(e.value)
    assert "\n" not in msg and name in msg and "fix:" in msg
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("text, parsed", [("auto", ("auto", None)), ("cpu", ("cpu", None)), ("cuda", ("cuda", None)),
                                          ("cuda:3", ("cuda", 3)), ("mps", ("mps", None))])
def test_one_device_parser_reads_every_form(text, parsed):
    assert parse_device(text) == parsed
    assert TrainConfig(device=text).validate().device == text


@pytest.mark.parametrize("text", ["tpu:7", "cuda:", "cuda:x", "cuda:-1", "CPU", " cpu", "", None, 0])
def test_one_device_parser_refuses_the_rest_in_every_caller(text):
    with pytest.raises(SettingsError, match="auto, cpu, cuda, cuda:N"):
        parse_device(text)
    with pytest.raises(SettingsError, match="device"):
        TrainConfig(device=text).validate()


def test_unknown_and_worker_set_settings_are_refused():
    with pytest.raises(SettingsError, match="unknown training settings 'batchsize'.*batch_size"):
        check_train_settings({"batchsize": 10})
    with pytest.raises(SettingsError, match="steps is set by the worker"):
        check_train_settings({"steps": 10})
    assert TrainConfig.from_dict({"steps": 10}).steps == 10  # the worker itself may set it


def test_a_population_train_dict_with_mutations_and_the_fast_recipe():
    c = check_train_settings({"recipe": "fast", "batch_size": 200, "mutations": {"weights": {}}})
    assert c.fast and c.batch_size == 200


def test_lr_is_the_rate_of_a_genome_without_one_and_refused_where_the_dna_has_its_own():
    import evo

    amoebanet, real2017 = evo.search_space("amoebanet"), evo.search_space("real2017")
    assert TrainConfig().lr == 0.1
    assert check_train_settings({"lr": 0.05}, amoebanet).lr == 0.05
    with pytest.raises(SettingsError, match="lr does nothing in search space 'real2017'.*fix: remove it"):
        check_train_settings({"lr": 0.05}, real2017)
    assert check_train_settings({"batch_size": 10}, real2017).lr == 0.1


def test_fast_schedule_is_the_one_specified():
    c = TrainConfig(recipe="fast", steps=100, warmup=0.2, final_lr=0.05, batch_size=100)
    # warm-up over W = 20 steps: (s + 1) / 20, reaching 1 at step 19
    assert c.lr_factor(0) == pytest.approx(1 / 20)
    assert c.lr_factor(9) == pytest.approx(10 / 20)
    assert c.lr_factor(19) == pytest.approx(1.0)
    # then linear from 1 at step 20 to final_lr at the last step, 99
    assert c.lr_factor(20) == pytest.approx(1.0)
    assert c.lr_factor(59.5) == pytest.approx(1.0 + (0.05 - 1.0) * 0.5)
    assert c.lr_factor(99) == pytest.approx(0.05)
    # the DNA's rate is the rate at batch 50: batch 100 doubles it
    assert c.lr_at(0.1, 19) == pytest.approx(0.2)
    assert c.lr_at(0.1, 99) == pytest.approx(0.2 * 0.05)
    # no warm-up
    assert TrainConfig(recipe="fast", steps=11, warmup=0.0, final_lr=0.0).lr_factor(5) == pytest.approx(0.5)


def test_ema_decay_forgets_the_start_of_short_trainings():
    c = TrainConfig(recipe="fast", ema=0.99)
    assert c.ema_decay(1) == pytest.approx(2 / 11)
    assert c.ema_decay(10_000) == 0.99


def test_the_evaluation_counts_two_passes_only_with_the_fast_recipes_flips():
    assert TrainConfig().eval_passes == 1
    assert TrainConfig(recipe="fast").eval_passes == 2
    assert TrainConfig(recipe="fast", tta=False).eval_passes == 1
    assert TrainConfig(recipe="paper", tta=True).eval_passes == 1


def _train_table() -> dict:
    """docs/format.md's table of the training settings: {setting: default as written}."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "format.md").read_text()
    section = text.split("## `config.json`'s `train`: the training settings", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {row.strip("|").split("|")[0].strip().strip("`"): row.strip("|").split("|")[1].strip().strip("`")
            for row in rows}


def test_the_format_documents_every_training_setting_with_its_default():
    import dataclasses
    import json

    from evo.network.settings import WORKER_SET

    table = _train_table()
    settings = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in WORKER_SET]
    assert sorted(table) == sorted(settings), "docs/format.md's train table and TrainConfig's settings differ"
    defaults = TrainConfig().to_dict()
    for name, written in table.items():
        assert json.loads(written) == defaults[name], f"{name}: docs/format.md says {written}, " \
                                                      f"TrainConfig has {defaults[name]!r}"
