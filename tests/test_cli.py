"""The population and worker commands of the CLI (init, worker, control knobs, fsck) and the exit codes:
every problem a person must fix is one line and exit 2, in every command."""

from __future__ import annotations

import json

from click.testing import CliRunner

from evo.cli import main
from evo.population import Population

TINY = ["--dataset-opt", "n_train=600", "--dataset-opt", "n_val=200", "--dataset-opt", "n_test=200",
        "--dataset-opt", "image_size=8"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_init_creates_and_refuses_to_overwrite(tmp_path):
    pop = tmp_path / "pop"
    r = run("init", str(pop), "-P", "3", "--steps-per-child", "10", "--max-individuals", "5", *TINY, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.output[r.output.index("{"):])
    assert info["config"]["population_size"] == 3
    assert Population.open(str(pop)).status()["pending"] == 3
    r = run("init", str(pop), *TINY)
    assert r.exit_code == 2 and "already holds a population" in r.output


def test_init_config_mistakes_are_one_line_errors(tmp_path):
    for args, message in [
        (["--train-opt", "batchsize=10"], "unknown training settings"),
        (["--train-opt", 'mutations={"allowed": ["FLY"]}'], "unknown mutation names"),
        (["-P", "1"], "population_size"),
        (["--dataset", "cifar10", "--data-root", str(tmp_path / "none")], "evo data download cifar10"),
        (["--dataset-opt", "colour=red"], "colour"),
    ]:
        r = run("init", str(tmp_path / "p"), *args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output, (args, r.output)
        assert "Traceback" not in r.output
        assert not (tmp_path / "p" / "config.json").exists()


def test_init_search_space_picks_its_population_defaults_unless_given(tmp_path):
    r = run("init", str(tmp_path / "a"), "--search-space", "amoebanet", "--space-opt", "N=1", "--space-opt", "F=4",
            "--no-check-data", "--json")
    assert r.exit_code == 0, r.output
    cfg = json.loads(r.output)["config"]
    assert (cfg["search_space"], cfg["space_options"]) == ("amoebanet", {"N": 1, "F": 4})
    assert (cfg["strategy"], cfg["population_size"], cfg["sample_size"], cfg["inheritance"]) == ("aging", 100, 25,
                                                                                                 "none")
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps({"search_space": "amoebanet", "space_options": {"F": 8}, "sample_size": 5}))
    r = run("init", str(tmp_path / "b"), "--config", str(conf), "-P", "10", "--inheritance", "paper",
            "--no-check-data", "--json")
    assert r.exit_code == 0, r.output
    cfg = json.loads(r.output)["config"]
    assert cfg["space_options"] == {"N": 3, "F": 8}  # every option recorded, for every worker alike
    assert (cfg["strategy"], cfg["population_size"], cfg["sample_size"], cfg["inheritance"]) == ("aging", 10, 5,
                                                                                                 "paper")
    r = run("init", str(tmp_path / "c"), "--no-check-data", "--json")  # the default space keeps the defaults
    cfg = json.loads(r.output)["config"]
    assert (cfg["search_space"], cfg["space_options"], cfg["strategy"]) == ("real2017", {}, "tournament")
    for args, message in [
        (["--space-opt", "N=3"], "search space 'real2017' has no option 'N'"),
        (["--search-space", "amoebanet", "--space-opt", "N=0"], "N (normal cells per stage) must be an int >= 1"),
        (["--search-space", "amoebanet", "--space-opt", "N"], "--space-opt 'N': write KEY=VALUE"),
        (["--search-space", "nasnet"], "Invalid value for '--search-space'"),
        (["--train-opt", "lr=0.3"], "lr does nothing in search space 'real2017'"),
    ]:
        r = run("init", str(tmp_path / "p"), "--no-check-data", *args)
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, (args, r.output)
        assert not (tmp_path / "p" / "config.json").exists()


def test_worker_control_stop_resume_and_fsck(tmp_path):
    pop = tmp_path / "pop"
    assert run("init", str(pop), "-P", "2", "--steps-per-child", "10", "--max-individuals", "4", *TINY).exit_code == 0
    r = run("control", str(pop), "--mutations-per-child", "5", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["mutations_per_child"] == 5
    assert run("stop", str(pop)).exit_code == 0
    r = run("worker", str(pop), "-q")
    assert r.exit_code == 0  # stopped: nothing to do, a clean exit
    assert Population.open(str(pop)).status()["alive"] == 0
    assert run("resume", str(pop)).exit_code == 0
    r = run("worker", str(pop), "-q")
    assert r.exit_code == 0
    st = Population.open(str(pop)).status()
    assert st["alive"] == 2 and st["trained"] == 4
    recs = [i.record for i in Population.open(str(pop)).individuals()]
    assert any(len(r["mutations"]) == 5 for r in recs if r.get("parent_id"))  # the knob took effect
    r = run("fsck", str(pop), "--json")
    assert r.exit_code == 0, r.output
    r = run("reset-weights", str(pop))
    assert r.exit_code == 0 and "queued 2" in r.output


def test_fsck_prints_a_readable_report_and_exit_status(tmp_path):
    pop = tmp_path / "pop"
    assert run("init", str(pop), "-P", "2", "--steps-per-child", "10", "--max-individuals", "2", *TINY).exit_code == 0
    assert run("worker", str(pop), "-q").exit_code == 0
    r = run("fsck", str(pop))
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"{pop}: OK -- alive 2, dead 0") and "FsckReport(" not in r.output
    fit = next((pop / "alive").iterdir()) / "fitness.json"
    fit.write_text('{"fitness": 0.')  # torn: the individual is not committed
    r = run("fsck", str(pop))
    assert r.exit_code == 1 and "PROBLEMS" in r.output and str(fit) in r.output
    r = run("fsck", str(pop), "--repair")
    assert "[repaired]" in r.output and r.exit_code == 0, r.output


def test_fsck_loads_each_living_checkpoint_into_its_genomes_network(tmp_path):
    """A whole checkpoint of the wrong shape (a classifier with one input too many) is found by `evo
    fsck`, which loads every living checkpoint through evo.network.weights; --repair retrains it."""
    import torch

    from evo.genome import search_space

    pop = tmp_path / "pop"
    assert run("init", str(pop), "-P", "2", "--steps-per-child", "10", "--max-individuals", "2", *TINY).exit_code == 0
    assert run("worker", str(pop), "-q").exit_code == 0
    assert run("fsck", str(pop)).exit_code == 0
    victim = sorted((pop / "alive").iterdir())[0]
    space = search_space("real2017")
    state = space.build(space.from_json((victim / "dna.json").read_text())).state_dict()
    rows, cols = state["head.weight"].shape
    state["head.weight"] = torch.zeros(rows, cols + 1)
    torch.save(state, victim / "checkpoint.pt")                # a whole file, of the wrong shape
    r = run("fsck", str(pop))
    assert r.exit_code == 1 and str(victim / "checkpoint.pt") in r.output, r.output
    assert "does not fit its genome" in r.output and f"head.weight ({rows}, {cols + 1})" in r.output, r.output
    r = run("fsck", str(pop), "--repair")
    assert "[repaired]" in r.output and r.exit_code == 0, r.output
    assert run("fsck", str(pop)).exit_code == 0


def test_missing_population_is_a_clear_error(tmp_path):
    r = run("worker", str(tmp_path))
    assert r.exit_code != 0
    assert "Traceback" not in r.output


def one_line_error(r) -> str:
    """The output of a command that failed with one clear line: exit 2, no traceback."""
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


def test_not_a_population_is_exit_2_in_every_command(tmp_path):
    """The same problem gets the same exit code (and the same line) in every command."""
    lines = {cmd: one_line_error(run(cmd, str(tmp_path))) for cmd in ("status", "worker", "fsck", "stop", "top")}
    assert all("not an evo population" in line and str(tmp_path) in line for line in lines.values()), lines


def _popdir_commands(group=main, prefix=()):
    """Every command (subcommands included) that takes a POPDIR argument."""
    import click

    from evo.cli.group import POPDIR

    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _popdir_commands(cmd, prefix + (name,))
        elif any(isinstance(p, click.Argument) and p.type is POPDIR for p in cmd.params):
            yield prefix + (name,)


def test_a_population_directory_that_does_not_exist_is_one_line_and_exit_2_in_every_command(tmp_path):
    missing = tmp_path / "no-such-pop"
    commands = list(_popdir_commands())
    assert {("status",), ("worker",), ("fsck",), ("show",), ("report",), ("submit",)} <= set(commands), commands
    for cmd in commands:
        line = one_line_error(run(*cmd, str(missing)))
        assert str(missing) in line and "no such directory" in line and "evo init" in line, (cmd, line)
    (tmp_path / "file").write_text("x")
    line = one_line_error(run("status", str(tmp_path / "file")))
    assert "is a file" in line, line


def test_a_bad_device_names_the_option_and_the_valid_forms(tmp_path):
    pop = tmp_path / "pop"
    assert run("init", str(pop), "-P", "2", "--steps-per-child", "10", *TINY).exit_code == 0
    for args in (["worker", str(pop)], ["evaluate", str(pop), "--best"], ["submit", str(pop), "-n", "1", "--dry-run"]):
        line = one_line_error(run(*args, "--device", "tpu:7"))
        assert "--device" in line and "tpu:7" in line and "cpu, cuda, cuda:N" in line, (args, line)
    assert Population.open(str(pop)).status()["inflight"] == 0


def test_run_control_says_when_workers_act(tmp_path):
    pop = tmp_path / "pop"
    assert run("init", str(pop), "-P", "2", "--steps-per-child", "10", *TINY).exit_code == 0
    r = run("stop", str(pop))
    assert r.exit_code == 0 and "finish the child they are training" in r.output
    assert "next step" not in r.output
    r = run("pause", str(pop))
    assert r.exit_code == 0 and "then wait for `evo resume`" in r.output


def test_help_lists_the_exit_codes():
    r = run("--help")
    assert r.exit_code == 0 and "Exit codes" in r.output
    for code in "0123":
        assert f"\n    {code}  " in r.output, r.output
