"""Multi-process ensembles: the ensemble Kalman filter on 2 JAX processes (2 CPU devices each,
joined by ``jax.distributed.initialize`` on localhost with gloo collectives) gives the numbers of a
one-process run; the helpers of :mod:`assimilax.parallel` behave in one process.

The two processes run ``tests/distributed_worker.py``; each passes only its own 4 of the 8 members
to :func:`~assimilax.parallel.shard_ensemble_from_local`. The reference is the unsharded run in
this process. Skipped, with the worker's message, only where the platform cannot start JAX's
distributed CPU runtime.
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.parallel import (
    gather,
    global_mesh,
    local_member_range,
    shard_ensemble,
    shard_ensemble_from_local,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import distributed_worker as worker  # noqa: E402

TIMEOUT_S = 300


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run_two_processes(out_dir):
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"  # 2 devices per process
    env.pop("JAX_PLATFORMS", None)
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, str(HERE / "distributed_worker.py"), str(i), "2", str(port),
                               str(out_dir)], cwd=HERE.parent, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=TIMEOUT_S)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"the 2-process run did not finish within {TIMEOUT_S} s")
    return [p.returncode for p in procs], outputs


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("distributed")
    codes, outputs = _run_two_processes(out_dir)
    if worker.SKIP in codes:
        msg = next(line for out in outputs for line in out.splitlines() if line.startswith("SKIP:"))
        pytest.skip(msg)
    for i, (code, out) in enumerate(zip(codes, outputs)):
        assert code == 0, f"process {i} exited with {code}:\n{out[-4000:]}"
    return [dict(np.load(out_dir / f"result_{i}.npz")) for i in range(2)]


@pytest.fixture(scope="module")
def one_process_results():
    _, _, _, ens0 = worker.problem()
    return worker.run_all(ens0)


def test_two_processes_see_four_devices_and_hold_half_the_members(two_process_results):
    for i, r in enumerate(two_process_results):
        assert int(r["devices"]) == 4 and int(r["local_devices"]) == 2
        assert (int(r["start"]), int(r["stop"])) == (4 * i, 4 * i + 4)


@pytest.mark.parametrize("name", list(worker.RUNS))
def test_two_processes_give_the_one_process_numbers(two_process_results, one_process_results, name):
    ref = one_process_results[name]
    for r in two_process_results:
        np.testing.assert_allclose(r[f"{name}_mean"], np.asarray(ref.analysis_mean), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(r[f"{name}_spread"], np.asarray(ref.analysis_spread), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(r[f"{name}_ensembles"], np.asarray(ref.ensembles), rtol=1e-10, atol=1e-10)
    # the filter moved the ensemble: the comparison is not between two copies of the prior
    assert np.abs(np.asarray(ref.analysis_mean)[-1] - np.asarray(worker.problem()[3]).mean(0)).max() > 0.1


# ------------------------------------------------------------ the helpers in one process
def test_helpers_in_one_process_equal_shard_ensemble():
    ens = jnp.arange(8 * 3, dtype=jnp.float64).reshape(8, 3)
    mesh = global_mesh()
    assert mesh.devices.size == len(jax.devices()) == 4
    assert local_member_range(8, mesh) == (0, 8)
    placed = shard_ensemble_from_local(np.asarray(ens), mesh=mesh)
    assert placed.shape == (8, 3) and len(placed.sharding.device_set) == 4
    assert placed.sharding.is_equivalent_to(shard_ensemble(ens, mesh).sharding, 2)
    np.testing.assert_array_equal(gather(placed), np.asarray(ens))
    np.testing.assert_array_equal(gather(jnp.ones(3)), np.ones(3))


def test_helpers_refuse_bad_requests():
    mesh = global_mesh()
    with pytest.raises(ValueError, match="positive multiple of the 4 devices"):
        local_member_range(6, mesh)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        shard_ensemble_from_local(np.zeros(8), mesh=mesh)
    with pytest.raises(ValueError, match=r"must have shape \(8, 3\).*got \(4, 3\)"):
        shard_ensemble_from_local(np.zeros((4, 3)), n_members=8, mesh=mesh)
