"""numpy, when it is there: the optional extra ``phasecast[numpy]``.

The library never imports numpy unless asked to (``numpy=True`` on a subscriber) or
handed an ``ndarray`` (which means the caller already imported it). Without numpy
every code path works on lists.
"""

from __future__ import annotations

import sys
from typing import Any

INSTALL_HINT = 'numpy=True needs numpy: pip install "phasecast[numpy]"'


def require() -> Any:
    """The numpy module, or an ImportError that says how to install it."""
    try:
        import numpy
    except ImportError as err:  # pragma: no cover - exercised in a subprocess test
        raise ImportError(INSTALL_HINT) from err
    return numpy


def is_ndarray(value: Any) -> bool:
    """Whether ``value`` is a numpy array (False, without importing numpy, when the
    caller has not imported it: then it cannot hold one)."""
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, numpy.ndarray)
