"""JAX's persistent compilation cache, opt-in, in the user's cache directory.

A fit compiles a few XLA programs for each new shape (rows, components, restarts); XLA's
compilation is the bulk of a first call's time. JAX can keep compiled programs on disk and
reuse them in later processes (six small fits in a fresh process: 14.0 s with an empty cache,
5.2 s with a warm one). ``NUMPYRO_GMM_COMPILATION_CACHE`` turns that on at ``import
numpyro_gmm``:

- ``1`` (or ``on``, ``true``, ``yes``, ``default``): in ``$XDG_CACHE_HOME/numpyro_gmm/jax``
  (``~/.cache/numpyro_gmm/jax``; on macOS ``~/Library/Caches/numpyro_gmm/jax``; on Windows
  ``%LOCALAPPDATA%\\numpyro_gmm\\jax``);
- a path: there;
- unset, ``0`` or ``off``: JAX's own setting is left as it is (a user's
  ``JAX_COMPILATION_CACHE_DIR`` keeps working).

:func:`configure_compilation_cache` does the same in a running process (before its first
compilation).

It is not on by default yet: in one of our test runs two long-lived processes died with a
segmentation fault inside XLA's CPU executable deserialization
(``jax._src.compilation_cache.get_executable_and_time``, JAX 0.12). The same runs later showed
plain compilations crashing the same way once a process held more memory mappings than Linux
allows (each compiled program holds about 80; see
:func:`numpyro_gmm.program_cache.release_compiled_programs_if_crowded`), the likely cause of
both; until that is confirmed, a crash is worse than a slow first call.

The cache is JAX's own: entries are keyed by the program, the JAX and XLA versions and the
device; a size limit (2 GiB by default, least recently used entries evicted) makes JAX lock
the directory with ``filelock``. Like every JAX compilation cache it is trusted code: do not
point it at a directory that others can write.
"""

import os
import sys
from pathlib import Path

__all__ = ["DEFAULT_MAX_SIZE", "ENV_VAR", "configure_compilation_cache", "default_cache_dir"]

#: Environment variable: 1 (or a directory) turns the cache on; unset or 0 leaves it off.
ENV_VAR = "NUMPYRO_GMM_COMPILATION_CACHE"
#: Size limit of the cache directory, in bytes (least recently used entries go first).
DEFAULT_MAX_SIZE = 2 * 1024**3
# Programs that compile faster than this are not worth a disk write and a later read.
_MIN_COMPILE_TIME_SECS = 0.1
_OFF = frozenset({"0", "off", "false", "no", "none", ""})
_ON = frozenset({"1", "on", "true", "yes", "default"})


def default_cache_dir() -> Path:
    """The per-user cache directory of this platform, with ``numpyro_gmm/jax`` appended."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "numpyro_gmm" / "jax"


def configure_compilation_cache(
    path: str | os.PathLike | None = "default", *, max_size: int = DEFAULT_MAX_SIZE
) -> Path | None:
    """Point JAX's persistent compilation cache at ``path``, or turn it off.

    Parameters
    ----------
    path : str, path-like, "default" or None
        The directory (created if missing); ``"default"`` for :func:`default_cache_dir`;
        ``None`` to stop using a persistent cache in this process.
    max_size : int
        Size limit of the directory in bytes; least recently used entries are evicted.

    Returns
    -------
    Path or None
        The directory in use.

    Notes
    -----
    JAX opens the cache at its first compilation: call this before the first fit (or any
    other ``jax.jit``) of the process for the setting to take effect.
    """
    import jax

    if path is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    directory = default_cache_dir() if str(path) == "default" else Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"Cannot create the compilation cache directory {str(directory)!r} ({error}); set "
            f"{ENV_VAR} to a writable directory, or to 0 to run without a cache."
        ) from None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_compilation_cache_max_size", int(max_size))
    if jax.config.jax_persistent_cache_min_compile_time_secs == 1.0:  # JAX's default
        jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_TIME_SECS)
    return directory


def configure_from_environment() -> Path | None:
    """The import-time setting: on only when ``NUMPYRO_GMM_COMPILATION_CACHE`` asks for it."""
    setting = os.environ.get(ENV_VAR)
    if setting is None or setting.strip().lower() in _OFF:
        return None
    setting = setting.strip()
    return configure_compilation_cache("default" if setting.lower() in _ON else setting)
