"""Coordination benchmark: how fast many workers can take selection steps on one population.

N processes do selection steps with no training (next_task + commit of a tiny child) on a
population of P=1000 living individuals, with 100 and with 100,000 dead individuals in the
history.  Reported per configuration: lock-held time (median, p99), steps per second (all
processes together), and the latency of the store calls (next_task: lease to task ready;
commit: training end to commit).  As a reference measured in the same run, Optuna's
JournalFileBackend does ask + tell with the same number of processes (RandomSampler, so only
the storage is measured); skipped with a message if optuna is not importable.

A second part measures the per-child overhead of the store calls in one uncontended process
with a realistic checkpoint (--checkpoint-mb, default 20 MB ~ 5M float32 parameters), fsync
included.

Also reported: CPU time per step (all processes), cores busy (steps/s x CPU per step: how much
of the machine a system used; one that uses all of it is bound by CPU, not by its lock), and the
lock's timeline merged over the processes: the fraction of the run during which it was held,
and the hand-off gap (the lock idle between a release and the next acquisition while someone
was waiting).

Usage:
    python benchmarks/coordination.py [--procs 4 8 32] [--seconds 8] [--dir /path/on/the/fs/to/test]
        [--json out.json] [--no-docs] [--no-overhead]

The table is printed and written to docs/benchmarks.md under "## Coordination" (the other
sections of that file are kept).

Freed inodes: on ext4 without a journal, allocating an inode checks and skips every inode of its
block group freed in the last 60 s (up to 6 minutes while the inode table is not yet written
back), so each file deleted makes the next creations in that group slower for minutes. The set-up therefore frees no inode before a measurement (a seed's task.json
becomes its fitness.json), and the populations are only removed at the very end: removing one
between runs would slow the file creations of the run after it, evo's or Optuna's.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from evo.base.files import atomic_write_json  # noqa: E402
from evo.population.locks import filesystem_of  # noqa: E402
from evo.population import Population, WorkerInfo  # noqa: E402

FORK = multiprocessing.get_context("fork")
DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmarks.md")


# ------------------------------------------------------------------------------------------
# population set-up (direct file writes in the documented format, for speed)
# ------------------------------------------------------------------------------------------


def build_population(root: str, P: int, dead: int, lock: str) -> Population:
    pop = Population.create(root, population_size=P, lock=lock, lease_ttl_s=600, heartbeat_s=30)
    rng = random.Random(0)
    now = time.time()
    dna = {"vertices": [[0, "LINEAR"], [1, "LINEAR"]], "edges": [], "learning_rate": 0.1}
    for i in range(1, P + 1):  # train the seeds instantly
        d = os.path.join(root, "pending", str(i))
        rec = {"format_version": 1, "id": i, "parent_id": None, "kind": "seed", "outcome": "ok",
               "fitness": rng.random(), "flops": 1.0, "born_at": now, "finished_at": now,
               "task_uid": f"s{i}", "generation": 0}
        with open(os.path.join(d, "dna.json"), "w") as f:
            json.dump(dna, f)
        with open(os.path.join(d, "checkpoint.pt"), "wb") as f:
            f.write(b"\0" * 1024)
        # task.json becomes fitness.json: the build frees no inode (see "Freed inodes" above)
        with open(os.path.join(d, "task.json"), "w") as f:
            json.dump(rec, f)
        os.rename(os.path.join(d, "task.json"), os.path.join(d, "fitness.json"))
        os.rename(d, os.path.join(root, "alive", str(i)))
    # dead history: hard links to two template files (cheap), ids above the living
    tdir = os.path.join(root, "tmp", "template")

    def template():
        shutil.rmtree(tdir, ignore_errors=True)
        os.mkdir(tdir)
        with open(os.path.join(tdir, "dna.json"), "w") as f:
            json.dump(dna, f)
        with open(os.path.join(tdir, "fitness.json"), "w") as f:
            json.dump({"format_version": 1, "id": 0, "fitness": 0.1, "outcome": "ok", "flops": 1.0}, f)

    for i in range(P + 1, P + dead + 1):
        if (i - P - 1) % 50_000 == 0:  # file systems cap hard links per inode (ext4: 65,000)
            template()
        sd = os.path.join(root, "dead", str(i // 1000))
        if i == P + 1 or i % 1000 == 0:
            os.makedirs(sd, exist_ok=True)
        d = os.path.join(sd, str(i))
        os.mkdir(d)
        os.link(os.path.join(tdir, "dna.json"), os.path.join(d, "dna.json"))
        os.link(os.path.join(tdir, "fitness.json"), os.path.join(d, "fitness.json"))
    shutil.rmtree(tdir)
    pop.ids.write_next(P + dead + 1)
    atomic_write_json(os.path.join(root, "state.json"),
                      {"trained": P + dead, "flops": float(P + dead), "top": [], "updated_at": now})
    return pop


# ------------------------------------------------------------------------------------------
# the evo worker: selection steps with no training
# ------------------------------------------------------------------------------------------


def evo_worker(root, seconds, seed, start_at, out_q):
    import warnings

    warnings.simplefilter("ignore")
    pop = Population.open(root)
    pop.keep_stats = True
    me = WorkerInfo.from_env(id=f"bench{seed}")
    rng = random.Random(seed)
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + seconds
    steps = 0
    ckpt = b"\0" * 1024
    cpu0 = _cpu()

    def write(path):
        with open(path, "wb") as f:
            f.write(ckpt)

    task = None
    while time.time() < end:
        if task is None:
            task = pop.next_task(me, rng)
        if not task:
            task = None
            time.sleep(0.001)
            continue
        dna = task.dna or task.parent_dna
        task.lease.save_dna(dna, ["IDENTITY"])  # as evo/worker.py does once the child is mutated
        # as evo/worker.py does: the next task is taken in the commit's critical section
        more = time.time() < end
        res = pop.commit(task, dna, {"fitness": rng.random(), "flops": 1.0, "steps_trained": 0},
                         checkpoint=write, next_for=me if more else None, rng=rng)
        task = res.next
        steps += 1
    if task:
        pop.release(task, reason="benchmark over")
    out_q.put({"steps": steps, "cpu": _cpu() - cpu0, **pop.stats})


def _cpu():
    t = os.times()
    return t.user + t.system


def lock_timeline(results):
    """The lock's timeline merged over all processes: busy fraction of the run, and the hand-off
    gap (from one holder's release to the next acquisition, when that acquirer was already
    waiting at the release: time the lock sat idle although someone wanted it)."""
    iv = []
    for r in results:
        for at, held, wait in zip(r.get("lock_at", []), r["lock_held"], r["lock_wait"]):
            iv.append((at, at + held, at - wait))
    if not iv:
        return None, []
    iv.sort()
    lo, hi = iv[0][0], max(e for _, e, _ in iv)
    busy, end = 0.0, lo  # the union of the intervals (they only overlap if exclusion failed)
    for a, e, _ in iv:
        if e > end:
            busy += e - max(a, end)
            end = e
    busy /= max(hi - lo, 1e-9)
    gaps = [nxt[0] - cur[1] for cur, nxt in zip(iv, iv[1:]) if nxt[2] < cur[1]]
    return busy, gaps


def run_evo(root, procs, seconds):
    q = FORK.Queue()
    start_at = time.time() + 1.0 + procs * 0.02
    ps = [FORK.Process(target=evo_worker, args=(root, seconds, k, start_at, q)) for k in range(procs)]
    for p in ps:
        p.start()
    results = [q.get(timeout=seconds + 120) for _ in ps]
    for p in ps:
        p.join()
    merged = {k: [x for r in results for x in r[k]] for k in ("lock_held", "lock_wait", "next_task", "commit")}
    merged["steps"] = sum(r["steps"] for r in results)
    merged["steps_per_s"] = merged["steps"] / seconds
    merged["cpu_per_step"] = sum(r["cpu"] for r in results) / max(merged["steps"], 1)
    merged["busy"], merged["gaps"] = lock_timeline(results)
    return merged


# ------------------------------------------------------------------------------------------
# Optuna reference
# ------------------------------------------------------------------------------------------


def optuna_worker(path, seconds, seed, start_at, out_q):
    import warnings

    warnings.simplefilter("ignore")
    import optuna
    from optuna.storages import JournalStorage

    try:
        from optuna.storages.journal import JournalFileBackend
    except ImportError:  # optuna < 4
        from optuna.storages import JournalFileStorage as JournalFileBackend
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(path))
    study = optuna.load_study(study_name="bench", storage=storage,
                              sampler=optuna.samplers.RandomSampler(seed=seed))
    while time.time() < start_at:
        time.sleep(0.001)
    end = start_at + seconds
    steps = 0
    lat = []
    cpu0 = _cpu()
    while time.time() < end:
        t0 = time.perf_counter()
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, x)
        lat.append(time.perf_counter() - t0)
        steps += 1
    out_q.put({"steps": steps, "lat": lat, "cpu": _cpu() - cpu0})


def run_optuna(workdir, procs, seconds):
    try:
        import optuna
        from optuna.storages import JournalStorage

        try:
            from optuna.storages.journal import JournalFileBackend
        except ImportError:
            from optuna.storages import JournalFileStorage as JournalFileBackend
    except ImportError:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "optuna-journal.log")
    optuna.create_study(study_name="bench", storage=JournalStorage(JournalFileBackend(path)))
    q = FORK.Queue()
    start_at = time.time() + 2.0 + procs * 0.05
    ps = [FORK.Process(target=optuna_worker, args=(path, seconds, k, start_at, q)) for k in range(procs)]
    for p in ps:
        p.start()
    results = [q.get(timeout=seconds + 300) for _ in ps]
    for p in ps:
        p.join()
    lat = [x for r in results for x in r["lat"]]
    steps = sum(r["steps"] for r in results)
    return {"steps": steps, "steps_per_s": steps / seconds, "lat": lat, "version": optuna.__version__,
            "cpu_per_step": sum(r["cpu"] for r in results) / max(steps, 1)}


# ------------------------------------------------------------------------------------------
# per-child overhead with a realistic checkpoint, one process
# ------------------------------------------------------------------------------------------


def per_child_overhead(workdir, checkpoint_mb, n=15):
    root = os.path.join(workdir, "overhead")
    pop = build_population(root, 1000, 100, "flock")
    me = WorkerInfo.from_env(id="overhead")
    rng = random.Random(1)
    blob = os.urandom(1 << 20) * checkpoint_mb
    lease_to_ready, commit, heartbeat, save_ckpt = [], [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        task = pop.next_task(me, rng)
        t1 = time.perf_counter()
        lease_to_ready.append(t1 - t0)
        t0 = time.perf_counter()
        task.lease.heartbeat()
        heartbeat.append(time.perf_counter() - t0)

        def write(path):
            with open(path, "wb") as f:
                f.write(blob)

        t0 = time.perf_counter()
        task.lease.save_checkpoint(write)
        save_ckpt.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pop.commit(task, task.parent_dna, {"fitness": rng.random(), "flops": 1.0}, checkpoint=write)
        commit.append(time.perf_counter() - t0)
    return {"lease_to_ready": lease_to_ready, "commit": commit, "heartbeat": heartbeat,
            "save_checkpoint": save_ckpt, "checkpoint_mb": checkpoint_mb}


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------


def q(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def ms(x):
    return f"{x * 1e3:.2f}"


def machine(workdir):
    fstype, mnt, _ = filesystem_of(workdir)
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import filelock

    return (f"{socket.gethostname()}: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"filelock {filelock.__version__}, population on {fstype}{ext4_journal(mnt) if fstype == 'ext4' else ''} "
            f"({mnt}); load average at start {os.getloadavg()[0]:.1f}")


def ext4_journal(mnt):
    """' with a journal' / ' without a journal' for an ext4 mount (from /proc/fs/jbd2), or ''."""
    try:
        with open("/proc/mounts") as f:
            dev = next((line.split()[0] for line in f if line.split()[1:2] == [mnt]), None)
        if not dev or not os.path.isdir("/proc/fs/ext4"):
            return ""
        dev = os.path.basename(os.path.realpath(dev)) if dev.startswith("/dev/") else os.path.basename(dev)
        journaled = any(name.startswith(dev + "-") for name in os.listdir("/proc/fs/jbd2")) \
            if os.path.isdir("/proc/fs/jbd2") else False
        return " with a journal" if journaled else " without a journal"
    except OSError:
        return ""


def write_docs(section: str) -> None:
    path = os.path.abspath(DOCS)
    for _ in range(5):
        try:
            with open(path) as f:
                text = f.read()
            mtime = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            text, mtime = "# Benchmarks\n", None
        head = "## Coordination"
        if head in text:
            start = text.index(head)
            nxt = text.find("\n## ", start + len(head))
            new = text[:start] + section.rstrip() + "\n" + (text[nxt:] if nxt != -1 else "")
        else:
            new = text.rstrip() + "\n\n" + section.rstrip() + "\n"
        try:
            if mtime is not None and os.stat(path).st_mtime_ns != mtime:
                continue  # changed under us: re-read
        except FileNotFoundError:
            if mtime is not None:
                continue
        tmp = path + f".tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(new)
        os.replace(tmp, path)
        return
    raise RuntimeError(f"{path} keeps changing; not written")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", type=int, nargs="+", default=[32],
                    help="process counts; evo and Optuna run with each (default: 32)")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3,
                    help="evo (first lock, first history size) and Optuna alternate this many times "
                         "per process count; medians are reported (default: 3)")
    ap.add_argument("--population", type=int, default=1000)
    ap.add_argument("--dead", type=int, nargs="*", default=[100, 100_000])
    ap.add_argument("--locks", nargs="*", default=["flock", "soft"])
    ap.add_argument("--checkpoint-mb", type=int, default=20)
    ap.add_argument("--dir", default=None, help="where to build the populations (default: a temp dir)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--no-optuna", action="store_true")
    ap.add_argument("--no-overhead", action="store_true", help="skip the per-child overhead part")
    a = ap.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix="evo-coord-", dir=a.dir)
    info = machine(workdir)
    print(info, flush=True)
    rows = []
    results = {"machine": info, "procs": a.procs, "seconds": a.seconds, "population": a.population, "runs": []}
    loads = [os.getloadavg()[0]]
    try:
        configs = [(lock, d) for lock in a.locks for d in (a.dead if lock == "flock" else a.dead[:1])]
        for procs in a.procs:
            group = []
            for k, (lock, dead) in enumerate(configs):
                rounds = a.rounds if k == 0 else 1
                evo_runs, opt_runs = [], []
                for rnd in range(rounds):
                    root = os.path.join(workdir, f"pop-{lock}-{dead}-{procs}-{rnd}")
                    t0 = time.time()
                    build_population(root, a.population, dead, lock)
                    print(f"built P={a.population} with {dead} dead ({lock}) in {time.time() - t0:.1f} s; "
                          f"running {procs} processes for {a.seconds:g} s (round {rnd + 1}/{rounds})", flush=True)
                    evo_runs.append(run_evo(root, procs, a.seconds))
                    loads.append(os.getloadavg()[0])
                    # not removed until the end (see "Freed inodes" above)
                    print(f"  evo: {evo_runs[-1]['steps_per_s']:.0f} steps/s", flush=True)
                    if k == 0 and not a.no_optuna:  # the reference right after each main evo run
                        opt = run_optuna(os.path.join(workdir, f"optuna-{procs}-{rnd}"), procs, a.seconds)
                        loads.append(os.getloadavg()[0])
                        if opt is None:
                            print("optuna is not importable (pip install optuna): reference skipped", flush=True)
                            a.no_optuna = True
                        else:
                            opt_runs.append(opt)
                            print(f"  Optuna: {opt['steps_per_s']:.0f} steps/s", flush=True)
                # the median round (by steps/s) stands for the configuration
                order = sorted(range(len(evo_runs)), key=lambda j: evo_runs[j]["steps_per_s"])
                r = evo_runs[order[len(order) // 2]]
                row = {"procs": procs, "system": f"evo ({lock} lock)", "dead": dead,
                       "steps_per_s": r["steps_per_s"], "cpu_per_step": r["cpu_per_step"],
                       "busy": r["busy"], "gap_med": statistics.median(r["gaps"]) if r["gaps"] else None,
                       "held_med": statistics.median(r["lock_held"]), "held_p99": q(r["lock_held"], 0.99),
                       "next_med": statistics.median(r["next_task"]) if r["next_task"] else None,
                       "next_p99": q(r["next_task"], 0.99) if r["next_task"] else None,
                       "commit_med": statistics.median(r["commit"]), "commit_p99": q(r["commit"], 0.99),
                       "rounds": [x["steps_per_s"] for x in evo_runs]}
                group.append(row)
                print(row, flush=True)
                if opt_runs:
                    order = sorted(range(len(opt_runs)), key=lambda j: opt_runs[j]["steps_per_s"])
                    opt = opt_runs[order[len(order) // 2]]
                    ratios = [e["steps_per_s"] / o["steps_per_s"] for e, o in zip(evo_runs, opt_runs)
                              if o["steps_per_s"]]
                    row["vs_optuna"] = statistics.median(ratios) if ratios else None
                    row["vs_optuna_rounds"] = ratios
                    orow = {"procs": procs, "system": f"Optuna {opt['version']} JournalFileBackend",
                            "dead": None, "steps_per_s": opt["steps_per_s"],
                            "cpu_per_step": opt["cpu_per_step"], "busy": None, "gap_med": None,
                            "held_med": None, "held_p99": None,
                            "next_med": statistics.median(opt["lat"]), "next_p99": q(opt["lat"], 0.99),
                            "commit_med": None, "commit_p99": None, "trials": opt["steps"],
                            "rounds": [x["steps_per_s"] for x in opt_runs], "vs_optuna": 1.0}
                    group.append(orow)
                    print(orow, flush=True)
            ref = [r for r in group if r["system"].startswith("Optuna")]
            for r in group:
                if "vs_optuna" not in r:
                    r["vs_optuna"] = (r["steps_per_s"] / ref[0]["steps_per_s"]
                                      if ref and ref[0]["steps_per_s"] else None)
            rows += group
        results["runs"] = rows
        if not a.no_overhead:
            oh = per_child_overhead(workdir, a.checkpoint_mb)
            results["overhead"] = {k: (v if not isinstance(v, list) else
                                       {"median": statistics.median(v), "max": max(v)}) for k, v in oh.items()}
    finally:
        t0 = time.time()
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"removed the populations in {time.time() - t0:.1f} s", flush=True)
    results["load_average"] = [min(loads), max(loads)]

    def pair(lo, hi):
        return "-" if lo is None else f"{ms(lo)} / {ms(hi)}"

    procs_arg = " ".join(str(p) for p in a.procs)
    lines = [
        "## Coordination",
        "",
        f"`python benchmarks/coordination.py --procs {procs_arg} --seconds {a.seconds:g}` "
        f"({time.strftime('%Y-%m-%d')}). Machine: {info}; load average {min(loads):.1f} to "
        f"{max(loads):.1f} during the runs.",
        "",
        f"N processes take selection steps with no training (commit of a 1 KB checkpoint together "
        f"with the next selection step, as evo/worker.py does) on a population of P={a.population} "
        "living individuals. Lock held: from acquisition to release of one critical section (one "
        "per step: the commit and the next selection). Lock busy: the fraction of the run during which some process held it; hand-off "
        "gap: from a release to the next acquisition when that process was already waiting. CPU: "
        "user + system time of all processes per step. Latencies include waiting for the lock. "
        "Optuna (RandomSampler, so only the storage is measured) does ask + tell with the same "
        "number of processes on its journal file, from an empty study. The first evo row and "
        f"Optuna alternate {a.rounds} times (evo, Optuna, evo, ...): their rows show the median "
        "round, 'vs Optuna' the median of the rounds' ratios; the other rows ran once.",
        "",
        "| processes | system | dead individuals | steps/s (all processes) | vs Optuna | CPU ms/step "
        "| cores busy | lock busy | hand-off gap median (ms) | lock held median / p99 (ms) "
        "| next_task median / p99 (ms) | commit median / p99 (ms) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        nxt = pair(r["next_med"], r["next_p99"])
        if r["system"].startswith("Optuna"):
            nxt += " (ask+tell)"
        dead = "-" if r["dead"] is None else f"{r['dead']:,}"
        vs = "-" if r.get("vs_optuna") is None else f"{r['vs_optuna']:.1f}x"
        busy = "-" if r["busy"] is None else f"{100 * r['busy']:.0f}%"
        gap = "-" if r["gap_med"] is None else ms(r["gap_med"])
        lines.append(f"| {r['procs']} | {r['system']} | {dead} | {r['steps_per_s']:.0f} | {vs} "
                     f"| {1e3 * r['cpu_per_step']:.2f} | {r['steps_per_s'] * r['cpu_per_step']:.2f} "
                     f"| {busy} | {gap} | {pair(r['held_med'], r['held_p99'])} "
                     f"| {nxt} | {pair(r['commit_med'], r['commit_p99'])} |")
    if "overhead" in results:
        o = results["overhead"]
        lines += [
            "",
            f"Per-child overhead of the store calls, one uncontended process, P={a.population}, "
            f"{a.checkpoint_mb} MB checkpoint, fsync included (median / max of 15 children): "
            f"lease to task ready {ms(o['lease_to_ready']['median'])} / {ms(o['lease_to_ready']['max'])} ms; "
            f"training end to commit {ms(o['commit']['median'])} / {ms(o['commit']['max'])} ms; "
            f"heartbeat {ms(o['heartbeat']['median'])} ms; saving a resumable checkpoint "
            f"{ms(o['save_checkpoint']['median'])} ms.",
        ]
    lines.append("")
    for procs in a.procs:
        fl = [r for r in rows if r["procs"] == procs and r["system"].startswith("evo (flock")]
        if len(fl) >= 2:
            ratio = fl[-1]["commit_med"] / fl[0]["commit_med"]
            cpu = fl[-1]["cpu_per_step"] / fl[0]["cpu_per_step"]
            lines.append(f"History size, {procs} processes: with {fl[-1]['dead']:,} dead / with "
                         f"{fl[0]['dead']:,} dead, step latency (commit + next selection, median) "
                         f"{ratio:.2f}x, CPU per step {cpu:.2f}x.")
        if fl and fl[0].get("vs_optuna") is not None:
            opt = [r for r in rows if r["procs"] == procs and r["system"].startswith("Optuna")]
            rr = ", ".join(f"{x:.1f}x" for x in fl[0].get("vs_optuna_rounds", []))
            lines.append(f"Throughput vs the Optuna reference, {procs} processes: {fl[0]['vs_optuna']:.1f}x "
                         f"(median round: {fl[0]['steps_per_s']:.0f} vs {opt[0]['steps_per_s']:.0f} "
                         f"steps/s; rounds {rr}).")
    section = "\n".join(lines) + "\n"
    print()
    print(section)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    if not a.no_docs:
        write_docs(section)
        print(f"written to {os.path.abspath(DOCS)}")


if __name__ == "__main__":
    main()
