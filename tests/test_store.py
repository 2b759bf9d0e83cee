"""The population directory: format, concurrency with real processes, crashes, corrupt files.

No torch: DNA is an opaque dict and a checkpoint an opaque file here.
"""

import collections
import errno
import json
import multiprocessing
import os
import random
import signal
import time
import warnings

import pytest

from evo.population import store
from evo.population.store import (
    Config,
    ConfigError,
    CorruptFileWarning,
    FormatVersionError,
    LeaseLost,
    LockTimeout,
    NotAPopulationError,
    Population,
    PopulationExistsError,
    SoftLock,
    StoreError,
    WorkerInfo,
    fsck,
    read_events,
)

FORK = multiprocessing.get_context("fork")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------------
# create / open / config
# ------------------------------------------------------------------------------------------


def test_create_layout_and_seeds(tmp_path):
    pop = make(tmp_path, population_size=5, seed_dna={"seed": True})
    root = pop.root
    for d in ("alive", "dead", "pending", "inflight", "tmp", "ids", "quarantine"):
        assert os.path.isdir(os.path.join(root, d))
    cfg = jload(os.path.join(root, "config.json"))
    assert cfg["format_version"] == store.FORMAT_VERSION and cfg["population_size"] == 5
    assert sorted(os.listdir(os.path.join(root, "pending"))) == ["1", "2", "3", "4", "5"]
    ctl = jload(os.path.join(root, "control.json"))
    assert ctl["mutations_per_child"] == 1 and not ctl["paused"] and not ctl["stopped"]
    t = pop.next_task(WorkerInfo.from_env(), random.Random(0))
    assert t.kind == "seed" and t.child_id == 1 and t.dna == {"seed": True} and t.parent_id is None
    assert not [n for n in os.listdir(tmp_path) if "creating" in n]


def test_create_refuses_to_overwrite(tmp_path):
    make(tmp_path)
    with pytest.raises(PopulationExistsError, match="refusing to overwrite"):
        make(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(PopulationExistsError, match="not an empty directory"):
        Population.create(str(tmp_path / "full"))
    (tmp_path / "empty").mkdir()
    Population.create(str(tmp_path / "empty"), population_size=2)


@pytest.mark.parametrize("field,value,match", [
    ("population_size", 1, "population_size"),
    ("strategy", "nsga", "strategy"),
    ("lock", "posix", "lock"),
    ("keep_checkpoints", "top:0", "keep_checkpoints"),
    ("heartbeat_s", 400.0, "heartbeat_s"),
    ("max_individuals", 0, "max_individuals"),
    ("inheritance", "lamarck", "inheritance"),
])
def test_config_errors_name_the_field_and_fix(tmp_path, field, value, match):
    with pytest.raises(ConfigError, match=match) as e:
        Population.create(str(tmp_path / "p"), **{field: value})
    assert "Fix:" in str(e.value)
    assert not (tmp_path / "p").exists()


def test_unknown_config_field_suggests(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'population_size'"):
        Population.create(str(tmp_path / "p"), Config.from_dict({"populaton_size": 3}) if False else {"populaton_size": 3})


def test_open_errors(tmp_path):
    with pytest.raises(NotAPopulationError, match="evo init"):
        Population.open(str(tmp_path))
    with pytest.raises(NotAPopulationError):
        Population.open(str(tmp_path / "nope"))
    pop = make(tmp_path)
    cpath = os.path.join(pop.root, "config.json")
    cfg = jload(cpath)
    cfg["format_version"] = store.FORMAT_VERSION + 1
    put(cpath, json.dumps(cfg))
    with pytest.raises(FormatVersionError, match="upgrade evo"):
        Population.open(pop.root)


def test_lock_detection(monkeypatch, tmp_path):
    kind, _ = store.detect_lock_kind(str(tmp_path))
    assert kind in ("flock", "soft")
    cases = {
        ("nfs4", ("rw",)): "soft",
        ("nfs", ("rw", "nolock")): "soft",
        ("lustre", ("rw", "flock")): "flock",
        ("lustre", ("rw", "localflock")): "soft",
        ("ext4", ("rw",)): "flock",
        ("gpfs", ("rw",)): "flock",
        ("weirdfs", ("rw",)): "soft",
    }
    for (fs, opts), want in cases.items():
        monkeypatch.setattr(store, "filesystem_of", lambda p, fs=fs, opts=opts: (fs, "/x", list(opts)))
        assert store.detect_lock_kind("/x/pop")[0] == want, fs
    # auto resolves per file system, an explicit mode wins
    monkeypatch.setattr(store, "filesystem_of", lambda p: ("nfs4", "/x", ["rw"]))
    pop = Population.create(str(tmp_path / "a"), population_size=2, lock="auto")
    assert Population.open(pop.root).lock_kind == "soft"
    assert Population.open(pop.root, lock="none").lock_kind == "none"
    pop = Population.create(str(tmp_path / "b"), population_size=2, lock="flock")
    assert Population.open(pop.root).lock_kind == "flock"


# ------------------------------------------------------------------------------------------
# the worker API, one process
# ------------------------------------------------------------------------------------------


def test_seed_then_selection_kills_at_selection_time(tmp_path):
    pop = make(tmp_path, population_size=4, keep_checkpoints="alive")
    me, rng = WorkerInfo.from_env(id="me"), random.Random(0)
    fill(pop, me, rng)
    assert len(os.listdir(os.path.join(pop.root, "alive"))) == 4
    task = pop.next_task(me, rng)
    assert task.kind == "child" and task.parent_id is not None and task.victim_id is not None
    assert task.mutations == 1 and task.inherit
    assert os.path.exists(task.parent_checkpoint) and task.parent_dna == {"seed": task.parent_id}
    # the victim died at selection time; its DNA and fitness are kept, its checkpoint is not
    dead = pop.dead_path(task.victim_id)
    assert os.path.isdir(dead) and not os.path.exists(pop.alive_path(task.victim_id))
    assert set(os.listdir(dead)) == {"dna.json", "fitness.json", "death.json"}
    assert jload(os.path.join(dead, "death.json"))["killed_by"] == task.child_id
    # the lease file appears with the first heartbeat; until then task.json names the worker
    assert not os.path.exists(os.path.join(task.lease.path, "lease.json"))
    assert jload(os.path.join(task.lease.path, "task.json"))["worker"]["id"] == "me"
    assert [x["worker"] for x in pop.leases()] == ["me"] and not pop.leases()[0]["expired"]
    task.lease.heartbeat()
    lease = jload(os.path.join(task.lease.path, "lease.json"))
    assert lease["worker"]["id"] == "me" and lease["expires_at"] > time.time()
    res = pop.commit(task, {"child": 1}, {"fitness": 0.5, "flops": 7.0, "params": 3, "steps_trained": 9,
                                          "mutations": ["IDENTITY"], "extra_key": 1},
                     checkpoint=writer(b"w"))
    assert res.status == "committed" and res.path == pop.alive_path(task.child_id)
    rec = jload(os.path.join(res.path, "fitness.json"))
    for k in ("id", "parent_id", "fitness", "steps_trained", "flops", "params", "mutations", "outcome",
              "reason", "born_at", "finished_at", "worker", "host", "slurm_job_id",
              "slurm_array_job_id", "slurm_array_task_id", "dna_hash", "generation"):
        assert k in rec, k
    assert rec["parent_id"] == task.parent_id and rec["extra_key"] == 1
    assert rec["dna_hash"] == store.dna_hash({"child": 1})
    assert sorted(os.listdir(res.path)) == ["checkpoint.pt", "dna.json", "fitness.json"]
    st = pop.read_state()
    assert st["trained"] == 5 and st["flops"] == 7.0 and pop.read_next_id() == task.child_id + 1


def test_failed_training_goes_straight_to_dead(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(), random.Random(1)
    fill(pop, me, rng)
    task, res = train_one(pop, me, rng, outcome="nan_loss")
    assert res.status == "committed" and res.path == pop.dead_path(task.child_id)
    evs = [e for e in read_events(pop.root) if e.get("id") == task.child_id]
    assert [e["event"] for e in evs] == ["start", "birth", "death"] and evs[-1]["cause"] == "failed"
    with pytest.raises(ValueError, match="outcome"):
        t = pop.next_task(me, rng)
        pop.commit(t, {}, {"fitness": float("nan")})


def test_aging_kills_oldest_and_random_has_no_parent(tmp_path):
    pop = make(tmp_path, "aging", population_size=4, strategy="aging", sample_size=2)
    me, rng = WorkerInfo.from_env(), random.Random(2)
    fill(pop, me, rng)
    for _ in range(6):
        alive = sorted(int(n) for n in os.listdir(os.path.join(pop.root, "alive")))
        task, res = train_one(pop, me, rng)
        assert task.victim_id == alive[0]
    pop = make(tmp_path, "random", population_size=3, strategy="random")
    fill(pop, me, rng)
    task, res = train_one(pop, me, rng)
    assert task.kind == "random" and task.parent_id is None and task.parent_dna is None


def test_control_knobs_take_effect_at_next_step(tmp_path):
    pop = make(tmp_path, population_size=3)
    other = Population.open(pop.root)  # e.g. the CLI in another process
    me, rng = WorkerInfo.from_env(), random.Random(3)
    fill(pop, me, rng)
    other.set_mutations_per_child(5)
    task, _ = train_one(pop, me, rng)
    assert task.mutations == 5
    other.set_mutations_per_child(1)
    other.pause()
    w = pop.next_task(me, rng)
    assert not w and w.reason == "paused" and not w.done
    other.resume()
    other.stop()
    w = pop.next_task(me, rng)
    assert w.reason == "stopped" and w.done
    other.resume()
    assert pop.next_task(me, rng)
    with pytest.raises(ConfigError):
        other.set_control(mutations_per_child=-1)
    with pytest.raises(ConfigError):
        other.set_control(population_size=3)
    kinds = [e["event"] for e in read_events(pop.root)]
    assert kinds.count("control") == 6


def test_budgets_individuals_and_flops(tmp_path):
    pop = make(tmp_path, "a", population_size=3, max_individuals=5)
    me, rng = WorkerInfo.from_env(), random.Random(4)
    n = 0
    while True:
        task, res = train_one(pop, me, rng)
        if not task:
            assert task.reason == "budget" and task.done
            break
        n += 1
    assert n == 5 and pop.read_state()["trained"] == 5
    pop = make(tmp_path, "b", population_size=3, max_flops=7.0)  # 2 FLOPs per child
    n = 0
    while train_one(pop, me, rng)[1]:
        n += 1
    assert n == 4 and pop.status()["flops"] == 8.0


def test_release_then_resume_with_checkpoint_and_dna(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(), random.Random(5)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)
    task.lease.save_dna({"mutated": True}, ["INSERT-CONVOLUTION"])
    task.lease.save_checkpoint(writer(b"step 100"))
    assert pop.release(task, "SIGTERM")
    assert task.lease.lost
    with pytest.raises(LeaseLost):
        task.lease.heartbeat()
    assert pop.commit(task, {}, {"fitness": 0.1}).status == "lease_lost"
    t2 = pop.next_task(WorkerInfo.from_env(id="other"), rng)
    assert t2.kind == "resume" and t2.resume_of == "child" and t2.child_id == task.child_id
    assert t2.dna == {"mutated": True} and t2.mutations_applied == ["INSERT-CONVOLUTION"]
    with open(t2.resume_checkpoint, "rb") as f:
        assert f.read() == b"step 100"
    assert t2.parent_id == task.parent_id and t2.attempt == 1
    res = pop.commit(t2, t2.dna, {"fitness": 0.7}, checkpoint=writer(b"w"))
    assert res.status == "committed"
    rec = jload(os.path.join(res.path, "fitness.json"))
    assert rec["kind"] == "child" and rec["mutations"] == ["INSERT-CONVOLUTION"] and rec["attempts"] == 2


def test_expired_lease_is_recovered_and_old_owner_learns(tmp_path):
    pop = make(tmp_path, population_size=3, lease_ttl_s=0.5, heartbeat_s=0.1)
    me, rng = WorkerInfo.from_env(id="slow"), random.Random(6)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)
    task.lease.save_checkpoint(writer(b"half"))
    time.sleep(0.7)
    other = Population.open(pop.root)
    assert other.recover_expired() == [task.child_id]
    with pytest.raises(LeaseLost):
        task.lease.heartbeat()
    t2 = other.next_task(WorkerInfo.from_env(id="rescuer"), rng)
    assert t2.kind == "resume" and t2.child_id == task.child_id and t2.resume_checkpoint
    assert pop.commit(task, {}, {"fitness": 0.3}).status == "lease_lost"
    assert other.commit(t2, {"x": 1}, {"fitness": 0.4}).status == "committed"
    ev = [e for e in read_events(pop.root) if e["event"] == "recover"]
    assert ev and ev[0]["id"] == task.child_id and ev[0]["action"] == "resume" and ev[0]["from_worker"] == "slow"


def test_keepalive_keeps_a_slow_child(tmp_path):
    pop = make(tmp_path, population_size=2, lease_ttl_s=0.4, heartbeat_s=0.1)
    me, rng = WorkerInfo.from_env(), random.Random(7)
    task = pop.next_task(me, rng)
    with task.lease.keepalive():
        for _ in range(8):
            time.sleep(0.1)
            assert Population.open(pop.root).recover_expired() == []
    assert not task.lease.lost
    assert pop.commit(task, {}, {"fitness": 0.2}).status == "committed"


def test_completed_but_unfinalized_child_is_committed_by_recovery(tmp_path, monkeypatch):
    pop = make(tmp_path, population_size=3, lease_ttl_s=0.3, heartbeat_s=0.1)
    me, rng = WorkerInfo.from_env(), random.Random(8)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)

    def crash(*a, **k):
        raise KeyboardInterrupt("killed right after writing the files")

    monkeypatch.setattr(Population, "_finalize", crash)
    with pytest.raises(KeyboardInterrupt):
        pop.commit(task, {"done": 1}, {"fitness": 0.9}, checkpoint=writer(b"w"))
    monkeypatch.undo()
    time.sleep(0.4)
    other = Population.open(pop.root)
    assert other.recover_expired() == [task.child_id]
    p = other.alive_path(task.child_id)
    assert jload(os.path.join(p, "fitness.json"))["fitness"] == 0.9
    assert pop.commit(task, {"done": 1}, {"fitness": 0.9}).status == "already_committed"
    assert fsck(pop.root).ok


def test_crash_looping_child_is_abandoned(tmp_path):
    pop = make(tmp_path, population_size=2, lease_ttl_s=0.2, heartbeat_s=0.05, max_attempts=2)
    me, rng = WorkerInfo.from_env(), random.Random(9)
    task = pop.next_task(me, rng)
    time.sleep(0.3)
    assert pop.recover_expired() == [1]
    task = pop.next_task(me, rng)
    assert task.child_id == 1 and task.kind == "resume"
    time.sleep(0.3)
    assert pop.recover_expired() == [1]
    rec = jload(os.path.join(pop.dead_path(1), "fitness.json"))
    assert rec["outcome"] == "abandoned" and rec["fitness"] is None
    assert fsck(pop.root).ok


def test_reset_weights_retrains_every_living_individual(tmp_path):
    pop = make(tmp_path, population_size=3, keep_checkpoints="all")
    me, rng = WorkerInfo.from_env(), random.Random(10)
    fill(pop, me, rng)
    for _ in range(3):
        train_one(pop, me, rng)
    alive = sorted(int(n) for n in os.listdir(os.path.join(pop.root, "alive")))
    before = {i: jload(os.path.join(pop.alive_path(i), "fitness.json")) for i in alive}
    assert Population.open(pop.root).reset_weights() == 3
    assert os.listdir(os.path.join(pop.root, "alive")) == []
    seen = []
    for _ in range(3):
        task = pop.next_task(me, rng)
        assert task.kind == "retrain" and task.dna == {"parent": before[task.child_id]["parent_id"],
                                                       "n": task.child_id} or task.dna
        assert not task.inherit and task.generation == 1
        seen.append(task.child_id)
        assert pop.commit(task, task.dna, {"fitness": 0.01}, checkpoint=writer(b"fresh")).status == "committed"
    assert sorted(seen) == alive
    for i in alive:
        d = pop.alive_path(i)
        rec = jload(os.path.join(d, "fitness.json"))
        assert rec["fitness"] == 0.01 and rec["generation"] == 1 and rec["kind"] == "retrain"
        old = jload(os.path.join(d, "fitness.g0.json"))
        assert old["fitness"] == before[i]["fitness"]
        assert os.path.exists(os.path.join(d, "checkpoint.g0.pt"))
    # the selection cache sees the new fitness values
    task = pop.next_task(me, rng)
    assert task.kind == "child"
    assert pop.read_control().reset_generation == 1
    assert [e for e in read_events(pop.root) if e["event"] == "reset"][0]["queued"] == 3
    assert fsck(pop.root).clean


def test_keep_checkpoints_top_k(tmp_path):
    pop = make(tmp_path, population_size=2, keep_checkpoints="top:1", strategy="tournament")
    me, rng = WorkerInfo.from_env(), random.Random(11)
    fits = iter([0.9, 0.1] + [0.2] * 6)
    while True:
        task = pop.next_task(me, rng)
        if task.child_id > 8:
            break
        pop.commit(task, {"i": task.child_id}, {"fitness": next(fits)}, checkpoint=writer(b"w"))
    # individual 1 (fitness 0.9) is the best ever; the others' checkpoints go when they die
    st = pop.read_state()
    assert st["top"] == [[0.9, 1]]
    for i in range(2, 8):
        if os.path.isdir(pop.dead_path(i)):
            assert not os.path.exists(os.path.join(pop.dead_path(i), "checkpoint.pt"))


def test_enospc_during_commit_leaves_population_consistent(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(), random.Random(12)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)

    def full(path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StoreError, match="no space left"):
        pop.commit(task, {"d": 1}, {"fitness": 0.5}, checkpoint=full)
    assert not [n for n in os.listdir(task.lease.path) if ".tmp-" in n]
    assert not os.path.exists(pop.alive_path(task.child_id))
    rep = fsck(pop.root)
    assert rep.ok, rep.summary()
    assert pop.commit(task, {"d": 1}, {"fitness": 0.5}, checkpoint=writer(b"w")).status == "committed"
    assert fsck(pop.root).clean


def test_ids_stay_unique_when_the_counter_goes_back(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(), random.Random(13)
    fill(pop, me, rng)
    t1, _ = train_one(pop, me, rng)
    pop._write_next_id(1)  # a lost update without mutual exclusion
    t2, _ = train_one(pop, me, rng)
    assert t2.child_id == t1.child_id + 1


def test_estale_reads_are_retried(tmp_path, monkeypatch):
    p = tmp_path / "f.json"
    p.write_text('{"a": 1}')
    real = store._read_bytes_once
    calls = []

    def flaky(path):
        calls.append(path)
        if len(calls) < 3:
            raise OSError(errno.ESTALE, "Stale file handle")
        return real(path)

    monkeypatch.setattr(store, "_read_bytes_once", flaky)
    assert store.load_json(str(p)) == {"a": 1} and len(calls) == 3


# ------------------------------------------------------------------------------------------
# corrupt and torn files: warnings, never crashes
# ------------------------------------------------------------------------------------------


def test_truncated_fitness_is_a_warning_and_fsck_requeues_it(tmp_path):
    pop = make(tmp_path, population_size=4)
    me, rng = WorkerInfo.from_env(), random.Random(14)
    fill(pop, me, rng)
    victim = sorted(os.listdir(os.path.join(pop.root, "alive")))[0]
    fpath = os.path.join(pop.root, "alive", victim, "fitness.json")
    with open(fpath, "rb") as f:
        data = f.read()
    put(fpath, data[: len(data) // 2])
    fresh = Population.open(pop.root)
    with pytest.warns(CorruptFileWarning, match=victim):
        task, res = train_one(fresh, me, rng)
    assert res.status == "committed"
    assert task.parent_id != int(victim)
    rep = fsck(pop.root)
    assert not rep.ok and any(p.code == "fitness" for p in rep.problems)
    rep = fsck(pop.root, repair=True)
    assert rep.ok, rep.summary()
    assert os.path.isdir(os.path.join(pop.root, "pending", victim))
    assert os.listdir(os.path.join(pop.root, "quarantine"))
    t = pop.next_task(me, rng)
    assert t.kind == "retrain" and t.child_id == int(victim)
    assert fsck(pop.root).ok


def test_event_log_torn_lines(tmp_path):
    pop = make(tmp_path, population_size=2)
    me, rng = WorkerInfo.from_env(), random.Random(15)
    epath = os.path.join(pop.root, "events.jsonl")
    with open(epath, "ab") as f:
        f.write(b'{"event": "birth", "id": 9')  # torn last line: skipped silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        n = len(list(read_events(pop.root)))
    train_one(pop, me, rng)  # the next append starts on a fresh line
    evs = list(read_events(pop.root, warn=False))
    assert len(evs) == n + 2 and evs[-1]["event"] == "birth"
    with pytest.warns(CorruptFileWarning, match="line"):
        list(read_events(pop.root))  # the torn line is now in the middle
    rep = fsck(pop.root)
    assert rep.ok and any(p.code == "events-torn" for p in rep.problems)
    with open(epath, "ab") as f:
        f.write(b"\x00\xffgarbage")
    assert len(list(read_events(pop.root, warn=False))) == n + 2


@pytest.mark.filterwarnings("ignore::evo.population.store.StoreWarning")
def test_torn_lease_control_state_task_files(tmp_path):
    pop = make(tmp_path, population_size=3, lease_ttl_s=0.3, heartbeat_s=0.1)
    me, rng = WorkerInfo.from_env(), random.Random(16)
    task = pop.next_task(me, rng)
    put(os.path.join(task.lease.path, "lease.json"), '{"tok')
    with pytest.warns(CorruptFileWarning, match="lease.json"):
        assert pop.recover_expired() == []  # young directory: not expired yet
    time.sleep(0.4)
    with pytest.warns(CorruptFileWarning):
        assert pop.recover_expired() == [task.child_id]
    put(os.path.join(pop.root, "control.json"), "{")
    with pytest.warns(CorruptFileWarning, match="control.json"):
        assert pop.read_control().mutations_per_child == 1
    put(os.path.join(pop.root, "state.json"), "")
    with pytest.warns(CorruptFileWarning):
        st = pop.read_state()
    assert st["trained"] == 0
    put(os.path.join(pop.root, "pending", "2", "task.json"), "[1,")
    assert pop.next_task(me, rng).child_id == 1  # the recovered child
    with pytest.warns(CorruptFileWarning, match="task.json"):
        t = pop.next_task(me, rng)
    assert t and t.child_id == 3
    rep = fsck(pop.root, repair=True)
    assert rep.ok, rep.summary()
    rep = fsck(pop.root)
    assert rep.clean, rep.summary()


def test_fsck_repairs_orphans_stale_locks_missing_events(tmp_path):
    pop = make(tmp_path, population_size=3, lease_ttl_s=0.2, heartbeat_s=0.05, lock="soft", lock_ttl_s=0.2)
    me, rng = WorkerInfo.from_env(), random.Random(17)
    fill(pop, me, rng)
    train_one(pop, me, rng)
    os.mkdir(os.path.join(pop.root, "tmp", "resv-dead"))
    put(os.path.join(pop.root, "alive", os.listdir(os.path.join(pop.root, "alive"))[0], ".dna.json.tmp-x"), "")
    task = pop.next_task(me, rng)  # will expire
    put(os.path.join(pop.root, "lock.soft"), '{"token": "zz", "pid": 1}')
    # a death whose event was lost (crash between the rename and the append)
    with open(os.path.join(pop.root, "events.jsonl")) as f:
        lines = f.read().splitlines()
    dead_ev = [l for l in lines if '"death"' in l][-1]
    put(os.path.join(pop.root, "events.jsonl"), "\n".join(l for l in lines if l != dead_ev) + "\n")
    time.sleep(0.3)
    rep = fsck(pop.root)
    codes = {p.code for p in rep.problems}
    assert {"stale-lock", "orphan-tmp", "expired-lease", "events-missing"} <= codes, rep.summary()
    rep = fsck(pop.root, repair=True)
    assert rep.ok, rep.summary()
    assert all(p.repaired for p in rep.problems if p.severity != "info"), rep.summary()
    rep = fsck(pop.root)
    assert rep.clean, rep.summary()
    assert not os.path.exists(os.path.join(pop.root, "lock.soft"))
    assert os.path.isdir(os.path.join(pop.root, "pending", str(task.child_id)))


def test_fsck_leaves_a_young_temporary_alone(tmp_path):
    # a step's temporary younger than the lease may belong to a running worker: no problem, and
    # --repair keeps it; older, it is an orphan and is removed
    pop = make(tmp_path, population_size=2, lease_ttl_s=30.0)
    p = os.path.join(pop.root, "tmp", "resv-young")
    os.mkdir(p)
    rep = fsck(pop.root, repair=True)
    assert rep.clean and os.path.isdir(p), rep.summary()
    old = time.time() - 31
    os.utime(p, (old, old))
    rep = fsck(pop.root, repair=True)
    assert [q.code for q in rep.problems if q.repaired] == ["orphan-tmp"] and not os.path.exists(p)


# ------------------------------------------------------------------------------------------
# soft lock
# ------------------------------------------------------------------------------------------


def test_soft_lock_breaks_a_stale_lock(tmp_path):
    path = str(tmp_path / "lock.soft")
    put(path, json.dumps({"token": "dead", "host": "gone", "pid": 999999}))
    old = time.time() - 100
    os.utime(path, (old, old))
    lock = SoftLock(path, ttl=10.0)
    t = time.time()
    with pytest.warns(store.StoreWarning, match="broke the stale soft lock"):
        lock.acquire(timeout=30)
    assert time.time() - t < 5.0          # broken at once, not after waiting out a time-to-live
    assert jload(path)["token"] != "dead"
    lock.release()
    assert not os.path.exists(path)
    # a fresh lock without heartbeat is broken once its TTL passes
    put(path, json.dumps({"token": "crashed"}))
    t = time.time()
    with pytest.warns(store.StoreWarning):
        SoftLock(path, ttl=0.3).acquire(timeout=5)
    assert 0.25 < time.time() - t < 3


def _hold_soft_lock(path, ttl, hold_s, q):
    warnings.simplefilter("error")
    lock = SoftLock(path, ttl=ttl)
    lock.acquire(timeout=5)
    q.put("held")
    time.sleep(hold_s)
    try:
        lock.release()
        q.put("released cleanly")
    except store.StoreWarning as w:
        q.put(f"evicted: {w}")


def test_soft_lock_never_evicts_a_live_holder(tmp_path):
    path = str(tmp_path / "lock.soft")
    q = FORK.Queue()
    p = FORK.Process(target=_hold_soft_lock, args=(path, 0.3, 1.5, q))
    p.start()
    assert q.get(timeout=5) == "held"
    with pytest.raises(LockTimeout, match="heartbeating"):
        SoftLock(path, ttl=0.3).acquire(timeout=1.0)  # > 3 TTLs
    p.join(5)
    assert q.get(timeout=5) == "released cleanly"
    lock = SoftLock(path, ttl=0.3)
    lock.acquire(timeout=1)
    lock.release()


def _count_under(path, lock_kind, n, counter):
    pop_lock = SoftLock(path, ttl=5.0) if lock_kind == "soft" else store._FlockLock(path)
    for _ in range(n):
        pop_lock.acquire(timeout=30)
        v = int(open(counter).read() or 0)
        time.sleep(0.0005)
        put(counter, str(v + 1))
        pop_lock.release()


@pytest.mark.parametrize("kind", ["soft", "flock"])
def test_locks_give_mutual_exclusion(tmp_path, kind):
    counter = str(tmp_path / "counter")
    put(counter, "0")
    ps = [FORK.Process(target=_count_under, args=(str(tmp_path / "lk"), kind, 40, counter)) for _ in range(6)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    with open(counter) as f:
        assert int(f.read()) == 240


def _hold_flock(path, hold_s, q):
    lk = store._FlockLock(path)
    lk.acquire(timeout=10)
    q.put("held")
    time.sleep(hold_s)
    lk.release()
    q.put("released")


def test_flock_timeout_abandons_the_wait(tmp_path):
    path = str(tmp_path / "lock")
    q = FORK.Queue()
    p = FORK.Process(target=_hold_flock, args=(path, 3.0, q))
    p.start()
    assert q.get(timeout=10) == "held"
    lk = store._FlockLock(path)
    t0 = time.monotonic()
    with pytest.raises(LockTimeout, match="hung"):
        lk.acquire(timeout=0.2)
    assert time.monotonic() - t0 < 2.5        # gave up long before the holder let go (3 s)
    assert q.get(timeout=10) == "released"
    p.join(5)
    # the abandoned kernel wait gets the lock at the release and lets it go at once
    other = store._FlockLock(path)
    other.acquire(timeout=5)
    other.release()
    lk.acquire(timeout=5)
    lk.release()


def _acquire_inherited(lk, q):
    try:
        lk.acquire(timeout=0.3)
        q.put("acquired")
        lk.release()
    except LockTimeout:
        q.put("timeout")


def test_flock_after_fork_is_not_the_parents_lock(tmp_path):
    lk = store._FlockLock(str(tmp_path / "lock"))
    lk.acquire(timeout=1)
    q = FORK.Queue()
    p = FORK.Process(target=_acquire_inherited, args=(lk, q))  # inherits the open descriptor
    p.start()
    assert q.get(timeout=10) == "timeout"
    p.join(5)
    lk.release()


def test_flock_follows_a_replaced_lock_file(tmp_path):
    path = tmp_path / "lock"
    lk = store._FlockLock(str(path))
    lk.acquire(timeout=1)
    lk.release()
    os.unlink(path)  # deleted by hand while free; the next locker creates a new file
    other = store._FlockLock(str(path))
    other.acquire(timeout=1)
    with pytest.raises(LockTimeout):
        lk.acquire(timeout=0.2)  # its descriptor names the old file: it must not win there
    other.release()
    lk.acquire(timeout=1)
    lk.release()


# ------------------------------------------------------------------------------------------
# real processes: concurrency, no mutual exclusion, SIGKILL fault injection
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lock", ["flock", "soft", "none"])
def test_concurrent_workers_until_budget(tmp_path, lock):
    P = 16  # the paper's ratio: population = 4 x workers (here 2 x)
    pop = make(tmp_path, population_size=P, lock=lock, max_individuals=140, lease_ttl_s=30, heartbeat_s=0.5)
    log = run_workers(pop.root, tmp_path, 8, lock=lock, timeout=60)
    alive, dead, events = check_invariants(pop.root, log, population_size=P,
                                           exact_population=(lock != "none"))
    trained = len(alive) + len(dead)
    if lock == "none":  # a given-up step may leave an id gap when others' hints moved past it
        assert 130 <= trained <= 140
    else:
        assert trained == 140
    rep = fsck(pop.root)
    assert rep.ok, rep.summary()
    if lock != "none":
        assert rep.clean, rep.summary()
        assert pop.read_state()["trained"] == trained


@pytest.mark.parametrize("lock", ["flock", "none"])
def test_sigkill_workers_at_random_moments(tmp_path, lock):
    P = 16
    pop = make(tmp_path, population_size=P, lock=lock, max_individuals=300, lease_ttl_s=0.6,
               heartbeat_s=0.1, max_attempts=1000)
    log = run_workers(pop.root, tmp_path, 8, lock=lock, timeout=80, kills=30, train_s=(0.005, 0.03))
    # every lease held by a killed worker was recovered by the others, who then finished.  What a
    # worker killed in the last moments left in tmp/ is stale (and repaired) once older than the
    # lease; younger, fsck leaves it alone, as it may belong to a running step
    time.sleep(0.6 + 0.2)
    rep = fsck(pop.root, repair=True)
    assert rep.ok, rep.summary()
    rep = fsck(pop.root)
    assert rep.clean, rep.summary()
    alive, dead, events = check_invariants(pop.root, log, population_size=P,
                                           exact_population=(lock != "none"), resumes_allowed=True)
    assert any(e["event"] == "recover" for e in events)
    assert 300 - 30 <= len(alive) + len(dead) <= 300  # a kill mid-step may waste a claimed id


def test_failed_children_keep_population_at_setpoint(tmp_path):
    P = 6
    pop = make(tmp_path, population_size=P, max_individuals=80)
    log = run_workers(pop.root, tmp_path, 4, fail_rate=0.2)
    # a failed child leaves a hole that the next step fills; at the budget's end each worker's
    # last child may have failed
    alive, dead, events = check_invariants(pop.root, log, population_size=P, exact_population=False,
                                           below=4)
    assert any(e.get("cause") == "failed" for e in events)
    assert fsck(pop.root).clean


# ------------------------------------------------------------------------------------------
# reading API
# ------------------------------------------------------------------------------------------


def test_reading_api(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(), random.Random(18)
    fill(pop, me, rng)
    for _ in range(4):
        train_one(pop, me, rng)
    task = pop.next_task(me, rng)
    st = pop.status()
    assert st["alive"] + st["inflight"] == 3 and st["dead"] == 5 and st["trained"] == 7
    assert st["best_alive"]["fitness"] > 0
    (lease,) = pop.leases()
    assert lease["id"] == task.child_id and not lease["expired"] and lease["worker"] == me.id
    inds = list(pop.individuals())
    assert len(inds) == 7 and {i.status for i in inds} == {"alive", "dead"}
    assert inds[0].dna() and inds[0].fitness["id"] == inds[0].id
    dead = [i for i in inds if i.status == "dead"]
    assert dead[0].death["cause"] == "selection" and dead[0].checkpoint is None
    assert pop.individual(dead[0].id).status == "dead" and pop.individual(10 ** 6) is None


# ------------------------------------------------------------------------------------------
# the lean step: alive view from the event log, commit + next step, id claims, state in place
# ------------------------------------------------------------------------------------------


def selectable(pop):
    return sorted(r.id for r in pop._alive_view(pop.read_control()))


def test_alive_view_follows_other_workers_through_the_event_log(tmp_path):
    a = make(tmp_path, population_size=8)
    me, rng = WorkerInfo.from_env(id="a"), random.Random(3)
    fill(a, me, rng)
    b = Population.open(a.root)
    assert b._trust_nlink  # a local file system: link counts are used
    assert selectable(b) == list(range(1, 9))
    assert b._nlink_ok and b._ev_offset is not None
    # another worker's steps reach b through the events only (no listing of alive/)
    for _ in range(5):
        train_one(a, me, rng)
    listed = []
    orig = b._alive_records
    b._alive_records = lambda ctl: listed.append(1) or orig(ctl)
    alive = sorted(int(n) for n in os.listdir(os.path.join(a.root, "alive")))
    assert selectable(b) == alive and not listed
    # a change that no event tells of (an append lost, lock none...): the link count disagrees
    # and the view is rebuilt from a listing
    os.makedirs(os.path.dirname(a.dead_path(alive[0])), exist_ok=True)
    os.rename(a.alive_path(alive[0]), a.dead_path(alive[0]))
    assert selectable(b) == alive[1:] and listed
    # a replaced (or shortened) event log: rebuilt from a listing as well
    os.rename(a._events, a._events + ".old")
    put(a._events, "")
    listed.clear()
    assert selectable(b) == alive[1:] and listed


def test_alive_view_without_trusted_link_counts_lists_every_step(tmp_path):
    pop = make(tmp_path, population_size=5)
    me, rng = WorkerInfo.from_env(id="a"), random.Random(4)
    fill(pop, me, rng)
    pop._trust_nlink = pop._nlink_ok = False  # as on NFS
    listed = []
    orig = pop._alive_records
    pop._alive_records = lambda ctl: listed.append(1) or orig(ctl)
    for _ in range(3):
        task, res = train_one(pop, me, rng)
        assert res.status == "committed"
    assert len(listed) >= 3 and not pop._nlink_ok
    assert selectable(pop) == sorted(int(n) for n in os.listdir(os.path.join(pop.root, "alive")))


def test_commit_takes_the_next_task_in_the_same_critical_section(tmp_path):
    pop = make(tmp_path, population_size=4)
    pop.keep_stats = True
    me, rng = WorkerInfo.from_env(id="me"), random.Random(5)
    task = pop.next_task(me, rng)
    n = 0
    while task and n < 12:
        pop.stats["lock_held"].clear()
        res = pop.commit(task, task.dna or {"n": task.child_id}, {"fitness": rng.random()},
                         checkpoint=writer(b"w"), next_for=me, rng=rng)
        assert res.status == "committed"
        assert len(pop.stats["lock_held"]) == 1  # commit and next selection: one lock
        assert isinstance(res.next, store.Task) and res.next.child_id != task.child_id
        task = res.next
        n += 1
    assert task.kind == "child"
    events = [e["event"] for e in read_events(pop.root)]
    assert events.count("birth") == 12 and events.count("start") == 13
    pop.stop()
    res = pop.commit(task, {"n": 1}, {"fitness": 0.5}, checkpoint=writer(b"w"), next_for=me, rng=rng)
    assert res.status == "committed" and not res.next and res.next.done
    assert fsck(pop.root).clean


def test_id_claims_are_hard_links_or_files(tmp_path, monkeypatch):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(7)
    fill(pop, me, rng)
    task, _ = train_one(pop, me, rng)
    claim = os.path.join(pop.root, "ids", "0", str(task.child_id))
    assert os.path.samefile(claim, os.path.join(pop.root, "ids", "0", ".claim"))
    assert not pop._try_claim(task.child_id)  # taken
    # a file system that refuses hard links: claims become empty files
    real_link = os.link

    def no_links(src, dst, *a, **k):
        raise OSError(errno.EPERM, "hard links refused", dst)

    monkeypatch.setattr(store.os, "link", no_links)
    pop._link_claims = True
    task2, _ = train_one(pop, me, rng)
    monkeypatch.setattr(store.os, "link", real_link)
    assert task2.child_id > task.child_id and not pop._link_claims
    claim2 = os.path.join(pop.root, "ids", "0", str(task2.child_id))
    assert os.path.isfile(claim2) and os.stat(claim2).st_nlink == 1
    assert fsck(pop.root).clean


def test_state_is_rewritten_in_place_and_never_torn_by_shrinking(tmp_path):
    pop = make(tmp_path, population_size=3)
    big = {"trained": 7, "flops": 1.0, "top": [[0.5, i] for i in range(50)]}
    pop._write_state(big)
    ino = os.stat(pop._state_path).st_ino
    pop._write_state({"trained": 8, "flops": 2.0, "top": []})
    assert os.stat(pop._state_path).st_ino == ino  # in place: no new file
    st = pop.read_state()
    assert st["trained"] == 8 and st["top"] == []


def test_torn_task_of_an_expired_child_is_abandoned_not_resumed(tmp_path):
    pop = make(tmp_path, population_size=3, lease_ttl_s=0.2, heartbeat_s=0.05)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(8)
    task = pop.next_task(me, rng)
    put(os.path.join(task.lease.path, "task.json"), "")  # never reached the disk
    time.sleep(0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pop.recover_expired() == [task.child_id]
    rec = jload(os.path.join(pop.dead_path(task.child_id), "fitness.json"))
    assert rec["outcome"] == "abandoned" and "task.json" in rec["reason"]


def test_commit_writes_every_file_before_the_first_fsync(tmp_path, monkeypatch):
    """A journaling file system then commits the child's files in one go: no fsync comes
    between two of its writes, and each written file is fsynced before the directory moves."""
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(9)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)
    log = []
    real_write_new, real_fsync_file, real_fsync_dir, real_rename = (
        store._write_new, store._fsync_file, store._fsync_dir, store.os.rename)
    monkeypatch.setattr(store, "_write_new", lambda p, d: log.append(("write", os.path.basename(p)))
                        or real_write_new(p, d))
    monkeypatch.setattr(store, "_fsync_file", lambda p: log.append(("fsync", os.path.basename(p)))
                        or real_fsync_file(p))
    monkeypatch.setattr(store, "_fsync_dir", lambda p: log.append(("fsync-dir", p)) or real_fsync_dir(p))
    monkeypatch.setattr(store.os, "rename", lambda a, b: log.append(("rename", a)) or real_rename(a, b))

    def write_ckpt(path):
        log.append(("write", "checkpoint.pt"))
        put(path, b"weights")

    res = pop.commit(task, {"n": task.child_id}, {"fitness": 0.5}, checkpoint=write_ckpt)
    assert res.status == "committed"
    writes = [i for i, e in enumerate(log) if e[0] == "write"]
    fsyncs = [i for i, e in enumerate(log) if e[0] == "fsync"]
    assert {log[i][1] for i in writes} == {"dna.json", "checkpoint.pt", "fitness.json"}
    assert max(writes) < min(fsyncs)
    assert {log[i][1] for i in fsyncs} == {"dna.json", "checkpoint.pt", "fitness.json"}
    dir_sync = log.index(("fsync-dir", task.lease.path))
    assert max(fsyncs) < dir_sync < log.index(("rename", task.lease.path))


def test_atomic_write_files_replaces_all_or_leaves_the_old_files(tmp_path, monkeypatch):
    a, b = str(tmp_path / "a.json"), str(tmp_path / "b.json")
    put(a, b"old a")
    put(b, b"old b")
    store.atomic_write_files({a: b"new a", b: b"new b"})
    assert open(a, "rb").read() == b"new a" and open(b, "rb").read() == b"new b"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.json"]
    real_fsync = store.os.fsync
    calls = []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.EIO, "I/O error")
        real_fsync(fd)

    monkeypatch.setattr(store.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        store.atomic_write_files({a: b"newer a", b: b"newer b"})
    assert open(a, "rb").read() == b"new a" and open(b, "rb").read() == b"new b"
    assert sorted(os.listdir(tmp_path)) == ["a.json", "b.json"]  # no temporary left behind


def test_save_dna_replaces_dna_and_task_together(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(10)
    fill(pop, me, rng)
    task = pop.next_task(me, rng)
    task.lease.save_dna({"n": 1}, ["INSERT-CONVOLUTION"])
    task.lease.save_dna({"n": 2}, ["ALTER-LEARNING-RATE"])
    d = task.lease.path
    assert jload(os.path.join(d, "dna.json")) == {"n": 2}
    tj = jload(os.path.join(d, "task.json"))
    assert tj["mutations_applied"] == ["ALTER-LEARNING-RATE"] and tj["task_uid"] == task.task_uid
    assert not [n for n in os.listdir(d) if ".tmp-" in n]


def _wait_for_a_task(root):
    Population.open(root).next_task(WorkerInfo.from_env(id="doomed"), random.Random(1))


def test_a_worker_killed_while_waiting_for_the_lock_holds_no_id(tmp_path):
    """The individuals budget counts ids: an id claimed by a worker that dies before its step
    would be a budget slot lost. The claim is made inside the critical section."""
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(11)
    fill(pop, me, rng)
    nid = pop.read_next_id()
    with pop.locked():
        proc = FORK.Process(target=_wait_for_a_task, args=(pop.root,))
        proc.start()
        time.sleep(1.0)  # it has prepared its step and waits for the lock
        assert proc.is_alive()
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    task, _ = train_one(pop, me, rng)
    assert task.child_id == nid


def test_a_released_id_is_the_next_one_claimed(tmp_path):
    pop = make(tmp_path, population_size=3)
    me, rng = WorkerInfo.from_env(id="me"), random.Random(12)
    fill(pop, me, rng)
    nid = pop.read_next_id()
    with pop.locked():
        assert pop._claim_id(nid) == nid
        pop._write_next_id(nid + 1)
    pop._unclaim(nid)  # the step that claimed it was given up
    task, _ = train_one(pop, me, rng)
    assert task.child_id == nid
    assert fsck(pop.root).clean
