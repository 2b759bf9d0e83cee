"""The commands that create and steer a population: ``data``, ``init``, ``control``, ``stop``,
``pause``, ``resume``, ``reset-weights`` and ``fsck``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from evo.cli.group import EXIT_FAILED, POPDIR, UserError, emit, friendly, main, open_population, parse_kv
from evo.genome import space_names


# ------------------------------------------------------------------------------------------ data
@main.group()
def data() -> None:
    """Data sets: download them on a login node, inspect them."""


@data.command("download")
@click.argument("name", type=click.Choice(["cifar10", "cifar100"]))
@click.option("--root", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to put the data set in (on the shared file system).")
@friendly
def data_download(name: str, root: Path) -> None:
    """Download NAME into --root (needs internet) and build its uint8 cache."""
    from evo.network.data import download

    ds = download(name, root)
    click.echo(f"{ds!r} ready under {root}")


@data.command("info")
@click.argument("name", type=click.Choice(["synthetic", "cifar10", "cifar100", "imagefolder"]))
@click.option("--root", type=click.Path(path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
@friendly
def data_info(name: str, root: Path | None, as_json: bool) -> None:
    """Load NAME (building its cache if needed) and print its splits."""
    from evo.network.data import load_dataset

    ds = load_dataset(name, root=root)
    info = {
        "name": ds.name, "classes": ds.num_classes, "input_shape": list(ds.input_shape),
        "train": len(ds.train_x), "val": len(ds.val_x), "test": 0 if ds.test_x is None else len(ds.test_x),
        "mean": list(ds.mean), "std": list(ds.std), "split_seed": ds.split_seed, "info": ds.info,
    }
    emit(info, as_json, lambda d: "\n".join(f"{k:12s} {v}" for k, v in d.items() if k != "info"))


# ------------------------------------------------------------------------------------------ population
@main.command()
@click.argument("popdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSON file with config fields (docs/format.md); options below override it.")
@click.option("--dataset", default=None, help="synthetic (default), cifar10, cifar100 or imagefolder.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Where the data set lives (CIFAR: torchvision's layout; imagefolder: class folders).")
@click.option("--dataset-opt", multiple=True, metavar="KEY=VALUE",
              help="Extra data set argument, e.g. n_train=5000 or image_size=32 (repeatable).")
@click.option("--search-space", type=click.Choice(space_names()), default=None,
              help="The genome evolved: real2017 (default; Real 2017's graphs) or amoebanet (Real 2019's cells, "
                   "with aging evolution, P=100, S=25 and no inheritance unless given).")
@click.option("--space-opt", multiple=True, metavar="KEY=VALUE",
              help="Search space option, e.g. N=3 or F=24 for amoebanet (repeatable).")
@click.option("--population-size", "-P", type=int, default=None, help="Individuals kept alive (paper: 1000).")
@click.option("--strategy", type=click.Choice(["tournament", "aging", "random", "grow"]), default=None,
              help="grow: generations of growth mutations with function-preserving inheritance.")
@click.option("--sample-size", type=int, default=None, help="S of aging evolution (Real 2019: 25).")
@click.option("--steps-per-child", type=int, default=None, help="Training steps per child (paper: 25600).")
@click.option("--mutations-per-child", type=int, default=None)
@click.option("--max-individuals", type=int, default=None, help="Budget: stop after this many trainings.")
@click.option("--max-flops", type=float, default=None, help="Budget: stop after this many FLOPs.")
@click.option("--lock", type=click.Choice(["auto", "flock", "soft", "none"]), default=None,
              help="Population lock: auto picks by file system (slurm/README.md).")
@click.option("--inheritance", type=click.Choice(["paper", "function-preserving", "none"]), default=None,
              help="paper: children inherit matching weights; function-preserving: a grown child starts "
                   "computing its parent's function (Net2Net; default of grow); none: from scratch (Real 2019).")
@click.option("--keep-checkpoints", default=None, help="alive (default), all, or top:K.")
@click.option("--grow-children", type=int, default=None, help="grow: M1 children per generation (default 2 P).")
@click.option("--grow-survivors", type=int, default=None, help="grow: M2 survivors per generation (default P).")
@click.option("--grow-generations", type=int, default=None, help="grow: K generations (default: until a budget).")
@click.option("--seed", type=int, default=None)
@click.option("--train-opt", multiple=True, metavar="KEY=VALUE",
              help="Training setting (batch_size, momentum, weight_decay, augment, ...), repeatable.")
@click.option("--check-data/--no-check-data", default=True,
              help="Load the data set now (and build its cache once) so that workers never race to.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def init(popdir: Path, config_file: Path | None, dataset: str | None, data_root: Path | None,
         dataset_opt: tuple[str, ...], check_data: bool, train_opt: tuple[str, ...], space_opt: tuple[str, ...],
         as_json: bool, **fields: Any) -> None:
    """Create a new population in POPDIR with P seed individuals planned as pending work."""
    from evo.population import Config, Population

    cfg: dict[str, Any] = {}
    if config_file is not None:
        try:
            cfg = json.loads(config_file.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{config_file}: not valid JSON ({exc})") from exc
    space = _space(cfg, fields, space_opt)
    for k, v in space.population_defaults.items():  # the space's own settings, unless given
        if k not in cfg and fields.get(k) is None:
            cfg[k] = v
    defaults = {"dataset": "synthetic", "population_size": 20, "steps_per_child": 25600}
    for k, v in defaults.items():
        cfg.setdefault(k, v)
    if dataset is not None:
        cfg["dataset"] = dataset
    kw = dict(cfg.get("dataset_kwargs") or {})
    if data_root is not None:
        kw["root"] = str(data_root.resolve())
    kw.update(parse_kv(dataset_opt, "--dataset-opt"))
    cfg["dataset_kwargs"] = kw
    train_cfg = dict(cfg.get("train") or {})
    train_cfg.update(parse_kv(train_opt, "--train-opt"))
    cfg["train"] = train_cfg
    grow = {k[5:]: fields.pop(k) for k in ("grow_children", "grow_survivors", "grow_generations")}
    cfg.update({k: v for k, v in fields.items() if v is not None})
    cfg["grow"] = {**dict(cfg.get("grow") or {}), **{k: v for k, v in grow.items() if v is not None}}
    from evo.population.config import init_defaults

    cfg = init_defaults(cfg)  # grow: function-preserving inheritance, growth mutations; gated skips
    config = Config.from_dict(cfg).validate(at_init=True)  # training and search-space settings too, torch-free
    if (popdir / "config.json").exists():
        raise UserError(f"{popdir} already holds a population; refusing to overwrite it. "
                        "Fix: choose another directory")
    if check_data:
        from evo.network.data import load_dataset

        ds = load_dataset(config.dataset, **config.dataset_kwargs)
        if not as_json:
            click.echo(f"data set: {ds!r}")
    pop = Population.create(str(popdir), config)
    info = {"popdir": pop.root, "config": pop.config.to_dict()}
    emit(info, as_json, lambda d: (
        f"created population {d['popdir']}: P={pop.config.population_size}, strategy {pop.config.strategy}, "
        f"{pop.config.steps_per_child} steps per child, lock {pop.lock_kind}\n"
        f"next: evo worker {d['popdir']}   (or: sbatch --array=0-3 slurm/worker.sbatch {d['popdir']})"))


def _space(cfg: dict[str, Any], fields: dict[str, Any], space_opt: tuple[str, ...]) -> Any:
    """The search space of a new population (--search-space and --space-opt over the config file's),
    recorded in ``cfg`` with all its options; a bad name or option is one line."""
    from evo.genome import GenomeError, search_space

    name = fields.pop("search_space") or cfg.get("search_space") or "real2017"
    options = cfg.get("space_options") or {}
    if not isinstance(options, dict):
        raise UserError(f"config field 'space_options': must be an object of option: value, got {options!r}")
    options = {**options, **parse_kv(space_opt, "--space-opt")}
    try:
        space = search_space(str(name), **options)
    except GenomeError as exc:
        raise UserError(f"--search-space {name}: {exc}") from None
    cfg["search_space"], cfg["space_options"] = space.name, dict(space.options)
    return space


@main.command()
@click.argument("popdir", type=POPDIR)
@click.option("--mutations-per-child", type=int, default=None,
              help="Mutations per child from now on (the paper's escape: 5 for a few generations, then 1).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def control(popdir: Path, mutations_per_child: int | None, as_json: bool) -> None:
    """Show or change the run-control knobs of a running experiment."""
    pop = open_population(popdir)
    ctl = pop.set_mutations_per_child(mutations_per_child) if mutations_per_child is not None \
        else pop.read_control()
    emit(ctl.to_dict(), as_json, lambda d: "\n".join(f"{k:20s} {v}" for k, v in d.items()))


@main.command("reset-weights")
@click.argument("popdir", type=POPDIR)
@friendly
def reset_weights_cmd(popdir: Path) -> None:
    """Retrain every living individual from scratch with its DNA (the paper's plateau escape)."""
    n = open_population(popdir).reset_all_weights()
    click.echo(f"queued {n} living individuals for retraining from scratch; workers pick them up next")


#: when the workers act on each run-control command (a child in training is never cut short)
_KNOB_EFFECT = {
    "stop": "workers finish the child they are training, take no new one and exit 0; idle ones exit within "
            "seconds",
    "pause": "workers finish the child they are training, then wait for `evo resume`",
    "resume": "waiting workers go on; start new ones where they have exited",
}


def _knob(name: str, doc: str) -> None:
    @main.command(name, help=doc)
    @click.argument("popdir", type=POPDIR)
    @friendly
    def cmd(popdir: Path) -> None:
        ctl = getattr(open_population(popdir), name)()
        click.echo(f"{name}: paused={ctl.paused} stopped={ctl.stopped} ({_KNOB_EFFECT[name]})")


_knob("stop", "Stop the experiment: workers finish their child, take no new one, and exit 0.")
_knob("pause", "Pause: workers finish their child and wait for `evo resume`.")
_knob("resume", "Clear pause and stop: workers go on (start new ones if they exited).")


@main.command()
@click.argument("popdir", type=POPDIR)
@click.option("--repair", is_flag=True, help="Fix what can be fixed; never deletes a completed individual.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def fsck(popdir: Path, repair: bool, as_json: bool) -> None:
    """Check every invariant of the population directory (exit 1 when problems remain); each living
    individual's checkpoint is loaded into the network its genome describes."""
    from evo.genome import GenomeError, space_of
    from evo.population import fsck as run_fsck

    try:
        space = space_of(open_population(popdir).config)
    except GenomeError:
        check = None  # a space this version does not know: fsck says so, and checks the files only
    else:
        from evo.network.weights import checkpoint_check

        check = checkpoint_check(space)
    report = run_fsck(str(popdir), repair=repair, check_checkpoint=check)
    emit(report.to_dict(), as_json, lambda d: str(report))
    if not report.ok:
        sys.exit(EXIT_FAILED)
