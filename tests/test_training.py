"""assimilax._training.run_chunked: the chunk lengths a jitted training loop compiles for."""
import jax
import numpy as np
import pytest

from assimilax._training import chunk_size, run_chunked


@pytest.mark.parametrize("n_steps, chunk, expected", [(150, 100, 75), (300, 100, 100), (250, 100, 50),
                                                      (37, 100, 37), (101, 100, 100), (997, 100, 100)])
def test_chunk_size(n_steps, chunk, expected):
    assert chunk_size(n_steps, chunk) == expected


@pytest.mark.parametrize("n_steps", list(range(1, 260, 7)))
def test_chunk_size_is_a_divisor_when_one_is_near_chunk(n_steps):
    size = chunk_size(n_steps, 40)
    divisors = [s for s in range(20, 41) if n_steps % s == 0]
    if n_steps <= 40:
        assert size == n_steps
    elif divisors:
        assert size == max(divisors)
    else:
        assert size == 40


def test_chunk_size_rejects_a_bad_chunk():
    with pytest.raises(ValueError, match="chunk"):
        chunk_size(10, 0)


def test_run_chunked_runs_every_step_once_with_one_chunk_length():
    lengths = []

    def run(state, key, m):
        lengths.append(m)
        return state + m, np.arange(state, state + m, dtype=float)

    state, losses = run_chunked(run, 0, jax.random.key(0), 150, chunk=100, progress=False)
    assert state == 150 and set(lengths) == {75}
    np.testing.assert_array_equal(losses, np.arange(150.0))
