"""evo.base.slurm: the one way a Slurm job is named (array task ``12345_7``, plain job ``12345``)."""

from __future__ import annotations

from evo.base.slurm import slurm_job_id, slurm_job_id_from_env


def test_array_task_plain_job_and_no_job():
    assert slurm_job_id("12352", "12345", "7") == "12345_7"
    assert slurm_job_id(12352, 12345, 0) == "12345_0"        # numbers from a JSON record; task 0 counts
    assert slurm_job_id("12352", None, None) == "12352"
    assert slurm_job_id("12352", "12345", "") == "12352"      # half an array id is no array id
    assert slurm_job_id(None, None, None) is None
    assert slurm_job_id("", "", "") is None


def test_from_the_environment():
    env = {"SLURM_JOB_ID": "12352", "SLURM_ARRAY_JOB_ID": "12345", "SLURM_ARRAY_TASK_ID": "7"}
    assert slurm_job_id_from_env(env) == "12345_7"
    assert slurm_job_id_from_env({"SLURM_JOB_ID": "99"}) == "99"
    assert slurm_job_id_from_env({}) is None


def test_workers_are_named_after_their_job_the_same_way(monkeypatch):
    """The population's worker ids use this formatter: a worker of array task 7 is ``12345_7@host:pid``."""
    from evo.population import WorkerInfo

    monkeypatch.setenv("SLURM_JOB_ID", "12352")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "12345")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    me = WorkerInfo.from_env()
    assert me.id == f"12345_7@{me.host}:{me.pid}"
    assert slurm_job_id(me.slurm_job_id, me.slurm_array_job_id, me.slurm_array_task_id) == "12345_7"
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID")
    assert WorkerInfo.from_env().id.startswith("12352@")
    monkeypatch.delenv("SLURM_JOB_ID")
    assert WorkerInfo.from_env().id == f"{me.host}:{me.pid}"
