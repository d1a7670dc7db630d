"""Progress lines for long fits: plain text on stderr, printed only at segment boundaries.

Nothing here runs inside a jitted program: the in-memory fit reports between segments of its
loop (:func:`numpyro_gmm.fitting.fit_gaussian_mixture` with ``progress_interval``, an
:class:`Every`), streaming EM between chunks (:mod:`numpyro_gmm.streaming`). Both are off
unless asked for, and both decide when a line is due with a :class:`Throttle`.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass

__all__ = ["Every", "Throttle", "report"]


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


@dataclass(frozen=True)
class Every:
    """How often a fit reports: every ``iterations`` steps, or every ``seconds`` of time.

    By iterations, the loop runs in segments of that many steps and reports after each
    (scikit-learn's ``verbose_interval``). By time, the segments adapt to the measured time
    per step (about half the interval each, at most twice the previous segment, so a slow
    first step such as a compilation does not make a segment overshoot) and a line is
    reported once ``seconds`` have passed since the last one: a slow fit reports as often as
    a fast one.

    Parameters
    ----------
    iterations : int, optional
    seconds : float, optional
        Exactly one of the two.
    """

    iterations: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.iterations is None) == (self.seconds is None):
            raise ValueError("Give exactly one of iterations and seconds.")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations!r}.")
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"seconds must be a positive number, got {self.seconds!r}.")

    @classmethod
    def of(cls, interval: int | Every | None) -> Every | None:
        """``interval`` as an :class:`Every` (an int counts iterations); None stays None."""
        if interval is None or isinstance(interval, Every):
            return interval
        return cls(iterations=int(interval))

    def throttle(self) -> Throttle:
        """The throttle deciding whether a segment's line is due (every segment by steps)."""
        return Throttle(0.0 if self.seconds is None else self.seconds)

    def segment(self, previous: int, seconds_per_step: float | None) -> int:
        """Steps to run before the next check, given the last segment's length and pace."""
        if self.iterations is not None:
            return self.iterations
        if seconds_per_step is None or previous == 0:
            return 1
        wanted = 0.5 * self.seconds / max(seconds_per_step, 1e-9)
        return int(max(1, min(wanted, 2 * previous)))
