"""The ``evo`` command line: parse, call the modules, print text or ``--json``.

No logic of its own lives here.  A user mistake (a missing population, a bad option, a
corrupt file) becomes one clear line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from . import __version__


class UserError(click.ClickException):
    exit_code = 2


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the project's own error classes into a one-line message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except (FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, ValueError) as exc:
            raise UserError(str(exc)) from exc
        except Exception as exc:
            if type(exc).__module__.startswith("evo.") and not isinstance(exc, (AssertionError,)):
                raise UserError(str(exc)) from exc
            raise

    return wrapper


def emit(data: Any, as_json: bool, text: Callable[[Any], str] | str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif callable(text):
        click.echo(text(data))
    elif text is not None:
        click.echo(text)
    else:
        click.echo(data)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="evo")
def main() -> None:
    """Large-Scale Evolution of Image Classifiers on Slurm, through a shared file system.

    Typical use: evo init POPDIR -> sbatch slurm/worker.sbatch POPDIR (or evo submit) ->
    evo status / top / plot -> evo export / evaluate.  Try `evo demo` first.
    """


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
    from .data import download

    ds = download(name, root)
    click.echo(f"{ds!r} ready under {root}")


@data.command("info")
@click.argument("name", type=click.Choice(["synthetic", "cifar10", "cifar100", "imagefolder"]))
@click.option("--root", type=click.Path(path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True)
@friendly
def data_info(name: str, root: Path | None, as_json: bool) -> None:
    """Load NAME (building its cache if needed) and print its splits."""
    from .data import load_dataset

    ds = load_dataset(name, root=root)
    info = {
        "name": ds.name, "classes": ds.num_classes, "input_shape": list(ds.input_shape),
        "train": len(ds.train_x), "val": len(ds.val_x), "test": 0 if ds.test_x is None else len(ds.test_x),
        "mean": list(ds.mean), "std": list(ds.std), "split_seed": ds.split_seed, "info": ds.info,
    }
    emit(info, as_json, lambda d: "\n".join(f"{k:12s} {v}" for k, v in d.items() if k != "info"))


# ------------------------------------------------------------------------------------------ population
def _parse_kv(pairs: tuple[str, ...], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"{what} {pair!r}: write KEY=VALUE")
        k, v = pair.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


@main.command()
@click.argument("popdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSON file with config fields (docs/format.md); options below override it.")
@click.option("--dataset", default=None, help="synthetic (default), cifar10, cifar100 or imagefolder.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Where the data set lives (CIFAR: torchvision's layout; imagefolder: class folders).")
@click.option("--dataset-opt", multiple=True, metavar="KEY=VALUE",
              help="Extra data set argument, e.g. n_train=5000 or image_size=32 (repeatable).")
@click.option("--population-size", "-P", type=int, default=None, help="Individuals kept alive (paper: 1000).")
@click.option("--strategy", type=click.Choice(["tournament", "aging", "random"]), default=None)
@click.option("--sample-size", type=int, default=None, help="S of aging evolution (Real 2019: 25).")
@click.option("--steps-per-child", type=int, default=None, help="Training steps per child (paper: 25600).")
@click.option("--mutations-per-child", type=int, default=None)
@click.option("--max-individuals", type=int, default=None, help="Budget: stop after this many trainings.")
@click.option("--max-flops", type=float, default=None, help="Budget: stop after this many FLOPs.")
@click.option("--lock", type=click.Choice(["auto", "flock", "soft", "none"]), default=None,
              help="Population lock: auto picks by file system (slurm/README.md).")
@click.option("--inheritance", type=click.Choice(["paper", "none"]), default=None,
              help="paper: children inherit matching weights; none: trained from scratch (Real 2019).")
@click.option("--keep-checkpoints", default=None, help="alive (default), all, or top:K.")
@click.option("--seed", type=int, default=None)
@click.option("--train-opt", multiple=True, metavar="KEY=VALUE",
              help="Training setting (batch_size, momentum, weight_decay, augment, ...), repeatable.")
@click.option("--check-data/--no-check-data", default=True,
              help="Load the data set now (and build its cache once) so that workers never race to.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def init(popdir: Path, config_file: Path | None, dataset: str | None, data_root: Path | None,
         dataset_opt: tuple[str, ...], check_data: bool, train_opt: tuple[str, ...], as_json: bool,
         **fields: Any) -> None:
    """Create a new population in POPDIR with P seed individuals planned as pending work."""
    from .store import Config, Population

    cfg: dict[str, Any] = {}
    if config_file is not None:
        try:
            cfg = json.loads(config_file.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{config_file}: not valid JSON ({exc})") from exc
    defaults = {"dataset": "synthetic", "population_size": 20, "steps_per_child": 25600}
    for k, v in defaults.items():
        cfg.setdefault(k, v)
    if dataset is not None:
        cfg["dataset"] = dataset
    kw = dict(cfg.get("dataset_kwargs") or {})
    if data_root is not None:
        kw["root"] = str(data_root.resolve())
    kw.update(_parse_kv(dataset_opt, "--dataset-opt"))
    cfg["dataset_kwargs"] = kw
    train_cfg = dict(cfg.get("train") or {})
    train_cfg.update(_parse_kv(train_opt, "--train-opt"))
    cfg["train"] = train_cfg
    cfg.update({k: v for k, v in fields.items() if v is not None})
    config = Config.from_dict(cfg).validate()
    if (popdir / "config.json").exists():
        raise UserError(f"{popdir} already holds a population; refusing to overwrite it. "
                        "Fix: choose another directory")
    if check_data:
        from .data import load_dataset

        ds = load_dataset(config.dataset, **config.dataset_kwargs)
        if not as_json:
            click.echo(f"data set: {ds!r}")
    pop = Population.create(str(popdir), config)
    info = {"popdir": pop.root, "config": pop.config.to_dict()}
    emit(info, as_json, lambda d: (
        f"created population {d['popdir']}: P={pop.config.population_size}, strategy {pop.config.strategy}, "
        f"{pop.config.steps_per_child} steps per child, lock {pop.lock_kind}\n"
        f"next: evo worker {d['popdir']}   (or: sbatch --array=0-3 slurm/worker.sbatch {d['popdir']})"))


@main.command()
@click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--time-limit", type=float, default=None,
              help="Seconds to work before handing the in-flight child back and exiting with code 3.")
@click.option("--worker-id", default=None, help="Name in leases and records (default: job id, host, pid).")
@click.option("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available).")
@click.option("--max-children", type=int, default=None, help="Exit (code 0) after training this many.")
@click.option("--quiet", "-q", is_flag=True, help="Only errors.")
def worker(popdir: Path, time_limit: float | None, worker_id: str | None, device: str | None,
           max_children: int | None, quiet: bool) -> None:
    """Run one stateless worker on POPDIR until the experiment ends.

    Exit codes: 0 finished or stopped; 3 interrupted (SIGTERM, SIGUSR2, --time-limit) after
    handing the in-flight child back for resumption; 1 error; 2 bad usage.
    """
    import time as _time

    from .worker import EXIT_ERROR, run_worker

    def progress(msg: str) -> None:
        if not quiet:
            click.echo(f"[{_time.strftime('%H:%M:%S')}] {msg}", err=False)

    try:
        code = run_worker(str(popdir), worker_id=worker_id, time_limit_s=time_limit, device=device,
                          max_children=max_children, progress=progress)
    except click.ClickException:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("evo."):
            click.echo(f"evo worker: error: {exc}", err=True)
            sys.exit(EXIT_ERROR)
        raise
    sys.exit(code)


def _open(popdir: Path):
    from .store import Population

    return Population.open(str(popdir))


@main.command()
@click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--mutations-per-child", type=int, default=None,
              help="Mutations per child from now on (the paper's escape: 5 for a few generations, then 1).")
@click.option("--json", "as_json", is_flag=True)
@friendly
def control(popdir: Path, mutations_per_child: int | None, as_json: bool) -> None:
    """Show or change the run-control knobs of a running experiment."""
    pop = _open(popdir)
    ctl = pop.set_mutations_per_child(mutations_per_child) if mutations_per_child is not None \
        else pop.read_control()
    emit(ctl.to_dict(), as_json, lambda d: "\n".join(f"{k:20s} {v}" for k, v in d.items()))


@main.command("reset-weights")
@click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@friendly
def reset_weights_cmd(popdir: Path) -> None:
    """Retrain every living individual from scratch with its DNA (the paper's plateau escape)."""
    n = _open(popdir).reset_weights()
    click.echo(f"queued {n} living individuals for retraining from scratch; workers pick them up next")


def _knob(name: str, doc: str) -> None:
    @main.command(name, help=doc)
    @click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
    @friendly
    def cmd(popdir: Path) -> None:
        ctl = getattr(_open(popdir), name)()
        click.echo(f"{name}: paused={ctl.paused} stopped={ctl.stopped} (workers see it at their next step)")


_knob("stop", "Stop the experiment: workers finish their child, take no new one, and exit 0.")
_knob("pause", "Pause: workers finish their child and wait for `evo resume`.")
_knob("resume", "Clear pause and stop: workers go on (start new ones if they exited).")


@main.command()
@click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repair", is_flag=True, help="Fix what can be fixed; never deletes a completed individual.")
@click.option("--json", "as_json", is_flag=True)
@friendly
def fsck(popdir: Path, repair: bool, as_json: bool) -> None:
    """Check every invariant of the population directory (exit 1 when problems remain)."""
    from .store import fsck as run_fsck

    report = run_fsck(str(popdir), repair=repair)
    emit(report.to_dict(), as_json, lambda d: str(report))
    if not report.ok:
        sys.exit(1)


def _demo_report(ctx: click.Context, directory: Path) -> None:
    """The end of the demo: leaderboard, progress plot, exported best model."""
    commands = main.commands
    if "top" in commands:
        click.echo("the leaderboard (evo top):")
        ctx.invoke(commands["top"], popdir=directory, n=5)
    if "plot" in commands:
        ctx.invoke(commands["plot"], popdir=directory, output=directory / "progress.png")
    if "export" in commands:
        ctx.invoke(commands["export"], popdir=directory, best=True, output=directory / "best-model.pt")
    click.echo(f"\nlook further: evo status {directory} | evo lineage {directory} ID | evo evaluate {directory} --best")


# ------------------------------------------------------------------------------------------ demo
@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="evo-demo")
@click.option("--workers", "-w", type=int, default=None, help="Local worker processes (default: one per core).")
@click.option("--max-individuals", type=int, default=None, help="Budget (default 120).")
@click.option("--steps-per-child", type=int, default=None, help="SGD steps per child (default 150).")
@click.pass_context
@friendly
def demo(ctx: click.Context, directory: Path, workers: int | None, max_individuals: int | None,
         steps_per_child: int | None) -> None:
    """Evolve classifiers for the embedded synthetic data set with local workers, in a few minutes.

    Creates DIRECTORY (default ./evo-demo), runs one worker per core until the budget, then
    prints the leaderboard, writes the progress plot and exports the best model.  Run it again
    to continue an interrupted demo.
    """
    from .demo import run_demo

    overrides = {k: v for k, v in {"max_individuals": max_individuals,
                                   "steps_per_child": steps_per_child}.items() if v is not None}
    summary = run_demo(directory, workers=workers, overrides=overrides, echo=click.echo)
    best = summary["best"]
    click.echo(f"\ndone in {summary['wall_s']:.0f}s: {summary['born']} individuals trained; best validation "
               f"accuracy {best[1]:.3f} (individual {best[0]}), best seed individual "
               f"{summary['seed_best']:.3f}\n" if best else "\ndone: no individual finished\n")
    _demo_report(ctx, directory)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
