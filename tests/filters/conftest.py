"""Fixtures shared by the filter tests (a conftest, since the suite imports test modules by path)."""
import jax
import pytest

from assimilax.models import DynamicalModel


class DeterministicLinear(DynamicalModel):
    """x -> A x without model noise (``LinearGaussian`` needs a positive-definite Q): the forecast
    ensemble then has exactly known moments, and the model commutes with ensemble transforms."""

    A: jax.Array = None

    @property
    def dim(self):
        return self.A.shape[0]

    def step(self, x, t=0.0):
        return self.A @ x


@pytest.fixture(scope="session")
def deterministic_linear():
    """The class :class:`DeterministicLinear` (session scope, so hypothesis tests may use it)."""
    return DeterministicLinear
