"""``evo report POPDIR... -o report.html``: one self-contained HTML page (see :mod:`evo.report`)."""

from __future__ import annotations

from pathlib import Path

import click

from evo.cli.group import POPDIR, emit, friendly, main


@main.command("report")
@click.argument("popdirs", nargs=-1, required=True, metavar="POPDIR...", type=POPDIR)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML file to write.")
@click.option("--title", default=None, help="Page title.")
@click.option("--top", "top_n", type=click.IntRange(min=1), default=10, show_default=True,
              help="Rows of each leaderboard.")
@click.option("--max-drawings", type=click.IntRange(min=0), default=40, show_default=True,
              help="At most this many architecture drawings along the best individual's lineage (the latest "
                   "changes, and the seed).")
@click.option("--no-graphviz", is_flag=True, help="List architectures as text even where Graphviz is installed.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the file and what it shows).")
@friendly
def report(popdirs: tuple[Path, ...], output: Path, title: str | None, top_n: int, max_drawings: int,
           no_graphviz: bool, as_json: bool) -> None:
    """One self-contained HTML page about POPDIR (or several: with their comparison).

    State and budget, the progress figure, the leaderboard, the best individual's lineage with a
    drawing of each ancestor's architecture, architecture trends, workers and warnings.  Figures
    are embedded: the file opens from any file system in a browser, with no server or network.
    Read-only: safe on a live population.
    """
    from evo.report import write_report

    info = write_report([str(p) for p in popdirs], output, title=title, top_n=top_n, max_drawings=max_drawings,
                        graphviz=False if no_graphviz else None)
    emit(info, as_json, lambda d: f"wrote {d['output']} ({len(d['populations'])} population"
         f"{'' if len(d['populations']) == 1 else 's'}, {d['bytes'] / 1e6:.1f} MB)")
