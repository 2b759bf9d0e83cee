"""The experiment config and a population's creation and opening."""

import json
import os
import random

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
    old = make(tmp_path / "old")  # the default: the 2017 space, no options
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
