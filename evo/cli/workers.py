"""The commands that run workers: ``worker`` (one, here), ``submit`` (many, through submitit) and
``demo`` (a small evolution with local workers)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from evo.cli.group import DEVICE, EXIT_FAILED, POPDIR, emit, exit_code_of, friendly, main


@main.command()
@click.argument("popdir", type=POPDIR)
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds to work before handing the in-flight child back and exiting with code 3.")
@click.option("--worker-id", default=None, help="Name in leases and records (default: job id, host, pid).")
@click.option("--device", type=DEVICE, default=None,
              help="auto, cpu, cuda, cuda:N or mps (default: cuda when available).")
@click.option("--max-children", type=click.IntRange(min=0), default=None,
              help="Exit (code 0) after training this many (each worker of a team).")
@click.option("--children-per-gpu", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run a team of this many workers sharing the GPU, each training its own child (signals "
                   "reach them all; one exit code). Without a GPU: that many on the CPU, the threads divided.")
@click.option("--slot", type=click.IntRange(min=0), default=None, hidden=True,
              help="This worker is that member of a team (set by the team).")
@click.option("--quiet", "-q", is_flag=True, help="Only errors.")
def worker(popdir: Path, time_limit: float | None, worker_id: str | None, device: str | None,
           max_children: int | None, children_per_gpu: int, slot: int | None, quiet: bool) -> None:
    """Run one stateless worker on POPDIR until the experiment ends.

    With --children-per-gpu K, a team of K workers sharing the GPU (several small children per
    GPU): this process starts them, forwards SIGTERM, SIGUSR2 and SIGINT to all of them and
    exits with one code (the first failure's, else 3 if one was interrupted, else 0).

    Exit codes: 0 finished or stopped; 3 interrupted (SIGTERM, SIGUSR2, --time-limit) after
    handing the in-flight child back for resumption; 2 a problem a person must fix first (a bad
    option, not a population, a damaged file, a full or read-only file system: one line says
    which; a child in training was handed back); 1 an unexpected error (a traceback).
    """
    import time as _time

    from evo.worker.signals import StopRequest

    stop = StopRequest()
    stop.install()                 # before torch is imported: a warning during start-up is kept
    try:
        member = "" if slot is None else f"s{slot} "    # which worker of a team says it

        def progress(msg: str) -> None:
            if not quiet:
                click.echo(f"[{_time.strftime('%H:%M:%S')}] {member}{msg}", err=False)

        try:
            if children_per_gpu > 1 and slot is None:    # the team: starts the workers, trains nothing
                from evo.worker.team import run_team

                code = run_team(str(popdir), children_per_gpu=children_per_gpu, stop=stop, worker_id=worker_id,
                                device=device, time_limit_s=time_limit, max_children=max_children, quiet=quiet,
                                progress=progress)
            else:
                if slot is not None:
                    from evo.worker.team import die_with_team

                    die_with_team()
                from evo.worker.loop import run_worker

                code = run_worker(str(popdir), worker_id=worker_id, time_limit_s=time_limit, device=device,
                                  max_children=max_children, progress=progress, handle_signals=False, stop=stop,
                                  children_per_gpu=children_per_gpu, slot=slot)
        except click.ClickException:
            raise
        except Exception as exc:
            exit_code = exit_code_of(exc)      # the same code as every other command gives it
            if exit_code is None:
                raise
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"evo worker: error: {text}", err=True)
            sys.exit(exit_code)
    finally:
        stop.ignore_from_now()     # the exit code is decided: a late signal must not replace it
    sys.exit(code)


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
@click.argument("popdir", type=POPDIR)
@click.option("--workers", "-n", type=click.IntRange(min=1), required=True,
              help="Workers to submit (the size of the job array).")
@click.option("--parallel", "--max-running", "parallel", type=click.IntRange(min=1), default=None,
              help="At most this many running at once (the array's %N throttle; default: all).")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--time", "time_limit", default=None, metavar="TIME",
              help="Time limit of one run of a worker: minutes or [D-]HH:MM:SS (default 240 min on Slurm). "
                   "Workers are requeued at the limit and lose nothing.")
@click.option("--gpus-per-worker", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--children-per-gpu", type=click.IntRange(min=1), default=1, show_default=True,
              help="Each worker job runs a team of this many worker processes on each of its GPUs (on its CPUs "
                   "without one), each training its own child; one requeue for the team.")
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
@click.option("--device", type=DEVICE, default=None,
              help="auto, cpu, cuda, cuda:N or mps for the workers (default: cuda when available).")
@click.option("--executor", type=click.Choice(["slurm", "local"]), default="slurm", show_default=True,
              help="slurm: a job array; local: background processes on this machine (submitit's local executor).")
@click.option("--dry-run", is_flag=True, help="Print the parameters and the sbatch script; submit nothing.")
@click.option("--wait", "wait_", is_flag=True, help="Wait until every worker has ended; exit 1 if one failed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def submit(popdir: Path, workers: int, parallel: int | None, partition: str | None, time_limit: str | None,
           gpus_per_worker: int, children_per_gpu: int, cpus_per_worker: int | None, mem: str | None,
           account: str | None, qos: str | None, sbatch_opts: tuple[str, ...], setup: tuple[str, ...],
           signal_delay: int, max_requeues: int, job_name: str, device: str | None, executor: str,
           dry_run: bool, wait_: bool, as_json: bool) -> None:
    """Submit WORKERS stateless workers on POPDIR through submitit.

    A Slurm job array (or local background processes) whose tasks each run one worker until the
    experiment is finished.  Before the time limit each worker checkpoints its child, hands it back
    and is requeued.  The job ids are printed and appended to POPDIR/jobs.jsonl.
    """
    from evo import launch

    opts = launch.SubmitOptions(
        workers=workers, executor=executor, parallel=parallel, partition=partition,
        time_min=None if time_limit is None else launch.parse_time(time_limit),
        gpus_per_worker=gpus_per_worker, children_per_gpu=children_per_gpu, cpus_per_worker=cpus_per_worker,
        mem=mem, account=account, qos=qos,
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
        sys.exit(EXIT_FAILED)


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
