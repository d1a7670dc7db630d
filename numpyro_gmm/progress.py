"""Progress lines for long fits: plain text on stderr, printed only at segment boundaries.

Nothing here runs inside a jitted program: the in-memory fit reports between segments of its
loop (:func:`numpyro_gmm.fitting.fit_gaussian_mixture` with ``progress_interval``), streaming
EM between chunks (:mod:`numpyro_gmm.streaming`). Both are off unless asked for.
"""

import sys
import time

__all__ = ["report", "Throttle"]


def report(message: str) -> None:
    """Write one progress line to stderr (flushed, so it shows in logs as it happens)."""
    print(message, file=sys.stderr, flush=True)


class Throttle:
    """Say whether a periodic progress line is due: at most one per ``interval`` seconds.

    ``interval=None`` switches reporting off; ``0`` reports every time.
    """

    def __init__(self, interval: float | None) -> None:
        self.interval = interval
        self.started = time.perf_counter()
        self._last = -float("inf")

    @property
    def enabled(self) -> bool:
        return self.interval is not None

    def elapsed(self) -> float:
        """Seconds since the throttle was created."""
        return time.perf_counter() - self.started

    def due(self) -> bool:
        """True (and restart the period) when enabled and ``interval`` seconds have passed."""
        if self.interval is None:
            return False
        now = time.perf_counter()
        if now - self._last < self.interval:
            return False
        self._last = now
        return True
