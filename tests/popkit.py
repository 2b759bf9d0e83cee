"""Helpers of the population tests (no torch: a DNA is an opaque dict and a checkpoint an opaque
file here): a small population, a fake worker that makes real store calls, and the invariants a
run must keep."""

import collections
import json
import multiprocessing
import os
import random
import signal
import time
import warnings

from evo.genome.space import GenomeError, SearchSpace, register
from evo.population import Population, WorkerInfo, read_events

FORK = multiprocessing.get_context("fork")


@register
class OpaqueSpace(SearchSpace):
    """The search space of the population tests: a genome is any JSON object, except one with
    ``"invalid": true`` (a genome that fails validation, as a cycle or an invalid convolution)."""

    name = "opaque-test"

    def validate(self, dna, input_shape=None, num_classes=None):
        if not isinstance(dna, dict):
            raise GenomeError(f"an opaque genome is a dict, got {type(dna).__name__}")
        if dna.get("invalid"):
            raise GenomeError("the genome says it is invalid")
        return dna

    def from_dict(self, d):
        return self.validate(dict(d) if isinstance(d, dict) else d)

    def to_dict(self, dna):
        return dict(dna)

    def mutation_config(self, config=None):
        return config  # any mutation settings (the tests' workers never mutate)


def jload(path):
    with open(path) as f:
        return json.load(f)


def put(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def writer(data: bytes):
    def write(path):
        with open(path, "wb") as f:
            f.write(data)

    return write


def make(tmp_path, name="pop", **kw):
    kw.setdefault("population_size", 6)
    kw.setdefault("search_space", OpaqueSpace.name)
    kw.setdefault("lock", "flock")
    kw.setdefault("lease_ttl_s", 30.0)
    kw.setdefault("heartbeat_s", 1.0)
    return Population.create(str(tmp_path / name), **kw)


def train_one(pop, worker, rng, fitness=None, outcome="ok"):
    """Take one task and commit it at once; returns (task, result) or (wait, None)."""
    task = pop.next_task(worker, rng)
    if not task:
        return task, None
    dna = task.dna or {"parent": task.parent_id, "n": task.child_id}
    task.lease.save_dna(dna, ["IDENTITY"])
    rec = {"fitness": rng.random() if fitness is None else fitness, "flops": 2.0, "steps_trained": 5,
           "params": 10, "outcome": outcome}
    if outcome != "ok":
        rec["fitness"] = None
    return task, pop.commit(task, dna, rec, checkpoint=writer(b"weights"))


def fill(pop, worker, rng):
    """Train every pending seed."""
    while os.listdir(os.path.join(pop.root, "pending")):
        task = pop.next_task(worker, rng)
        assert task.kind == "seed"
        pop.commit(task, {"seed": task.child_id}, {"fitness": rng.random()}, checkpoint=writer(b"w"))


def worker_main(root, log_path, seed, lock=None, train_s=(0.001, 0.004), fail_rate=0.0):
    """A fake worker: real store calls, a few ms of "training", a fake fitness."""
    warnings.simplefilter("ignore")
    pop = Population.open(root, lock=lock)
    me = WorkerInfo.from_env(id=f"w{seed}")
    rng = random.Random(seed)
    with open(log_path, "a", buffering=1) as log:
        while True:
            task = pop.next_task(me, rng)
            if not task:
                if task.done:
                    return
                time.sleep(min(task.retry_after_s, 0.05))
                continue
            log.write(json.dumps({"ev": "start", "id": task.child_id, "kind": task.kind,
                                  "uid": task.task_uid, "resume_of": task.resume_of}) + "\n")
            with task.lease.keepalive():
                dna = task.dna or {"parent": task.parent_id,
                                   "depth": (task.parent_dna or {}).get("depth", 0) + 1}
                task.lease.save_dna(dna, ["FAKE"])
                time.sleep(rng.uniform(*train_s))
                task.lease.save_checkpoint(writer(b"state"))
                time.sleep(rng.uniform(*train_s))
            if rng.random() < fail_rate:
                rec = {"fitness": None, "outcome": "nan_loss", "reason": "fake", "flops": 1.0}
            else:
                rec = {"fitness": rng.random(), "flops": 1.0, "steps_trained": 10, "params": 3}
            res = pop.commit(task, dna, rec, checkpoint=writer(b"weights"))
            log.write(json.dumps({"ev": "commit", "id": task.child_id, "status": res.status,
                                  "uid": task.task_uid}) + "\n")


def read_log(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        lines = f.readlines()
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # torn by SIGKILL
    return out


def run_workers(root, tmp_path, n, *, lock=None, timeout=60, kills=0, fail_rate=0.0,
                train_s=(0.001, 0.004)):
    """Run n fake workers until the budget; optionally SIGKILL random workers `kills` times
    (each replaced by a fresh one).  Returns the worker logs."""
    logs = []
    procs = []
    seed = [0]

    def start():
        seed[0] += 1
        log = str(tmp_path / f"w{seed[0]}.log")
        logs.append(log)
        p = FORK.Process(target=worker_main, args=(root, log, seed[0], lock, train_s, fail_rate))
        p.start()
        procs.append(p)

    for _ in range(n):
        start()
    rng = random.Random(1234)
    killed = 0
    deadline = time.time() + timeout
    # the kills are spread over the first 80% of the budget (paced by the births, so that a
    # fast machine can't finish the budget first), each at a random moment after its mark
    budget = Population.open(root).config.max_individuals or 0
    marks = sorted(rng.randrange(int(0.8 * budget)) for _ in range(kills)) if kills else []
    events = os.path.join(root, "events.jsonl")
    while killed < kills and time.time() < deadline:
        with open(events, "rb") as f:
            births = f.read().count(b'"birth"')
        if births < marks[killed]:
            time.sleep(0.002)
            continue
        time.sleep(rng.uniform(0.0, 0.01))
        live = [p for p in procs if p.is_alive()]
        if not live:
            break
        victim = rng.choice(live)
        os.kill(victim.pid, signal.SIGKILL)
        victim.join()
        killed += 1
        start()
    for p in procs:
        p.join(max(1.0, deadline - time.time()))
    stuck = [p for p in procs if p.is_alive()]
    for p in stuck:
        p.kill()
        p.join()
    assert not stuck, f"{len(stuck)} workers did not finish: {Population.open(root).status()}"
    if kills:
        assert killed == kills
    return [e for log in logs for e in read_log(log)]


def dir_ids(root):
    alive = [int(n) for n in os.listdir(os.path.join(root, "alive")) if n.isdigit()]
    dead = [int(n) for s in os.listdir(os.path.join(root, "dead"))
            for n in os.listdir(os.path.join(root, "dead", s)) if n.isdigit()]
    pending = [int(n) for n in os.listdir(os.path.join(root, "pending")) if n.isdigit()]
    inflight = [int(n.split(".")[0]) for n in os.listdir(os.path.join(root, "inflight"))]
    return alive, dead, pending, inflight


def check_invariants(root, log, *, population_size, exact_population=True, resumes_allowed=False,
                     below=2):
    alive, dead, pending, inflight = dir_ids(root)
    everything = alive + dead + pending + inflight
    # ids unique across alive/dead/pending/inflight
    dup = [i for i, c in collections.Counter(everything).items() if c > 1]
    assert not dup, f"duplicate ids {dup}"
    assert not inflight and not pending, (inflight, pending)
    # population size restored
    if exact_population:
        assert len(alive) == population_size
    else:
        assert population_size - below <= len(alive) <= population_size + 1, len(alive)
    # nobody killed twice, and the log agrees with dead/
    events = list(read_events(root))
    deaths = collections.Counter(e["id"] for e in events if e["event"] == "death")
    assert not [i for i, c in deaths.items() if c > 1], "killed twice"
    assert set(deaths) == set(dead)
    assert not set(deaths) & set(alive)
    # every committed child is present, with the record of the worker that committed it
    committed = [e for e in log if e["ev"] == "commit" and e["status"] in ("committed", "already_committed")]
    for e in committed:
        i = e["id"]
        p = os.path.join(root, "alive", str(i)) if i in alive else os.path.join(root, "dead", str(i // 1000), str(i))
        assert i in alive or i in dead, f"committed child {i} lost"
        rec = jload(os.path.join(p, "fitness.json"))
        assert rec["task_uid"] == e["uid"] and rec["id"] == i
        assert jload(os.path.join(p, "dna.json"))
    # no child trained (to completion) twice
    c = collections.Counter(e["id"] for e in committed if e["status"] == "committed")
    assert not [i for i, n in c.items() if n > 1], "a child was committed twice"
    starts = collections.Counter(e["id"] for e in log if e["ev"] == "start")
    if not resumes_allowed:
        assert not [i for i, n in starts.items() if n > 1], "a child was handed out twice"
    # every individual ever born has DNA and fitness
    for i in alive:
        d = os.path.join(root, "alive", str(i))
        assert set(os.listdir(d)) == {"dna.json", "fitness.json", "checkpoint.pt"}, os.listdir(d)
    births = collections.Counter(e["id"] for e in events if e["event"] == "birth")
    assert set(births) == set(alive) | set(dead)
    return alive, dead, events


def selectable(pop):
    return sorted(r.id for r in pop.alive.candidates(pop.read_control()))
