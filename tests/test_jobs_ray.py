"""Jobs on a real local Ray cluster (two worker processes): each actor holds a model replica
and runs pieces of the job; the merged result equals the one-process route number for number,
and a piece whose actor was killed is run again on a new actor."""

import os
import signal

import pytest

from test_jobs import SET, make_client, same, wait

ray = pytest.importorskip("ray")  # pinned in the test extra; the import guard only names the cause


@pytest.fixture(scope="module")
def ray_executor(tiny_dir):
    from circuit_debugger.jobs import RayExecutor

    ex = RayExecutor({"tiny": {"name": "tiny", "spec": str(tiny_dir)}}, n=2, address="local", num_cpus=2)
    yield ex
    ex.close()
    ray.shutdown()


def test_ray_job_equals_one_process_and_survives_a_killed_actor(tiny, ray_executor, tmp_path):
    c = make_client(tiny, ray_executor, tmp_path / "db.sqlite", batch_size=3)
    body = {"model": "tiny", "promptset": SET, "top_k": 20, "drill": 5}
    first = wait(c, c.post("/api/jobs/dataset/attribute", json=body).json()["id"])
    assert first["status"] == "done", first
    reference = c.post("/api/dataset/attribute", json=body).json()  # the same pieces, in this one process
    same(first["result"], reference)
    pids = ray_executor.pids()
    assert len(set(pids)) == 2 and os.getpid() not in pids  # two actors, two processes, none of them this one
    # kill both actors' processes: the next pieces meet dead actors and run again on new ones
    before = ray_executor.retries
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    circuit = {"model": "tiny", "promptset": SET, "nodes": ["L1.H0", "L0.H1@S2"], "n_random": 20, "greedy_steps": 3}
    j = wait(c, c.post("/api/jobs/circuit/evaluate", json=circuit).json()["id"])
    assert j["status"] == "done" and ray_executor.retries > before, (j, ray_executor.retries)
    same(j["result"], c.post("/api/circuit/evaluate", json=circuit).json())
    now = ray_executor.pids()
    assert now and set(now).isdisjoint(pids)  # a new actor (a new replica) ran it
