"""Where a call's time goes: tracing, lowering, XLA compilation (or loading from the
persistent cache), and running.

JAX reports the duration of each stage of building a program through :mod:`jax.monitoring`.
One listener, registered on first use, adds them to the breakdown of every active
:func:`measure` block of the calling context; outside such blocks it does nothing.
``GaussianMixture(verbose=1)``, ``ngm.fit(..., progress=True)`` and the CLI print the summary.
"""

import contextlib
import contextvars
import dataclasses
import time
from collections.abc import Iterator

__all__ = ["TimeBreakdown", "measure"]

_TRACE = "/jax/core/compile/jaxpr_trace_duration"
_LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
_COMPILE = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"


@dataclasses.dataclass
class TimeBreakdown:
    """Seconds spent in each stage, and how many programs were built.

    Attributes
    ----------
    total : float
        Wall time of the measured block.
    trace, lower, compile : float
        Tracing Python to jaxprs, lowering to StableHLO, and XLA compilation (which includes
        loading programs from the persistent cache).
    programs : int
        Programs compiled or loaded.
    cached : int
        Of those, loaded from the persistent compilation cache.
    """

    total: float = 0.0
    trace: float = 0.0
    lower: float = 0.0
    compile: float = 0.0
    programs: int = 0
    cached: int = 0

    @property
    def run(self) -> float:
        """Everything else: running the programs and the host's own work."""
        return max(0.0, self.total - self.trace - self.lower - self.compile)

    def summary(self) -> str:
        """One line, e.g. ``"1.92 s: trace 0.21 s, lower 0.09 s, compile 1.50 s (2 programs,
        1 from the cache), run 0.12 s"``."""
        programs = f"{self.programs} program{'s' if self.programs != 1 else ''}"
        if self.cached:
            programs += f", {self.cached} from the cache"
        return (
            f"{self.total:.2f} s: trace {self.trace:.2f} s, lower {self.lower:.2f} s, "
            f"compile {self.compile:.2f} s ({programs}), run {self.run:.2f} s"
        )


_ACTIVE: contextvars.ContextVar[tuple[TimeBreakdown, ...]] = contextvars.ContextVar(
    "numpyro_gmm_time_breakdowns", default=()
)
_listening = False


def _on_duration(event: str, seconds: float, **_: object) -> None:
    for breakdown in _ACTIVE.get():
        if event == _TRACE:
            breakdown.trace += seconds
        elif event == _LOWER:
            breakdown.lower += seconds
        elif event == _COMPILE:
            breakdown.compile += seconds
            breakdown.programs += 1


def _on_event(event: str, **_: object) -> None:
    if event == _CACHE_HIT:
        for breakdown in _ACTIVE.get():
            breakdown.cached += 1


def _listen() -> None:
    global _listening
    if not _listening:
        import jax.monitoring

        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        jax.monitoring.register_event_listener(_on_event)
        _listening = True


@contextlib.contextmanager
def measure() -> Iterator[TimeBreakdown]:
    """Measure the block: ``with measure() as times: ...; print(times.summary())``.

    Nested blocks each get a breakdown of everything built inside them.
    """
    _listen()
    breakdown = TimeBreakdown()
    token = _ACTIVE.set((*_ACTIVE.get(), breakdown))
    started = time.perf_counter()
    try:
        yield breakdown
    finally:
        breakdown.total = time.perf_counter() - started
        _ACTIVE.reset(token)
