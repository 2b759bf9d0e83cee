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

from evo import __version__


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
    from evo.population.store import Config, Population

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
    from evo.worker.loop import check_train_settings

    check_train_settings(config.train)
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
    handing the in-flight child back for resumption; 2 bad usage, or a problem a person must fix
    first (not a population, a full or read-only file system, a bad --device: one line says
    which, and the child was handed back); 1 any other error.
    """
    import time as _time

    from evo.worker.signals import StopRequest

    stop = StopRequest()
    stop.install()                 # before torch is imported: a warning during start-up is kept
    try:
        from evo.worker.loop import EXIT_ERROR, run_worker

        def progress(msg: str) -> None:
            if not quiet:
                click.echo(f"[{_time.strftime('%H:%M:%S')}] {msg}", err=False)

        try:
            code = run_worker(str(popdir), worker_id=worker_id, time_limit_s=time_limit, device=device,
                              max_children=max_children, progress=progress, handle_signals=False, stop=stop)
        except click.ClickException:
            raise
        except Exception as exc:
            if type(exc).__module__.startswith("evo."):
                click.echo(f"evo worker: error: {exc}", err=True)
                sys.exit(getattr(exc, "exit_code", EXIT_ERROR))  # 2: a person must act (NeedsFix)
            raise
    finally:
        stop.ignore_from_now()     # the exit code is decided: a late signal must not replace it
    sys.exit(code)


def _open(popdir: Path):
    from evo.population.store import Population

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
    from evo.population.store import fsck as run_fsck

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


# ------------------------------------------------------------------------------------------ submit
@main.command()
@click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--workers", "-n", type=click.IntRange(min=1), required=True,
              help="Workers to submit (the size of the job array).")
@click.option("--parallel", "--max-running", "parallel", type=click.IntRange(min=1), default=None,
              help="At most this many running at once (the array's %N throttle; default: all).")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--time", "time_limit", default=None, metavar="TIME",
              help="Time limit of one run of a worker: minutes or [D-]HH:MM:SS (default 240 min on Slurm). "
                   "Workers are requeued at the limit and lose nothing.")
@click.option("--gpus-per-worker", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--cpus-per-worker", type=click.IntRange(min=1), default=None)
@click.option("--mem", default=None, help="Memory per worker, e.g. 32G (a bare number is MB, as in sbatch).")
@click.option("--account", default=None, help="Slurm account to charge.")
@click.option("--qos", default=None, help="Slurm quality of service.")
@click.option("--sbatch-opt", "sbatch_opts", multiple=True, metavar="KEY=VALUE",
              help="Any other sbatch option, e.g. constraint=a100 or gres=shard:1 (repeatable; a bare KEY "
                   "is a flag).")
@click.option("--setup", multiple=True, metavar="LINE",
              help="Shell line run before the worker starts, e.g. 'module load cuda' (repeatable).")
@click.option("--signal-delay", type=click.IntRange(min=1), default=120, show_default=True,
              help="Seconds before the time limit at which workers get SIGUSR2, hand their child back and "
                   "are requeued.")
@click.option("--max-requeues", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Time-limit requeues per worker before it is given up.")
@click.option("--job-name", default="evo-worker", show_default=True)
@click.option("--device", default=None, help="cuda, cuda:1 or cpu for the workers (default: cuda when available).")
@click.option("--executor", type=click.Choice(["slurm", "local"]), default="slurm", show_default=True,
              help="slurm: a job array; local: background processes on this machine (submitit's local executor).")
@click.option("--dry-run", is_flag=True, help="Print the parameters and the sbatch script; submit nothing.")
@click.option("--wait", "wait_", is_flag=True, help="Wait until every worker has ended; exit 1 if one failed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def submit(popdir: Path, workers: int, parallel: int | None, partition: str | None, time_limit: str | None,
           gpus_per_worker: int, cpus_per_worker: int | None, mem: str | None, account: str | None,
           qos: str | None, sbatch_opts: tuple[str, ...], setup: tuple[str, ...], signal_delay: int,
           max_requeues: int, job_name: str, device: str | None, executor: str, dry_run: bool, wait_: bool,
           as_json: bool) -> None:
    """Submit WORKERS stateless workers on POPDIR through submitit.

    A Slurm job array (or local background processes) whose tasks each run one worker until the
    experiment is finished.  Before the time limit each worker checkpoints its child, hands it back
    and is requeued.  The job ids are printed and appended to POPDIR/jobs.jsonl.
    """
    from evo import launch

    opts = launch.SubmitOptions(
        workers=workers, executor=executor, parallel=parallel, partition=partition,
        time_min=None if time_limit is None else launch.parse_time(time_limit),
        gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker, mem=mem, account=account, qos=qos,
        sbatch_opts=launch.parse_sbatch_opts(sbatch_opts), setup=list(setup), signal_delay_s=signal_delay,
        max_requeues=max_requeues, job_name=job_name, device=device)
    if dry_run:
        emit(launch.plan(str(popdir), opts), as_json, launch.plan_text)
        return
    record, jobs = launch.submit(str(popdir), opts)
    if not wait_:
        emit(record, as_json, launch.summary_text)
        return
    if not as_json:
        click.echo(launch.summary_text(record))
        click.echo("waiting for the workers to end ...")
    states = launch.wait(jobs)
    emit({**record, "states": states}, as_json, lambda d: "\n".join(
        f"{job}: {state}" for job, state in d["states"].items()))
    if any(s != "COMPLETED" for s in states.values()):
        sys.exit(1)


# ------------------------------------------------------------------------------------------ demo
@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="evo-demo")
@click.option("--workers", "-w", type=int, default=None, help="Local worker processes (default: one per core).")
@click.option("--max-individuals", type=int, default=None, help="Budget (default 200).")
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
    from evo.demo import run_demo

    overrides = {k: v for k, v in {"max_individuals": max_individuals,
                                   "steps_per_child": steps_per_child}.items() if v is not None}
    summary = run_demo(directory, workers=workers, overrides=overrides, echo=click.echo)
    best = summary["best"]
    click.echo(f"\ndone in {summary['wall_s']:.0f}s: {summary['born']} individuals trained; best validation "
               f"accuracy {best[1]:.3f} (individual {best[0]}), best seed individual "
               f"{summary['seed_best']:.3f}\n" if best else "\ndone: no individual finished\n")
    _demo_report(ctx, directory)


# ------------------------------------------------------------------------------------------ inspection
# Read-only commands: lock-free, safe on a live population (evo.analysis does the reading).


def _history(popdir: Path, **kw: Any):
    from evo.analysis import load

    return load(str(popdir), **kw)


def _fmt(v: Any, spec: str = "") -> str:
    if v is None:
        return "-"
    if spec:
        return format(v, spec)
    return str(v)


def _count(n: int, noun: str) -> str:
    """'1 convolution', '2 convolutions'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _table(headers: list[str], rows: list[list[Any]], right: set[int] | None = None) -> str:
    """A plain text table (numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[k]) for r in cells) for k in range(len(headers))]
    right = right if right is not None else {
        k for k in range(len(headers)) if rows and all(_isnum(r[k]) for r in rows if r[k] not in (None, "-"))}
    out = []
    for r in cells:
        out.append("  ".join(c.rjust(w) if k in right else c.ljust(w) for k, (c, w) in enumerate(zip(r, widths)))
                   .rstrip())
    return "\n".join(out)


def _isnum(x: Any) -> bool:
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return True
    try:
        float(str(x).rstrip("%"))
        return True
    except ValueError:
        return False


def _sci(x: Any) -> str:
    return "-" if x is None else f"{float(x):.3g}"


def _mutation_text(m: Any, detail: bool = True) -> str:
    if not isinstance(m, dict):
        return str(m)
    name = str(m.get("name"))
    d = m.get("detail")
    if detail and d:
        inner = ", ".join(f"{k}={_short(v)}" for k, v in d.items()) if isinstance(d, dict) else _short(d)
        name += f" ({inner})"
    return name


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= 40 else s[:37] + "..."


def _status_text(d: dict) -> str:
    from evo.analysis import format_duration

    c = d["counts"]
    k = d["knobs"]
    lines = [f"population {d['popdir']}  ({d['strategy']}, P={k['population_size']})"
             f"  state: {d['state']}" + (f" ({d['budget_reason']})" if d.get("budget_reason") else "")]
    lines.append(f"individuals  alive {c['alive']} | in flight {c['inflight']} | pending {c['pending']} | "
                 f"dead {c['dead']} | trained {c['trained']} ({c['failed']} failed)")
    b = d["births_per_hour"]
    last = "" if d["last_birth_age_s"] is None else f"; last birth {format_duration(d['last_birth_age_s'])} ago"
    lines.append(f"births       {b['last_hour']} in the last hour, {b['overall']:.1f}/h overall{last}"
                 f"; {'ran' if d['state'] == 'finished' else 'running'} for {format_duration(d['elapsed_s'])}")
    if d["best"]:
        bb = d["best"]
        seed = "" if d["best_seed_fitness"] is None else f"; best seed individual {d['best_seed_fitness']:.4f}"
        lines.append(f"best         validation accuracy {bb['fitness']:.4f} by individual {bb['id']} "
                     f"({'alive' if bb['alive'] else 'dead'}; {_fmt(bb['params'])} params, depth "
                     f"{_fmt(bb['depth'])}){seed}")
    else:
        lines.append("best         no individual committed yet")
    bud = d["budget"]
    budgets = []
    if bud["max_individuals"] is not None:
        budgets.append(f"{c['trained']}/{bud['max_individuals']} individuals")
    if bud["max_flops"] is not None:
        budgets.append(f"{_sci(d['flops'])}/{_sci(bud['max_flops'])} FLOPs")
    lines.append(f"FLOPs        {_sci(d['flops'])} spent; budget: {', '.join(budgets) or 'none'}")
    lock = k["lock"] + (f" ({k['lock_detected']})" if k["lock"] == "auto" and k.get("lock_detected") else "")
    lines.append(f"knobs        steps_per_child {k['steps_per_child']}, mutations_per_child "
                 f"{k['mutations_per_child']}, sample_size {k['sample_size']}, inheritance {k['inheritance']}, "
                 f"keep_checkpoints {k['keep_checkpoints']}, lock {lock}, dataset {k['dataset']}")
    ctl = d["control"]
    lines.append(f"control      paused {'yes' if ctl['paused'] else 'no'}, stopped {'yes' if ctl['stopped'] else 'no'}"
                 f", reset generation {ctl['reset_generation']}")
    ws = d["workers"]
    lines.append(f"workers      {len(ws)} holding a lease" + (":" if ws else
                 f" ({d['recent_workers']} committed in the last hour)"))
    if ws:
        rows = [[w["worker"], w["slurm_job"] or "-", w["child"], w["kind"], w["parent"],
                 "-" if w["heartbeat_age_s"] is None else format_duration(w["heartbeat_age_s"]) + " ago",
                 "EXPIRED" if w["expired"] else ""] for w in ws]
        lines.append("  " + _table(["worker", "slurm job", "child", "kind", "parent", "last heartbeat", ""], rows,
                                   right={2, 4}).replace("\n", "\n  "))
    if d["warnings"]:
        lines.append("warnings")
        lines.extend(f"  ! {w}" for w in d["warnings"])
    return "\n".join(lines)


@main.command()
@click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
@friendly
def status(popdir: Path, as_json: bool) -> None:
    """Counts, birth rate, best individual, FLOPs, workers, knobs and warnings of POPDIR.

    Read-only and lock-free: safe to run at any time on a live population.
    """
    from evo.analysis import status as get_status

    emit(get_status(str(popdir)), as_json, _status_text)


@main.command()
@click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-n", "n", type=click.IntRange(min=1), default=10, show_default=True, help="How many to show.")
@click.option("--alive", "alive_only", is_flag=True, help="Only living individuals.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly
def top(popdir: Path, n: int, alive_only: bool, as_json: bool) -> None:
    """The leaderboard of POPDIR by validation accuracy (alive and dead).

    Columns: rank, id, validation accuracy, alive, parameters, training FLOPs, depth
    (convolutions on the backbone), learning rate, age (since it joined the population),
    and whether its trained weights are kept (ckpt; needed by export and evaluate).
    """
    import time as _time

    from evo.analysis import format_duration

    h = _history(popdir)
    now = _time.time()
    rows = []
    for k, r in enumerate(h.top(n, alive_only), 1):
        rows.append({"rank": k, "id": r.id, "fitness": r.fitness, "alive": r.alive, "params": r.params,
                     "flops": r.flops, "depth": r.depth, "learning_rate": r.learning_rate,
                     "age_s": None if r.finished_at is None else max(0.0, now - r.finished_at),
                     "parent_id": r.parent_id, "mutations": list(r.mutations),
                     "checkpoint": h.checkpoint(r.id) is not None})

    def text(_: Any) -> str:
        if not rows:
            return f"no individual with a validation accuracy in {h.root} yet"
        head = f"top {len(rows)} of {len(h)} individuals in {h.root}" + (" (alive only)" if alive_only else "")
        return head + "\n" + _table(
            ["rank", "id", "val acc", "alive", "params", "FLOPs", "depth", "lr", "age", "ckpt"],
            [[x["rank"], x["id"], f"{x['fitness']:.4f}", "yes" if x["alive"] else "no", _fmt(x["params"]),
              _sci(x["flops"]), _fmt(x["depth"]), _sci(x["learning_rate"]),
              "-" if x["age_s"] is None else format_duration(x["age_s"]), "yes" if x["checkpoint"] else "no"]
             for x in rows], right={0, 1, 2, 4, 5, 6, 7, 8})

    emit({"popdir": h.root, "individuals": len(h), "top": rows}, as_json, text)


def _id_arg(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UserError(f"individual id {value!r}: expected a number (see `evo top POPDIR`)") from None


def _show_text(d: dict) -> str:
    lines = []
    par = d["parent"]
    origin = "a seed individual" if par is None else f"child of {par['id']}" + (
        "" if par["known"] else " (record missing)")
    fit = "failed: " + str(d["outcome"]) if d["fitness"] is None else f"validation accuracy {d['fitness']:.4f}"
    lines.append(f"individual {d['id']}  {d['status']}  {fit}  ({origin}, lineage depth {d['lineage_depth']})")
    muts = d["mutations"]
    lines.append("mutations    " + ("; ".join(_mutation_text(m) for m in muts) if muts else
                                    ("none (seed)" if par is None else "none")))
    st = d["stats"]
    shape = "x".join(str(s) for s in d["input_shape"] or [])
    lines.append(f"network      input {shape} -> {d['num_classes']} classes; "
                 f"{_count(st['n_convs'], 'convolution')}, {_count(st['n_skips'], 'skip connection')}, "
                 f"{st['n_strided']} strided, downsampling x{st['downsampling']}; "
                 f"learning rate {d['learning_rate']:.4g}")
    lines.append("vertices")
    lines.append("  " + _table(["id", "type", "role", "shape (CxHxW)"],
                               [[v["id"], v["type"], v["role"],
                                 "x".join(map(str, v["shape"])) if v["shape"] else "-"] for v in d["vertices"]],
                               right={0}).replace("\n", "\n  "))
    lines.append("edges")
    lines.append("  " + _table(["id", "from", "to", "type", "channels", "kernel", "stride", "skip"],
                               [[e["id"], e["src"], e["dst"], e["type"], _fmt(e["channels"]),
                                 "x".join(map(str, e["kernel"])) if e["kernel"] else "-", _fmt(e["stride"]),
                                 "skip" if e["skip"] else ""] for e in d["edges"]],
                               right={0, 1, 2, 4, 6}).replace("\n", "\n  "))
    lines.append("fitness record")
    rec = d["record"]
    for k in sorted(rec):
        if k == "mutations":
            continue
        v = rec[k]
        lines.append(f"  {k:22s} {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}")
    if d["death"]:
        de = d["death"]
        lines.append(f"death        cause {de.get('cause')}, killed by {_fmt(de.get('killed_by'))} "
                     f"(worker {de.get('worker')})")
    lines.append(f"weights      {d['checkpoint'] or 'not kept (keep_checkpoints drops the weights of the dead)'}")
    lines.append(f"children     {', '.join(map(str, d['children'])) or 'none'}")
    return "\n".join(lines)


@main.command()
@click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("individual", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@friendly
def show(popdir: Path, individual: str, as_json: bool) -> None:
    """One individual: its DNA as a table, its fitness record, its parent and mutations."""
    from evo.analysis import describe

    emit(describe(_history(popdir), _id_arg(individual)), as_json, _show_text)


@main.command()
@click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("individual", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@friendly
def lineage(popdir: Path, individual: str, as_json: bool) -> None:
    """Every ancestor of ID back to a seed individual: the mutation and fitness at each step."""
    h = _history(popdir)
    i = _id_arg(individual)
    chain = h.lineage(i)
    steps = []
    prev = None
    for k, r in enumerate(chain):
        try:
            muts = h.record(r.id).get("mutations") or []
        except Exception:  # noqa: BLE001 - a record gone since the load: names only
            muts = [{"name": m} for m in r.mutations]
        steps.append({"step": k, "id": r.id, "parent_id": r.parent_id, "kind": r.kind, "fitness": r.fitness,
                      "delta": None if prev is None or prev.fitness is None or r.fitness is None
                      else r.fitness - prev.fitness,
                      "mutations": muts, "params": r.params, "depth": r.depth, "learning_rate": r.learning_rate,
                      "alive": r.alive})
        prev = r
    complete = bool(chain) and chain[0].is_seed
    data = {"popdir": h.root, "id": i, "complete": complete, "seed": chain[0].id if complete else None,
            "steps": steps}

    def text(_: Any) -> str:
        n = len(chain) - 1
        head = (f"lineage of {i}: {n} step{'' if n == 1 else 's'} from seed individual {chain[0].id}" if complete else
                f"lineage of {i}: ancestor {chain[0].parent_id} of {chain[0].id} is missing (run evo fsck); "
                f"showing {len(chain)} individuals")
        rows = [[s["step"], s["id"], _fmt(s["parent_id"]), "-" if s["fitness"] is None else f"{s['fitness']:.4f}",
                 "" if s["delta"] is None else f"{s['delta']:+.4f}", _fmt(s["params"]), _fmt(s["depth"]),
                 _sci(s["learning_rate"]), "yes" if s["alive"] else "no",
                 "(seed)" if s["parent_id"] is None else ("; ".join(_mutation_text(m) for m in s["mutations"])
                                                          or s["kind"] or "-")]
                for s in steps]
        return head + "\n" + _table(["step", "id", "parent", "val acc", "change", "params", "depth", "lr",
                                     "alive", "mutation"], rows, right={0, 1, 2, 3, 4, 5, 6, 7})

    emit(data, as_json, text)


@main.command()
@click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("individual", metavar="ID")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to FILE: .dot (DOT source), .png, .svg or .pdf (rendered with Graphviz `dot`).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the DOT source and where it went).")
@friendly
def graph(popdir: Path, individual: str, output: Path | None, as_json: bool) -> None:
    """The architecture of ID as a Graphviz DOT graph (on stdout unless -o)."""
    import subprocess

    from evo.genome.real2017.dna import DNA
    from evo.genome.real2017.dot import render, to_dot

    h = _history(popdir)
    i = _id_arg(individual)
    r = h[i]
    fit = "failed" if r.fitness is None else f"val acc {r.fitness:.4f}"
    src = to_dot(DNA.from_dict(h.dna(i)), title=f"individual {i} ({fit})")
    if output is not None:
        if output.suffix.lower() in (".dot", ".gv", ""):
            output.write_text(src)
        else:
            try:
                render(src, output)
            except RuntimeError as exc:
                raise UserError(f"cannot write {output}: {exc}") from exc
            except subprocess.CalledProcessError as exc:
                err = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
                raise UserError(f"Graphviz could not render {output}: {err[-1] if err else exc}") from exc
    if as_json:
        emit({"id": i, "dot": src, "output": None if output is None else str(output)}, True)
    elif output is None:
        click.echo(src, nl=False)
    else:
        click.echo(f"wrote {output}")


@main.command()
@click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The figure file (.png, .svg, .pdf).")
@click.option("--x", "axis", type=click.Choice(["time", "individuals", "flops"]), default="time", show_default=True,
              help="Horizontal axis: wall-clock hours, individuals trained, or FLOPs spent.")
@click.option("--title", default=None, help="Figure title.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the file and the best-so-far curve).")
@friendly
def plot(popdir: Path, output: Path, axis: str, title: str | None, as_json: bool) -> None:
    """The progress figure of POPDIR (Real et al. 2017, figure 1).

    Every individual is a dot at the moment it joined the population against its
    validation accuracy; living ones are ringed; the step line is the best so far; the
    ancestors of the best individual are joined in red.
    """
    from evo.plots import progress_figure

    h = _history(popdir)
    progress_figure(h, axis, path=output, title=title)
    best = h.best()
    data = {"output": str(output), "axis": axis, "individuals": len(h),
            "best": None if best is None else {"id": best.id, "fitness": best.fitness}}
    emit(data, as_json, lambda d: f"wrote {d['output']} ({d['individuals']} individuals" + (
        f", best {best.fitness:.4f} by {best.id})" if best else ")"))


def _pick_one(h: Any, individual: str | None, best: bool) -> int:
    if (individual is None) == (not best):
        raise UserError("name one individual: an ID or --best")
    if best:
        b = h.best()
        if b is None:
            raise UserError(f"{h.root} has no individual with a validation accuracy yet")
        return b.id
    return _id_arg(individual)  # type: ignore[arg-type]


@main.command()
@click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("individual", metavar="[ID]", required=False)
@click.option("--best", is_flag=True, help="The individual with the highest validation accuracy.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The model file to write (load it with evo.load_model).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def export(popdir: Path, individual: str | None, best: bool, output: Path, as_json: bool) -> None:
    """Write one trained individual (ID or --best) as a self-contained model file.

    The file holds the DNA, the trained weights and the data normalisation;
    `evo.load_model(FILE)` returns a ready nn.Module in eval mode (images in [0, 1]).
    """
    from evo.analysis import export_individual

    h = _history(popdir)
    i = _pick_one(h, individual, best)
    out = export_individual(h, i, output)
    emit(out, as_json, lambda d: f"exported individual {d['id']} (validation accuracy "
                                 f"{_fmt(d['fitness'], '.4f')}) to {d['path']}; load it with "
                                 f"evo.load_model({str(d['path'])!r})")


@main.command()
@click.argument("popdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--best", is_flag=True, help="The best individual by validation accuracy.")
@click.option("--top", "top_k", type=click.IntRange(min=1), default=None,
              help="The K best individuals whose weights are kept.")
@click.option("--id", "ids", multiple=True, type=int, help="A given individual (repeatable).")
@click.option("--ensemble", is_flag=True, help="Also evaluate their ensemble (average of softmax probabilities).")
@click.option("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda when available).")
@click.option("--no-record", is_flag=True, help="Do not append the result to POPDIR/evaluations.jsonl.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def evaluate(popdir: Path, best: bool, top_k: int | None, ids: tuple[int, ...], ensemble: bool,
             device: str | None, no_record: bool, as_json: bool) -> None:
    """Test-set accuracy: of the best individual (--best), or of each of the top K and their
    ensemble (--top K --ensemble).  The only evo command that reads the test split.

    "Best" means highest validation accuracy, as in the paper; the result is appended to
    POPDIR/evaluations.jsonl (one JSON object per line) unless --no-record.
    """
    from evo.analysis import evaluate_test, record_evaluation

    if sum([best, top_k is not None, bool(ids)]) != 1:
        raise UserError("choose what to evaluate: --best, --top K or --id ID (one of them)")
    h = _history(popdir)
    skipped = []
    if best:
        b = h.best()
        if b is None:
            raise UserError(f"{h.root} has no individual with a validation accuracy yet")
        chosen = [b.id]
    elif top_k is not None:
        chosen = []
        for r in h.ranked():
            if len(chosen) == top_k:
                break
            if h.checkpoint(r.id) is None:
                skipped.append(r.id)
            else:
                chosen.append(r.id)
        if not chosen:
            raise UserError(f"no individual of {h.root} has kept weights (keep_checkpoints="
                            f"{h.config.keep_checkpoints!r})")
    else:
        chosen = list(ids)
    if ensemble and len(chosen) < 2:
        raise UserError("--ensemble needs several models: use --top K with K >= 2, or several --id")
    res = evaluate_test(h, chosen, ensemble=ensemble, device=device)
    res["selection"] = "best" if best else (f"top {top_k}" if top_k is not None else "ids")
    res["skipped_without_weights"] = skipped
    if not no_record:
        res["recorded_in"] = record_evaluation(h.root, {k: v for k, v in res.items() if k != "recorded_in"})

    def text(d: dict) -> str:
        lines = [f"test split: {d['n_test']} images of {d['dataset']} (never used during evolution)"]
        if skipped:
            lines.append(f"note: better individuals {', '.join(map(str, skipped))} have no kept weights "
                         f"(keep_checkpoints={h.config.keep_checkpoints!r}) and were skipped")
        lines.append(_table(["rank", "id", "val acc", "test acc"],
                            [[k, m["id"], _fmt(m["fitness"], ".4f"), f"{m['test_accuracy']:.4f}"]
                             for k, m in enumerate(d["models"], 1)], right={0, 1, 2, 3}))
        if d["ensemble"]:
            lines.append(f"ensemble of {len(d['ensemble']['ids'])} (average of softmax probabilities): "
                         f"test accuracy {d['ensemble']['test_accuracy']:.4f}")
        if d.get("recorded_in"):
            lines.append(f"recorded in {d['recorded_in']}")
        return "\n".join(lines)

    emit(res, as_json, text)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
