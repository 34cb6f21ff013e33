"""One process of the multi-process ETKF run of ``tests/test_distributed.py`` (not a test module).

Usage: ``python tests/distributed_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR``. Each process
builds the same problem, passes only its own members to
:func:`assimilax.parallel.shard_ensemble_from_local`, runs the same filter calls (SPMD) and writes
the gathered results to ``OUT_DIR/result_<PROCESS_ID>.npz``. Exit code 3 with a line starting
``SKIP:`` means the platform cannot run JAX's distributed CPU runtime.
"""
import sys

SKIP = 3


def problem():
    """The problem of ``tests/test_parallel.py``, built the same way in every process."""
    import jax
    import jax.numpy as jnp

    from assimilax import simulate
    from assimilax.models import Lorenz96
    from assimilax.observations import LinearObservation

    model = Lorenz96(16, dt=0.05)
    obs = LinearObservation.every_kth(16, 2, 1.0)
    x0 = jnp.full(16, 8.0).at[0].add(0.01)
    sim = simulate(model, obs, x0, 30, key=jax.random.PRNGKey(0), burn_in=200)
    ens0 = sim.x0[None, :] + jax.random.normal(jax.random.PRNGKey(1), (8, 16))
    return model, obs, sim.observations, ens0


#: the filter calls compared with the one-process run
RUNS = {
    "etkf_rotate": dict(key_seed=2, method="sqrt", inflation=1.02, rotate=True),
    "pertobs": dict(key_seed=3, method="pertobs", inflation=1.02),
}


def run_all(ens0_global):
    import jax

    from assimilax.filters import ensemble_kalman_filter

    model, obs, ys, _ = problem()
    out = {}
    for name, kw in RUNS.items():
        kw = dict(kw)
        key = jax.random.PRNGKey(kw.pop("key_seed"))
        res = ensemble_kalman_filter(model, obs, ys, ens0_global, key=key, **kw)
        out[name] = res
    return out


def main(argv):
    pid, nproc, port, out_dir = int(argv[1]), int(argv[2]), int(argv[3]), argv[4]
    import jax

    jax.config.update("jax_enable_x64", True)
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=nproc,
                                   process_id=pid, initialization_timeout=60)
    except Exception as e:  # the platform lacks the distributed runtime or gloo
        print(f"SKIP: jax.distributed.initialize with gloo CPU collectives failed: {type(e).__name__}: {e}")
        return SKIP
    import numpy as np

    from assimilax import parallel

    assert jax.process_count() == nproc and jax.process_index() == pid
    _, _, _, ens0 = problem()
    mesh = parallel.global_mesh()
    start, stop = parallel.local_member_range(ens0.shape[0], mesh)
    local = np.asarray(ens0)[start:stop]  # this process holds only its own members
    ens0_global = parallel.shard_ensemble_from_local(local, ens0.shape[0], mesh)
    assert not ens0_global.is_fully_addressable
    results = run_all(ens0_global)
    arrays = {"devices": np.array(len(jax.devices())), "local_devices": np.array(len(jax.local_devices())),
              "start": np.array(start), "stop": np.array(stop)}
    for name, res in results.items():
        arrays[f"{name}_mean"] = parallel.gather(res.analysis_mean)
        arrays[f"{name}_spread"] = parallel.gather(res.analysis_spread)
        arrays[f"{name}_ensembles"] = parallel.gather(res.ensembles)
    np.savez(f"{out_dir}/result_{pid}.npz", **arrays)
    jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
