"""The experiment config and a population's creation and opening."""

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from evo.population import (
    FORMAT_VERSION,
    Config,
    ConfigError,
    FormatVersionError,
    NotAPopulationError,
    Population,
    PopulationExistsError,
    WorkerInfo,
)
from popkit import jload, make, put


def test_create_layout_and_seeds(tmp_path):
    pop = make(tmp_path, population_size=5, seed_dna={"seed": True})
    root = pop.root
    for d in ("alive", "dead", "pending", "inflight", "tmp", "ids", "quarantine"):
        assert os.path.isdir(os.path.join(root, d))
    cfg = jload(os.path.join(root, "config.json"))
    assert cfg["format_version"] == FORMAT_VERSION and cfg["population_size"] == 5
    assert sorted(os.listdir(os.path.join(root, "pending"))) == ["1", "2", "3", "4", "5"]
    ctl = jload(os.path.join(root, "control.json"))
    assert ctl["mutations_per_child"] == 1 and not ctl["paused"] and not ctl["stopped"]
    t = pop.next_task(WorkerInfo.from_env(), random.Random(0))
    assert t.kind == "seed" and t.child_id == 1 and t.dna == {"seed": True} and t.parent_id is None
    assert not [n for n in os.listdir(tmp_path) if "creating" in n]


def test_create_refuses_to_overwrite(tmp_path):
    make(tmp_path)
    with pytest.raises(PopulationExistsError, match="refusing to overwrite"):
        make(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(PopulationExistsError, match="not an empty directory"):
        Population.create(str(tmp_path / "full"))
    (tmp_path / "empty").mkdir()
    Population.create(str(tmp_path / "empty"), population_size=2)


@pytest.mark.parametrize("field,value,match", [
    ("population_size", 1, "population_size"),
    ("strategy", "nsga", "strategy"),
    ("lock", "posix", "lock"),
    ("keep_checkpoints", "top:0", "keep_checkpoints"),
    ("heartbeat_s", 400.0, "heartbeat_s"),
    ("max_individuals", 0, "max_individuals"),
    ("max_individuals", 5, "max_individuals"),     # below the default population_size, as evo init refuses
    ("inheritance", "lamarck", "inheritance"),
    ("search_space", "nasnet", "search_space"),
    ("space_options", {"depth": 3}, "space_options"),
    ("space_options", [3, 24], "space_options"),
])
def test_config_errors_name_the_field_and_fix(tmp_path, field, value, match):
    with pytest.raises(ConfigError, match=match) as e:
        Population.create(str(tmp_path / "p"), **{field: value})
    assert "Fix:" in str(e.value)
    assert not (tmp_path / "p").exists()


def test_the_search_space_and_its_options_are_recorded(tmp_path):
    pop = Population.create(str(tmp_path / "p"), population_size=2, search_space="amoebanet",
                            space_options={"N": 1, "F": 4})
    cfg = jload(os.path.join(pop.root, "config.json"))
    assert cfg["search_space"] == "amoebanet" and cfg["space_options"] == {"N": 1, "F": 4}
    assert Population.open(pop.root).config.search_space == "amoebanet"
    with pytest.raises(ConfigError, match="'space_options'.*N") as e:
        Population.create(str(tmp_path / "q"), search_space="amoebanet", space_options={"N": 0})
    assert "Fix:" in str(e.value) and not (tmp_path / "q").exists()
    old = Population.create(str(tmp_path / "old"), population_size=2)  # the default: the 2017 space, no options
    assert jload(os.path.join(old.root, "config.json"))["search_space"] == "real2017"


def test_unknown_config_field_suggests(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'population_size'"):
        Population.create(str(tmp_path / "p"), Config.from_dict({"populaton_size": 3}) if False else {"populaton_size": 3})


def test_open_errors(tmp_path):
    with pytest.raises(NotAPopulationError, match="evo init"):
        Population.open(str(tmp_path))
    with pytest.raises(NotAPopulationError):
        Population.open(str(tmp_path / "nope"))
    pop = make(tmp_path)
    cpath = os.path.join(pop.root, "config.json")
    cfg = jload(cpath)
    cfg["format_version"] = FORMAT_VERSION + 1
    put(cpath, json.dumps(cfg))
    with pytest.raises(FormatVersionError, match="upgrade evo"):
        Population.open(pop.root)


def _config_table() -> dict:
    """docs/format.md's table of config.json: {field: default as written}."""
    text = (Path(__file__).parent.parent / "docs" / "format.md").read_text()
    section = text.split("## `config.json` (immutable)", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    table = {}
    for row in rows:
        keys, default = [c.strip() for c in row.strip("|").split("|")[:2]]
        names = [k.strip().strip("`") for k in keys.split(",")]
        values = [v.strip().strip("`") for v in default.split(",")] if "," in default else [default.strip("`")]
        if default == "set by `evo init`":
            values = [None] * len(names)
        assert len(values) == len(names), row
        table.update(zip(names, values))
    return table


def test_the_format_documents_every_config_field_with_its_default():
    table = _config_table()
    fields = {f.name: f for f in dataclasses.fields(Config)}
    assert sorted(table) == sorted(fields), "docs/format.md's config table and Config's fields differ"
    defaults = Config().to_dict()
    for name, written in table.items():
        if written is None:  # set by evo init
            assert defaults[name] is None, name
            continue
        assert json.loads(written) == defaults[name], f"{name}: docs/format.md says {written}, Config has {defaults[name]!r}"


def test_evo_init_and_config_share_their_defaults(tmp_path):
    """The config `evo init` writes without options is Config's defaults (format.md's table)."""
    from click.testing import CliRunner

    from evo.cli import main

    res = CliRunner().invoke(main, ["init", str(tmp_path / "p"), "--no-check-data", "--json"])
    assert res.exit_code == 0, res.output
    written = jload(tmp_path / "p" / "config.json")
    for name, value in Config().to_dict().items():
        if name not in ("created_at", "lock_detected"):
            assert written[name] == value, name


@pytest.mark.parametrize("args,message", [
    (["--train-opt", "batch_size=abc"], "batch_size"),
    (["--train-opt", "batch_size=-5"], "batch_size"),
    (["-P", "10", "--max-individuals", "4"], "max_individuals"),
])
def test_evo_init_refuses_settings_that_fail_later_in_one_line(tmp_path, args, message):
    from click.testing import CliRunner

    from evo.cli import main

    res = CliRunner().invoke(main, ["init", str(tmp_path / "p"), "--no-check-data", *args])
    assert res.exit_code == 2, res.output
    err = res.output.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("args,message", [(["--max-children", "-1"], "--max-children"),
                                          (["--time-limit", "-5"], "--time-limit")])
def test_evo_worker_refuses_negative_limits(tmp_path, args, message):
    from click.testing import CliRunner

    from evo.cli import main

    make(tmp_path)
    res = CliRunner().invoke(main, ["worker", str(tmp_path / "pop"), *args])
    assert res.exit_code == 2 and message in res.output, res.output


def test_the_population_layer_checks_training_and_space_settings_without_torch():
    code = ("import sys; from evo.population import Config, ConfigError\n"
            "for bad in ({'batch_size': 'abc'}, {'batch_size': -5}, {'mutations': {'allowed': ['FLY']}}):\n"
            "    try:\n"
            "        Config(train=bad).validate()\n"
            "    except ConfigError as e:\n"
            "        assert \"config field 'train'\" in str(e), e\n"
            "    else:\n"
            "        raise SystemExit(f'accepted {bad}')\n"
            "assert 'torch' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_seed_genome_that_fails_validation_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="seed_dna"):
        Population.create(str(tmp_path / "p"), population_size=2, seed_dna={"vertices": "nonsense"})


def test_a_version_1_population_reads_as_real2017(tmp_path):
    pop = make(tmp_path)
    cpath = os.path.join(pop.root, "config.json")
    cfg = jload(cpath)
    for k in ("search_space", "space_options"):
        del cfg[k]
    cfg["format_version"] = 1
    put(cpath, json.dumps(cfg))
    old = Population.open(pop.root)
    assert old.config.search_space == "real2017" and old.config.space_options == {}
    assert old.config.format_version == 1
    task = old.next_task(WorkerInfo.from_env(), random.Random(0))
    assert task.kind == "seed"


def test_function_preserving_real2017_populations_gate_their_new_skips(tmp_path):
    from evo.population.config import init_defaults

    fp = Population.create(str(tmp_path / "fp"), inheritance="function-preserving", population_size=2)
    assert fp.config.train["mutations"] == {"gated_skips": True}
    told = Population.create(str(tmp_path / "told"), inheritance="function-preserving", population_size=2,
                             train={"mutations": {"gated_skips": False}})
    assert told.config.train["mutations"] == {"gated_skips": False}  # the user's word stands
    paper = Population.create(str(tmp_path / "paper"), population_size=2)
    assert "mutations" not in paper.config.train  # the paper's network: plain identity skips
    cells = init_defaults({"inheritance": "function-preserving", "search_space": "amoebanet"})
    assert "train" not in cells  # other spaces have no such setting
