"""The ``evo`` command group, its exit codes and the one way a command reports a problem.

The commands live in :mod:`evo.cli.population` (data sets, init, run control, fsck),
:mod:`evo.cli.workers` (worker, submit, demo), :mod:`evo.cli.inspection` (the read-only
commands) and :mod:`evo.cli.report`; they parse, call the library and print text or ``--json``.
No logic of their own lives there.

Exit codes, the same in every command (README.md, "Exit codes"):

====  =========================================================================================
0     done; ``evo worker``: the experiment is finished or stopped
1     the command ran and reports a failure (``evo fsck``: problems remain; ``evo submit
      --wait``: a worker did not complete), or an unexpected error (a traceback: a bug)
2     a problem a person must fix first, told in one line that names the option or file and
      the fix: a bad option or value, a directory that is not a population, a missing,
      unreadable or damaged file, a full or read-only file system
3     ``evo worker``: interrupted (SIGTERM, SIGUSR2, ``--time-limit``) after handing its child
      back; run it again (``slurm/worker.sbatch`` requeues it)
====  =========================================================================================
"""

from __future__ import annotations

import errno
import functools
import json
from pathlib import Path
from typing import Any, Callable

import click

from evo import __version__
from evo.network.settings import DEVICE_FORMS, SettingsError, parse_device

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_NEEDS_FIX", "EXIT_INTERRUPTED", "EXIT_CODES", "DEVICE", "POPDIR",
           "UserError", "emit", "exit_code_of", "friendly", "main", "open_population", "parse_kv"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NEEDS_FIX = 2
EXIT_INTERRUPTED = 3
#: the table of ``evo --help`` and README.md
EXIT_CODES = (
    (EXIT_OK, "done; evo worker: the experiment is finished or stopped"),
    (EXIT_FAILED, "a failure the command reports (fsck: problems remain; submit --wait: a worker failed), "
                  "or a bug"),
    (EXIT_NEEDS_FIX, "a problem to fix first, told in one line that names the option or file and the fix"),
    (EXIT_INTERRUPTED, "evo worker: interrupted after handing its child back; run it again (worker.sbatch "
                       "requeues it)"),
)

#: OS errors that a person fixes (space, quota, permissions, a read-only mount)
_FIXABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class UserError(click.ClickException):
    """A problem the user must fix: one line on stderr, exit code 2."""

    exit_code = EXIT_NEEDS_FIX


def exit_code_of(exc: BaseException) -> int | None:
    """The exit code of an error that is told in one line, or None for an unexpected one (a bug,
    shown with its traceback).

    evo's own errors name the file or option and the fix: exit 2, unless the error class says
    otherwise (``exit_code``).  So are the OS errors about the user's files and file systems.
    """
    code = getattr(exc, "exit_code", None)
    if isinstance(code, int) and not isinstance(exc, SystemExit):
        return code
    if isinstance(exc, AssertionError):
        return None
    if type(exc).__module__.startswith("evo.") or isinstance(exc, (
            FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError, ValueError)):
        return EXIT_NEEDS_FIX
    if isinstance(exc, OSError) and exc.errno in _FIXABLE_ERRNOS:
        return EXIT_NEEDS_FIX
    return None


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors of :func:`exit_code_of` into one line on stderr and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except Exception as exc:
            code = exit_code_of(exc)
            if code is None:
                raise
            err = UserError(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            err.exit_code = code
            raise err from exc

    return wrapper


def emit(data: Any, as_json: bool, text: Callable[[Any], str] | str | None = None) -> None:
    """Print ``data`` as JSON (``--json``) or as the text ``text`` makes of it."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    elif callable(text):
        click.echo(text(data))
    elif text is not None:
        click.echo(text)
    else:
        click.echo(data)


def parse_kv(pairs: tuple[str, ...], what: str) -> dict[str, Any]:
    """``KEY=VALUE`` options (values read as JSON when they parse, else as strings)."""
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


class _Device(click.ParamType):
    """``--device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, checked without torch
    (:func:`evo.network.settings.parse_device`, the one parser of device strings)."""

    name = "device"
    FORMS = DEVICE_FORMS

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        try:
            parse_device(text)
        except SettingsError as exc:
            raise UserError(str(exc)) from None
        return text


DEVICE = _Device()


class _PopDir(click.ParamType):
    """``POPDIR``: an existing directory, else one line (exit 2) naming it and the fix; whether it
    holds a population is the population layer's check (``NotAPopulationError``, exit 2 too)."""

    name = "popdir"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        path = Path(value)
        if not path.exists():
            raise UserError(f"{path}: no such directory. Fix: check the path, or create a population with "
                            f"`evo init {path}`")
        if not path.is_dir():
            raise UserError(f"{path} is a file, not a population directory. Fix: give the directory "
                            f"`evo init` created")
        return path


POPDIR = _PopDir()


def open_population(popdir: Path | str) -> Any:
    """The population at ``popdir`` (``NotAPopulationError``, exit 2, if it is none)."""
    from evo.population import Population

    return Population.open(str(popdir))


def _exit_codes_help() -> str:
    return "\b\nExit codes (the same in every command):\n" + "\n".join(
        f"  {code}  {text}" for code, text in EXIT_CODES)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=_exit_codes_help())
@click.version_option(__version__, prog_name="evo")
def main() -> None:
    """Large-Scale Evolution of Image Classifiers on Slurm, through a shared file system.

    Typical use: evo init POPDIR -> sbatch slurm/worker.sbatch POPDIR (or evo submit) ->
    evo status / top / plot -> evo export / evaluate.  Try `evo demo` first.
    """
