import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(20261125)


@pytest.fixture
def spy_on(monkeypatch):
    """``spy_on(name)``: wrap the numba backend's optional hook ``name``
    (``_ops``' function as it is then) so that each call's return value is
    recorded in the list it returns."""
    from softcore_numba import _ops
    from softcore_numba import backend as nb

    def wrap(name):
        seen = []
        real = getattr(_ops, name)

        def hook(*args):
            got = real(*args)
            seen.append(got)
            return got

        monkeypatch.setattr(nb, name, hook, raising=False)
        return seen

    return wrap
