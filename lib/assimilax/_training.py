"""The chunked training driver shared by :mod:`assimilax.diffusion.training` and
:mod:`assimilax.learned.training`: ``chunk`` optimiser steps run inside one jitted
``lax.scan``, and a tqdm bar advances (with the latest loss) between chunks; and the default
optimiser, one object per setting, so that a module-level jitted step compiles once for many fits."""
from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax


@functools.lru_cache(maxsize=128)
def adam_cosine(learning_rate: float, n_steps: int, alpha: float = 0.05):
    """Adam whose rate decays from ``learning_rate`` to ``alpha * learning_rate`` on a cosine over
    ``n_steps`` (the default optimiser of the library's trainers). One object per setting: a
    jitted step that takes the optimiser as a static argument then hits its compilation cache
    when a fit is repeated (seeds, DAgger rounds, ablations) instead of recompiling."""
    return optax.adam(optax.cosine_decay_schedule(float(learning_rate), int(n_steps), alpha=float(alpha)))


def run_chunked(run, state, key, n_steps: int, *, chunk: int = 100, progress: bool = True, desc: str = "train",
                on_chunk=None):
    """Drive ``run(state, key, m) -> (state, losses (m,))`` for ``n_steps`` steps in chunks.

    Each chunk gets ``key, sub = jax.random.split(key)`` and runs ``min(size, remaining)`` steps
    with ``sub``, where ``size`` is the largest divisor of ``n_steps`` in ``[chunk / 2, chunk]`` if
    there is one, else ``chunk``: a jitted ``run`` compiles once per distinct chunk length, and a
    remainder chunk (150 steps in chunks of 100) would compile a second program. ``on_chunk(state, done) -> dict`` may add values (e.g. a validation loss) to
    the progress bar; it is called after every chunk.

    **Returns:** ``(state, losses)`` with ``losses`` ``(n_steps,)`` (NumPy).
    """
    from tqdm.auto import tqdm

    size = chunk_size(n_steps, chunk)
    losses, done = [], 0
    with tqdm(total=n_steps, disable=not progress, desc=desc) as bar:
        while done < n_steps:
            m = min(size, n_steps - done)
            key, sub = jax.random.split(key)
            state, ls = run(state, sub, m)
            losses.append(np.asarray(ls))
            done += m
            post = {"loss": float(ls[-1])}
            if on_chunk is not None:
                post.update(on_chunk(state, done))
            bar.update(m)
            bar.set_postfix(**post)
    return state, np.concatenate(losses) if losses else np.zeros(0)


def chunk_size(n_steps: int, chunk: int) -> int:
    """The chunk length :func:`run_chunked` uses: the largest divisor of ``n_steps`` in
    ``[ceil(chunk / 2), chunk]``, else ``chunk`` (raises ``ValueError`` unless ``chunk >= 1``)."""
    n_steps, chunk = int(n_steps), int(chunk)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if n_steps <= chunk:
        return max(n_steps, 1)
    for size in range(chunk, (chunk + 1) // 2 - 1, -1):
        if n_steps % size == 0:
            return size
    return chunk


def strong_types(tree):
    """``tree`` with every weakly typed array (one built from a Python scalar, e.g. ``jax.lax.full(shape, 1.0)`` or
    the ``R_full`` of a :class:`~assimilax.observations.LinearObservation`) made strongly typed, its
    dtype unchanged. A jitted step's outputs are strongly typed, so a model refitted from a previous
    fit's result (a DAgger round) only matches the first fit's compiled signature if the first fit
    saw strong types too."""
    def strong(a):
        return jnp.array(a, dtype=a.dtype) if eqx.is_array(a) and getattr(a, "weak_type", False) else a

    return jax.tree_util.tree_map(strong, tree)


__all__ = ["adam_cosine", "strong_types", "chunk_size", "run_chunked"]
