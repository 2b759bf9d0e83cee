"""The read-only commands: ``status``, ``top``, ``show``, ``lineage``, ``graph``, ``plot``, ``export`` and
``evaluate``.  Lock-free and safe on a live population: :mod:`evo.analysis` does the reading."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from evo.cli.group import DEVICE, POPDIR, UserError, emit, friendly, main
from evo.cli.text import fmt, mutation_text, sci, table


# ------------------------------------------------------------------------------------------ inspection
# Read-only commands: lock-free, safe on a live population (evo.analysis does the reading).


def _history(popdir: Path, **kw: Any):
    from evo.analysis import load

    return load(str(popdir), **kw)


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
                     f"({'alive' if bb['alive'] else 'dead'}; {fmt(bb['params'])} params, depth "
                     f"{fmt(bb['depth'])}){seed}")
    else:
        lines.append("best         no individual committed yet")
    g = d.get("grow")
    if g:
        k_gen = "" if g["generations"] is None else f" of {g['generations']}"
        lines.append(f"generation   {g['generation']}{k_gen}: {g['committed']}/{g['members']} committed"
                     f" ({g['children_per_generation']} children of the {g['survivors_per_generation']} best "
                     f"each generation){'; the run is over' if g['finished'] else ''}")
        if g["survivors"]:
            fit = ", ".join(fmt(f, ".4f") for f in g["survivors_fitness"])
            lines.append(f"survivors    {', '.join(map(str, g['survivors']))} (validation accuracy {fit})")
        ens = g.get("final_ensemble")
        if ens:
            lines.append(f"ensemble     of the last {len(ens['ids'])} survivors: validation accuracy "
                         f"{ens['val_accuracy']:.4f} (best member {max(ens['members_val_accuracy']):.4f})")
    bud = d["budget"]
    budgets = []
    if bud["max_individuals"] is not None:
        budgets.append(f"{c['trained']}/{bud['max_individuals']} individuals")
    if bud["max_flops"] is not None:
        budgets.append(f"{sci(d['flops'])}/{sci(bud['max_flops'])} FLOPs")
    lines.append(f"FLOPs        {sci(d['flops'])} spent; budget: {', '.join(budgets) or 'none'}")
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
        lines.append("  " + table(["worker", "slurm job", "child", "kind", "parent", "last heartbeat", ""], rows,
                                   right={2, 4}).replace("\n", "\n  "))
    if d["warnings"]:
        lines.append("warnings")
        lines.extend(f"  ! {w}" for w in d["warnings"])
    return "\n".join(lines)


@main.command()
@click.argument("popdir", type=POPDIR)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of text.")
@friendly
def status(popdir: Path, as_json: bool) -> None:
    """Counts, birth rate, best individual, FLOPs, workers, knobs and warnings of POPDIR.

    Read-only and lock-free: safe to run at any time on a live population.
    """
    from evo.analysis import status as get_status

    emit(get_status(str(popdir)), as_json, _status_text)


@main.command()
@click.argument("popdir", type=POPDIR)
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
        return head + "\n" + table(
            ["rank", "id", "val acc", "alive", "params", "FLOPs", "depth", "lr", "age", "ckpt"],
            [[x["rank"], x["id"], f"{x['fitness']:.4f}", "yes" if x["alive"] else "no", fmt(x["params"]),
              sci(x["flops"]), fmt(x["depth"]), sci(x["learning_rate"]),
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
    lines.append("mutations    " + ("; ".join(mutation_text(m) for m in muts) if muts else
                                    ("none (seed)" if par is None else "none")))
    shape = "x".join(str(s) for s in d["input_shape"] or [])
    lines.extend(_genome_lines(d, shape))
    lines.append("fitness record")
    rec = d["record"]
    for k in sorted(rec):
        if k == "mutations":
            continue
        v = rec[k]
        lines.append(f"  {k:22s} {json.dumps(v, default=str) if isinstance(v, (dict, list)) else v}")
    if d["death"]:
        de = d["death"]
        lines.append(f"death        cause {de.get('cause')}, killed by {fmt(de.get('killed_by'))} "
                     f"(worker {de.get('worker')})")
    lines.append(f"weights      {d['checkpoint'] or 'not kept (keep_checkpoints drops the weights of the dead)'}")
    lines.append(f"children     {', '.join(map(str, d['children'])) or 'none'}")
    return "\n".join(lines)


def _genome_lines(d: dict, shape: str) -> list[str]:
    """``evo show``'s network lines, the same for every search space: the space and its options, the
    learning rate, the summary numbers of the space's ``describe`` and its ``tables``."""
    space = d.get("search_space")
    if space is None:
        where = "a search space this version of evo does not know"
    else:
        where = " ".join([space["name"]] + [f"{k}={v}" for k, v in sorted((space.get("options") or {}).items())])
    lr = "-" if d["learning_rate"] is None else f"{d['learning_rate']:.4g}"
    lines = [f"network      input {shape} -> {d['num_classes']} classes; {where}; learning rate {lr}"
             + ("" if d.get("genome_learning_rate") else " (a training setting)")]
    if d["stats"]:  # a count that is zero (an op that does not occur) is left out
        lines.append("summary      " + ", ".join(f"{k} {v}" for k, v in d["stats"].items()
                                                if v and k != "learning_rate"))
    for t in d.get("tables") or []:
        lines.append(t["title"])
        lines.append("  " + table(t["columns"], t["rows"]).replace("\n", "\n  "))
    if not d.get("tables"):
        lines.append("genome       not readable by this version of evo (its dna.json is shown by `evo show --json`)")
    return lines


@main.command()
@click.argument("popdir", type=POPDIR)
@click.argument("individual", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@friendly
def show(popdir: Path, individual: str, as_json: bool) -> None:
    """One individual: its DNA as a table, its fitness record, its parent and mutations."""
    from evo.analysis import describe

    emit(describe(_history(popdir), _id_arg(individual)), as_json, _show_text)


@main.command()
@click.argument("popdir", type=POPDIR)
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
        rows = [[s["step"], s["id"], fmt(s["parent_id"]), "-" if s["fitness"] is None else f"{s['fitness']:.4f}",
                 "" if s["delta"] is None else f"{s['delta']:+.4f}", fmt(s["params"]), fmt(s["depth"]),
                 sci(s["learning_rate"]), "yes" if s["alive"] else "no",
                 "(seed)" if s["parent_id"] is None else ("; ".join(mutation_text(m) for m in s["mutations"])
                                                          or s["kind"] or "-")]
                for s in steps]
        return head + "\n" + table(["step", "id", "parent", "val acc", "change", "params", "depth", "lr",
                                     "alive", "mutation"], rows, right={0, 1, 2, 3, 4, 5, 6, 7})

    emit(data, as_json, text)


@main.command()
@click.argument("popdir", type=POPDIR)
@click.argument("individual", metavar="ID")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to FILE: .dot (DOT source), .png, .svg or .pdf (rendered with Graphviz `dot`).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the DOT source and where it went).")
@friendly
def graph(popdir: Path, individual: str, output: Path | None, as_json: bool) -> None:
    """The architecture of ID as a Graphviz DOT graph (on stdout unless -o)."""
    import subprocess

    from evo.genome import space_of
    from evo.genome.graphviz import render

    h = _history(popdir)
    i = _id_arg(individual)
    r = h[i]
    fit = "failed" if r.fitness is None else f"val acc {r.fitness:.4f}"
    space = space_of(h.config)
    src = space.draw(space.from_dict(h.dna(i)), title=f"individual {i} ({fit})")
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
@click.argument("popdir", type=POPDIR)
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
@click.argument("popdir", type=POPDIR)
@click.argument("individual", metavar="[ID]", required=False)
@click.option("--best", is_flag=True, help="The individual with the highest validation accuracy.")
@click.option("--top", "top_k", type=click.IntRange(min=1), default=None,
              help="With --ensemble: the K best individuals whose weights are kept.")
@click.option("--ensemble", is_flag=True, help="Write the --top K as one ensemble (average of softmax probabilities).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The model file to write (load it with evo.load_model).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def export(popdir: Path, individual: str | None, best: bool, top_k: int | None, ensemble: bool, output: Path,
           as_json: bool) -> None:
    """Write one trained individual (ID or --best) as a self-contained model file, or the top K
    as one ensemble file (--top K --ensemble).

    The file holds the DNA, the trained weights and the data normalisation (of each member);
    `evo.load_model(FILE)` returns a ready nn.Module in eval mode (images in [0, 1]): for an
    ensemble, one that returns the mean of the members' softmax probabilities.
    """
    from evo.analysis import export_ensemble, export_individual

    h = _history(popdir)
    if ensemble or top_k is not None:
        if top_k is None or not ensemble or best or individual is not None:
            raise UserError("an ensemble is written with --top K --ensemble (and no ID or --best)")
        chosen = [r.id for r in h.ranked() if h.checkpoint(r.id) is not None][:top_k]
        if not chosen:
            raise UserError(f"no individual of {h.root} has kept weights (keep_checkpoints="
                            f"{h.config.keep_checkpoints!r})")
        out = export_ensemble(h, chosen, output)
        emit(out, as_json, lambda d: f"exported the ensemble of {len(d['ids'])} (ids {', '.join(map(str, d['ids']))}; "
                                     f"validation accuracy {', '.join(fmt(f, '.4f') for f in d['fitness'])}) to "
                                     f"{d['path']}; evo.load_model({str(d['path'])!r}) averages their softmax")
        return
    i = _pick_one(h, individual, best)
    out = export_individual(h, i, output)
    emit(out, as_json, lambda d: f"exported individual {d['id']} (validation accuracy "
                                 f"{fmt(d['fitness'], '.4f')}) to {d['path']}; load it with "
                                 f"evo.load_model({str(d['path'])!r})")


@main.command()
@click.argument("popdir", type=POPDIR)
@click.option("--best", is_flag=True, help="The best individual by validation accuracy.")
@click.option("--top", "top_k", type=click.IntRange(min=1), default=None,
              help="The K best individuals whose weights are kept.")
@click.option("--id", "ids", multiple=True, type=int, help="A given individual (repeatable).")
@click.option("--ensemble", is_flag=True, help="Also evaluate their ensemble (average of softmax probabilities).")
@click.option("--device", type=DEVICE, default=None,
              help="auto, cpu, cuda, cuda:N or mps (default: cuda when available).")
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
        lines.append(table(["rank", "id", "val acc", "test acc"],
                            [[k, m["id"], fmt(m["fitness"], ".4f"), f"{m['test_accuracy']:.4f}"]
                             for k, m in enumerate(d["models"], 1)], right={0, 1, 2, 3}))
        if d["ensemble"]:
            lines.append(f"ensemble of {len(d['ensemble']['ids'])} (average of softmax probabilities): "
                         f"test accuracy {d['ensemble']['test_accuracy']:.4f}")
        if d.get("recorded_in"):
            lines.append(f"recorded in {d['recorded_in']}")
        return "\n".join(lines)

    emit(res, as_json, text)
