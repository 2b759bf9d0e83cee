"""The report's section on one population: what ``evo status``, ``evo top``, ``evo lineage``,
``evo plot`` and ``bin/architecture-trends`` show, on one page.

State and budget; the progress figure (Real et al. 2017, figure 1); the leaderboard; the best
individual's lineage from a seed, with a drawing of each ancestor's architecture; architecture
trends; workers holding a lease and the warnings of ``evo status``; test-set evaluations.
"""

from __future__ import annotations

import json
import time
from typing import Any

from evo import analysis, plots
from evo.report.drawings import Drawer, space_of
from evo.report.html import esc, fmt, png_img, sci, section, table

__all__ = ["population_section"]


def _card(key: str, value: str) -> str:
    return f'<div class="card"><div class="k">{esc(key)}</div><div class="v">{value}</div></div>'


def _bar(fraction: float) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    return f'<div class="bar" title="{pct:.0f}%"><div style="width:{pct:.1f}%"></div></div>'


def _mutation_text(m: Any) -> str:
    if not isinstance(m, dict):
        return str(m)
    d = m.get("detail")
    if isinstance(d, dict) and d:
        inner = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={json.dumps(v, default=str)[:40]}"
                          for k, v in d.items())
        return f"{m.get('name')} ({inner})"
    return str(m.get("name"))


def _state(st: dict) -> str:
    c, k, b = st["counts"], st["knobs"], st["budget"]
    best = st["best"]
    cards = [
        _card("state", esc(st["state"]) + (f'<div class="muted">{esc(st["budget_reason"])}</div>'
                                          if st.get("budget_reason") else "")),
        _card("best validation accuracy", "-" if best is None else
              f"{best['fitness']:.4f}<div class=\"muted\">individual {best['id']} "
              f"({'alive' if best['alive'] else 'dead'})</div>"),
        _card("best seed individual", fmt(st["best_seed_fitness"], ".4f")),
        _card("individuals trained", f"{c['trained']}<div class=\"muted\">{c['failed']} failed</div>"),
        _card("alive / in flight / pending / dead",
              f"{c['alive']} / {c['inflight']} / {c['pending']} / {c['dead']}"),
        _card("births per hour", f"{st['births_per_hour']['overall']:.1f}<div class=\"muted\">"
              f"{st['births_per_hour']['last_hour']} in the last hour</div>"),
        _card("running for" if st["state"] != "finished" else "ran for",
              esc(analysis.format_duration(st["elapsed_s"]))),
    ]
    budget_rows = []
    if b["max_flops"]:
        budget_rows.append(["FLOPs", f"{sci(st['flops'])} of {sci(b['max_flops'])}",
                            _bar(st["flops"] / b["max_flops"])])
    if b["max_individuals"]:
        budget_rows.append(["individuals", f"{c['trained']} of {b['max_individuals']}",
                            _bar(c["trained"] / b["max_individuals"])])
    if not budget_rows:
        budget_rows.append(["FLOPs", f"{sci(st['flops'])} spent", "no budget"])
    knobs = [[key, fmt(v)] for key, v in k.items()] + [
        ["strategy", st["strategy"]],
        ["control", ", ".join(f"{key} {fmt(v)}" for key, v in st["control"].items())]]
    return (f'<div class="cards">{"".join(cards)}</div>\n<h3>Budget</h3>\n'
            + table(["budget", "spent", ""], budget_rows, raw={2})
            + "\n<h3>Strategy and knobs</h3>\n" + table(["knob", "value"], knobs))


def _leaderboard(h: Any, n: int) -> str:
    top = h.top(n)
    if not top:
        return "<p>No individual with a validation accuracy yet.</p>"
    now = time.time()
    rows = []
    for k, r in enumerate(top, 1):
        rows.append([k, r.id, f"{r.fitness:.4f}", "yes" if r.alive else "no", fmt(r.params), sci(r.flops),
                     fmt(r.depth), fmt(r.learning_rate, ".4g"),
                     "-" if r.finished_at is None else analysis.format_duration(max(0.0, now - r.finished_at)),
                     fmt(r.parent_id), ", ".join(r.mutations) or ("(seed)" if r.is_seed else "-"),
                     "yes" if h.checkpoint(r.id) is not None else "no"])
    return table(["rank", "id", "val acc", "alive", "params", "FLOPs", "depth", "lr", "age", "parent",
                  "mutations", "weights kept"], rows, numeric={0, 1, 2, 4, 5, 6, 7, 9},
                 row_classes=["best"] + [""] * (len(rows) - 1))


def _lineage(h: Any, drawer: Drawer, max_drawings: int) -> str:
    best = h.best()
    if best is None:
        return "<p>No best individual yet.</p>"
    chain = h.lineage(best.id)
    complete = bool(chain) and chain[0].is_seed
    head = (f"<p>{len(chain) - 1} steps from seed individual {chain[0].id} to the best, individual {best.id} "
            f"(validation accuracy {best.fitness:.4f}).</p>" if complete else
            f'<p class="warn">The ancestor {chain[0].parent_id} of {chain[0].id} is missing (run '
            f"<code>evo fsck</code>); showing {len(chain)} individuals.</p>")
    rows, cards = [], []
    prev = None
    # Which ancestors get a drawing: the architecture changes, newest first, at most max_drawings.
    dnas: dict[int, dict | None] = {}
    for r in chain:
        try:
            dnas[r.id] = h.dna(r.id)
        except Exception:  # noqa: BLE001 - a record gone since the load
            dnas[r.id] = None
    drawn: list[int] = []
    last_graph = None
    for r in chain:
        d = dnas[r.id]
        graph = None if d is None else json.dumps({k: v for k, v in d.items() if k != "learning_rate"},
                                                  sort_keys=True)
        if d is not None and graph != last_graph:
            drawn.append(r.id)
        last_graph = graph
    keep = set(drawn[-max_drawings:]) if max_drawings > 0 else set()
    if drawn and max_drawings > 0:
        keep.add(drawn[0])  # the seed's drawing, for the start
    for k, r in enumerate(chain):
        try:
            muts = h.record(r.id).get("mutations") or []
        except Exception:  # noqa: BLE001
            muts = [{"name": m} for m in r.mutations]
        delta = None if prev is None or prev.fitness is None or r.fitness is None else r.fitness - prev.fitness
        rows.append([k, r.id, fmt(r.fitness, ".4f"), "" if delta is None else f"{delta:+.4f}", fmt(r.params),
                     fmt(r.depth), fmt(r.learning_rate, ".4g"), "yes" if r.alive else "no",
                     "(seed)" if r.parent_id is None else ("; ".join(_mutation_text(m) for m in muts)
                                                           or (r.kind or "-"))])
        prev = r
        if r.id in keep:
            fit = "failed" if r.fitness is None else f"val acc {r.fitness:.4f}"
            body, _ = drawer.draw(dnas[r.id], title=f"individual {r.id} ({fit})")
            cards.append(f'<div class="ancestor"><div class="head"><b>step {k}: individual {r.id}</b> '
                         f"{esc(fit)}</div>{body}</div>")
    skipped = len(drawn) - len(keep)
    notes = []
    if drawer.fallback_reason:
        notes.append(f'<p class="note">{esc(drawer.fallback_reason)}.</p>')
    same = len(chain) - len(drawn)
    if same:
        notes.append(f'<p class="muted">{same} ancestors kept their parent\'s graph (a learning-rate or weight '
                     "mutation) and are not drawn again.</p>")
    if skipped > 0:
        notes.append(f'<p class="muted">{skipped} older changes of architecture are not drawn '
                     f"(--max-drawings {max_drawings}); <code>evo graph {esc(h.root)} ID</code> draws any.</p>")
    return (head + table(["step", "id", "val acc", "change", "params", "depth", "lr", "alive", "mutation"], rows,
                         numeric={0, 1, 2, 3, 4, 5, 6})
            + "\n<h3>Architectures along the lineage</h3>\n" + "".join(notes)
            + f'<div class="lineage">{"".join(cards)}</div>')


def _workers(st: dict) -> str:
    ws = st["workers"]
    out = []
    if ws:
        rows = [[w["worker"], w["host"], w["slurm_job"] or "-", w["child"], w["kind"], fmt(w["parent"]),
                 "-" if w["heartbeat_age_s"] is None else analysis.format_duration(w["heartbeat_age_s"]) + " ago",
                 "EXPIRED" if w["expired"] else "ok"] for w in ws]
        out.append(table(["worker", "host", "Slurm job", "child", "kind", "parent", "last heartbeat", "lease"],
                         rows, numeric={3, 5}))
    else:
        out.append(f"<p>No worker holds a lease ({st['recent_workers']} committed an individual in the last "
                   "hour).</p>")
    out.append("<h3>Warnings</h3>")
    if st["warnings"]:
        out.extend(f'<div class="warn">{esc(w)}</div>' for w in st["warnings"])
    else:
        out.append('<div class="ok">No warnings.</div>')
    return "\n".join(out)


def _evaluations(h: Any, anchor: str) -> str:
    evs = analysis.read_evaluations(h.root)
    if not evs:
        return ""
    rows = []
    for e in evs[-10:]:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e["t"])) if isinstance(e.get("t"), (int, float)) \
            else "-"
        models = ", ".join(f"{m.get('id')}: {m.get('test_accuracy', float('nan')):.4f}"
                           for m in (e.get("models") or []) if isinstance(m, dict))
        ens = e.get("ensemble") or {}
        rows.append([when, e.get("selection", "-"), models, fmt(ens.get("test_accuracy"), ".4f"),
                     fmt(e.get("n_test"))])
    return section(f"{anchor}-evaluations", "Test-set evaluations (evo evaluate)",
                   table(["when", "selection", "test accuracy by id", "ensemble", "test images"], rows), level=3)


def population_section(h: Any, anchor: str, label: str, *, top_n: int = 10, max_drawings: int = 40,
                       graphviz: bool | None = None) -> tuple[str, dict]:
    """The HTML of one population and a few facts about it (for tests and the caller's summary)."""
    st = analysis.status(h)
    try:
        space = space_of(h.config)
    except Exception:  # noqa: BLE001 - a space this version does not know: architectures as text
        space = None
    drawer = Drawer(space, graphviz=graphviz)
    parts = [f'<p class="muted">{esc(h.root)} &middot; {len(h)} individuals &middot; dataset '
             f"{esc(h.config.dataset)} &middot; read in {st['load_s']:.2f} s</p>"]
    parts.append(section(f"{anchor}-state", "State and budget", _state(st), level=3))
    fig = plots.progress_figure(h, "time")
    parts.append(section(f"{anchor}-progress", "Progress",
                         f"<figure>{png_img(fig, f'progress of {label}')}<figcaption>Every individual at the "
                         "moment it joined the population against its validation accuracy; living ones ringed; "
                         "the step line is the best so far; the ancestry of the best in red (Real et al. 2017, "
                         "figure 1).</figcaption></figure>", level=3))
    parts.append(section(f"{anchor}-top", "Leaderboard", _leaderboard(h, top_n), level=3))
    parts.append(section(f"{anchor}-lineage", "Lineage of the best individual", _lineage(h, drawer, max_drawings),
                         level=3))
    if len(h):
        tfig = plots.architecture_trends_figure(h)
        trends = (f"<figure>{png_img(tfig, f'architecture trends of {label}')}<figcaption>Median and quartiles of "
                  "the individuals born in each part of the run, and the best so far (red).</figcaption></figure>")
    else:
        trends = "<p>No individual yet.</p>"
    parts.append(section(f"{anchor}-trends", "Architecture trends", trends, level=3))
    parts.append(section(f"{anchor}-workers", "Workers and warnings", _workers(st), level=3))
    parts.append(_evaluations(h, anchor))
    body = f'<div class="population" id="{esc(anchor)}"><h2>{esc(label)}</h2>\n' + "\n".join(parts) + "</div>"
    return body, {"status": st, "graphviz": drawer.dot is not None}
