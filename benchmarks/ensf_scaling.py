r"""EnSF seconds per cycle and peak memory for d = 10^3 ... 10^6 (Lorenz-96, arctan observations).

Setting of the EnSF paper and of the PyTorch reference timings in ``shared/ANCHORS.md``: N = 20,
F = 8, RK4 dt = 0.01, observed every 10 steps, sigma_obs = 0.05, eps_a = 0.5, eps_b = 0.025,
damping 1 - t, 500 reverse-SDE steps, float32. Each dimension runs in a fresh subprocess so that
``ru_maxrss`` is the peak resident memory of that size alone.

Usage (book venv)::

    .venv/bin/python -m benchmarks.ensf_scaling [--dims 1000,10000,100000,1000000] [--cycles 5]
        [--prior-score per_member|mixture] [--sde-noise gaussian,rademacher] [--devices 2] [--no-write]

The PyTorch anchors use the public code's default prior score (``gm_var_ratio = 0``, our
``prior_score="per_member"``) with Gaussian Euler--Maruyama increments and 2 threads; the
like-for-like records are therefore ``method="EnSF"`` (per member, Gaussian increments from
Threefry words, XLA) and ``method="EnSF (ARS increments)"`` (the same Euler--Maruyama with
Gaussian increments from ARS-4x32-7 words, run by the fused C++ kernel of ``assimilax._native``
when it builds; ``config.native_kernel`` says whether it did). Records with
``sde_noise="rademacher"`` (the simplified weak Euler scheme) are stored under
``method="EnSF (weak Euler)"``. ``--devices D`` splits the 2 cores into ``D`` XLA host devices and
shards the members over them (``NamedSharding(mesh, P("x", None))``).

Records (``problem="lorenz96_arctan"``, ``method="EnSF"``, ``library="assimilax"``) are merged
into ``benchmarks/results/peers.json`` with :func:`benchmarks._records.append_records`.
``seconds_total`` includes compilation; ``seconds_per_cycle`` is the median over the warm runs
(``--repeats``: 3 below d = 10^6, 1 at 10^6, where one warm run of EnSF with Threefry increments
takes about two minutes) of warm time / cycles, as in ``benchmarks/peers.py``, and
``seconds_per_cycle_runs`` lists every warm run; ``rmse`` is the mean analysis RMSE over the
cycles (the same in every run: same key).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

PYTORCH_ANCHOR = {1000: 0.27, 10000: 2.3, 100000: 22.6, 1000000: 670.0}  # s/cycle, 500 SDE steps
METHOD = {"gaussian": "EnSF", "gaussian_ars": "EnSF (ARS increments)", "rademacher": "EnSF (weak Euler)"}


def run_one(dim: int, cycles: int, n_sde: int, prior_score: str, sde_noise: str = "gaussian", seed: int = 0,
            repeats: int | None = None) -> dict:
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    from assimilax.filters.ensf import ensemble_score_filter
    from assimilax.models import Lorenz96
    from assimilax.observations import NonlinearObservation

    sigma = 0.05
    model = Lorenz96(dim, dt=0.01)
    obs = NonlinearObservation("arctan", dim, jnp.float32(sigma))  # variance vector only: O(d) memory
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    x0 = model.integrate(8.0 + jax.random.normal(k[0], (dim,), jnp.float32), 500)

    @jax.jit
    def truth(x0, key):
        def cyc(x, kk):
            x = model.integrate(x, 10)
            return x, (x, jnp.arctan(x) + sigma * jax.random.normal(kk, x.shape, x.dtype))
        return jax.lax.scan(cyc, x0, jax.random.split(key, cycles))[1]

    states, ys = truth(x0, k[1])
    from assimilax.filters.ensf import _native_applies
    from assimilax.diffusion.guidance import noise_precision
    prec, diag = noise_precision(obs)
    native_used = bool(_native_applies(obs, jnp.zeros((1, dim), jnp.float32), prec, diag, prior_score == "mixture",
                                       None if len(jax.devices()) == 1 else "sharded", sde_noise))
    E0 = x0[None] + jax.random.normal(k[2], (20, dim), jnp.float32)
    sharding = None
    if len(jax.devices()) > 1:
        sharding = NamedSharding(Mesh(jax.devices(), ("x",)), P("x", None))
    kw = dict(steps_per_obs=10, n_sde_steps=n_sde, prior_score=prior_score, store_ensembles=False, sde_noise=sde_noise,
              sharding=sharding)
    t0 = time.perf_counter()
    jax.block_until_ready(ensemble_score_filter(model, obs, ys, E0, key=k[3], **kw))
    total = time.perf_counter() - t0
    repeats = (3 if dim < 10**6 else 1) if repeats is None else repeats
    warms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = jax.block_until_ready(ensemble_score_filter(model, obs, ys, E0, key=k[3], **kw))
        warms.append((time.perf_counter() - t0) / cycles)
    rmse = jnp.sqrt(jnp.mean((res.analysis_mean - states) ** 2, axis=1))
    return {
        "problem": "lorenz96_arctan", "method": METHOD[sde_noise],
        "library": "assimilax", "dim": dim,
        "rmse": float(jnp.mean(rmse)), "rmse_final": float(rmse[-1]), "seconds_per_cycle": statistics.median(warms),
        "seconds_per_cycle_runs": warms,
        "seconds_total": total, "seeds": [seed], "n_cycles": cycles,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "config": {"N": 20, "n_sde_steps": n_sde, "eps_a": 0.5, "eps_b": 0.025, "prior_score": prior_score,
                   "sde_noise": sde_noise, "dtype": "float32", "devices": len(jax.devices()), "backend": jax.default_backend(),
                   "native_kernel": native_used},
        "pytorch_anchor_seconds_per_cycle": PYTORCH_ANCHOR.get(dim),
    }


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--dims", default="1000,10000,100000,1000000")
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--sde-steps", type=int, default=500)
    p.add_argument("--prior-score", default="per_member")
    p.add_argument("--sde-noise", default="gaussian,gaussian_ars,rademacher")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--repeats", type=int, default=None, help="warm runs per size (default 3 below d = 1e6, else 1)")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.single is not None:
        print(json.dumps(run_one(a.single, a.cycles, a.sde_steps, a.prior_score, a.sde_noise, repeats=a.repeats)))
        return
    env = dict(os.environ)
    if a.devices > 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={a.devices}").strip()
    records = []
    for d, noise in ((int(s), n) for s in a.dims.split(",") for n in a.sde_noise.split(",")):
        out = subprocess.run([sys.executable, "-m", "benchmarks.ensf_scaling", "--single", str(d), "--cycles", str(a.cycles),
                              "--sde-steps", str(a.sde_steps), "--prior-score", a.prior_score, "--sde-noise", noise]
                             + ([] if a.repeats is None else ["--repeats", str(a.repeats)]),
                             capture_output=True, text=True, check=True, env=env,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        rec = json.loads(out.stdout.strip().splitlines()[-1])
        anchor = rec["pytorch_anchor_seconds_per_cycle"]
        speed = f"  ({anchor / rec['seconds_per_cycle']:.1f}x vs PyTorch anchor)" if anchor else ""
        print(f"d={d:>8} {noise:>10}: {rec['seconds_per_cycle']:.3f} s/cycle, peak {rec['peak_memory_mb']:.0f} MiB, "
              f"RMSE {rec['rmse']:.3f}{speed}", flush=True)
        records.append(rec)
    if not a.no_write:
        from benchmarks._records import append_records
        append_records(records)


if __name__ == "__main__":
    main()
