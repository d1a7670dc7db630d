"""Small example data sets bundled with numpyro_gmm.

Available examples
------------------
faithful
    Old Faithful geyser, 272 eruptions, columns ``eruptions`` (duration, minutes) and
    ``waiting`` (minutes to the next eruption). R's ``datasets::faithful`` (source W. Härdle;
    see also Azzalini and Bowman, 1990, *Applied Statistics* 39, 357-365).
galaxies
    Velocities (km/s) of 82 galaxies in the Corona Borealis region, one column ``velocity``.
    R's ``MASS::galaxies`` (Roeder, 1990, *JASA* 85, 617-624). The values are shipped exactly
    as in MASS, including its known typo: observation 78 (index 77) is 26690, which MASS's
    documentation says should be 26960.

The values were copied unchanged from the CSV exports of the R data sets; the file
``README.md`` next to this module records their provenance and checksums.
"""

from __future__ import annotations

import csv
import io
from importlib import resources

import numpy as np

__all__ = ["list_examples", "load_example"]

_EXAMPLES: dict[str, str] = {
    "faithful": "faithful.csv",
    "galaxies": "galaxies.csv",
}


def list_examples() -> list[str]:
    """Return the names of the bundled example data sets.

    Returns
    -------
    list of str
        Sorted names accepted by :func:`load_example`.
    """
    return sorted(_EXAMPLES)


def load_example(name: str) -> tuple[np.ndarray, list[str]]:
    """Load a bundled example data set.

    Parameters
    ----------
    name : str
        Name of the example, one of :func:`list_examples` (case-insensitive).

    Returns
    -------
    data : numpy.ndarray
        Float64 array of shape ``(n_samples, n_features)``; a one-column data set such as
        ``galaxies`` has shape ``(82, 1)``. A fresh array on each call.
    columns : list of str
        Column names, one per feature.

    Raises
    ------
    ValueError
        If ``name`` is not a bundled example; the message lists the available ones.

    Examples
    --------
    >>> x, columns = load_example("faithful")
    >>> x.shape, columns
    ((272, 2), ['eruptions', 'waiting'])
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in _EXAMPLES:
        available = ", ".join(list_examples())
        raise ValueError(f"unknown example {name!r}; available examples: {available}")
    text = resources.files(__name__).joinpath(_EXAMPLES[key]).read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text))
    columns = [c.strip() for c in next(reader)]
    rows = [[float(v) for v in row] for row in reader if row]
    data = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(columns))
    return data, columns
