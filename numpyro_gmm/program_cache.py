"""A bounded cache of compiled programs.

Programs built from a user's model are cached on the model's structure so that a new call
with new data of the same shapes does not trace and compile again. The cache holds at most
``maxsize`` programs (least recently used first out), and the programs it holds close over no
data: callers pass the data as arguments.
"""

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["ProgramCache"]


class ProgramCache:
    """Least-recently-used cache of compiled programs, keyed by hashable structure keys.

    Parameters
    ----------
    maxsize : int
        Most programs kept.
    """

    def __init__(self, maxsize: int = 16) -> None:
        self.maxsize = int(maxsize)
        self._programs: OrderedDict[Hashable, Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._programs)

    def clear(self) -> None:
        """Drop every program."""
        self._programs.clear()

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The program cached under ``key``, built by ``build()`` on a miss.

        A key that cannot be hashed (an unhashable model argument) is built every time.
        """
        try:
            hash(key)
        except TypeError:
            return build()
        if key in self._programs:
            self._programs.move_to_end(key)
            return self._programs[key]
        program = build()
        self._programs[key] = program
        if len(self._programs) > self.maxsize:
            self._programs.popitem(last=False)
        return program


# Each XLA:CPU executable holds about 80 memory mappings while JAX caches it; a process that
# compiles a few hundred distinct shapes (a long sweep over N and K) would reach Linux's
# vm.max_map_count (65530 by default) and crash inside LLVM. Above this many mappings, JAX's
# caches are dropped before the next fit (costing only recompilation).
_MAX_MEMORY_MAPS = 40000


def release_compiled_programs_if_crowded(max_maps: int | None = None) -> bool:
    """Clear JAX's compiled-program caches when the process holds more than ``max_maps``
    memory mappings (default ``_MAX_MEMORY_MAPS``).

    Returns whether they were cleared. A no-op where ``/proc/self/maps`` does not exist.
    """
    max_maps = _MAX_MEMORY_MAPS if max_maps is None else max_maps
    try:
        with open("/proc/self/maps") as maps:
            count = sum(1 for _ in maps)
    except OSError:
        return False
    if count <= max_maps:
        return False
    import jax

    jax.clear_caches()
    return True
