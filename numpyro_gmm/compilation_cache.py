"""JAX's persistent compilation cache, on by default in the user's cache directory.

A fit compiles a few XLA programs for each new shape (rows, components, restarts); XLA's
compilation is the bulk of a first call's time. JAX can keep compiled programs on disk and
reuse them in later processes; ``import numpyro_gmm`` turns that on, in

- ``$NUMPYRO_GMM_COMPILATION_CACHE`` if it is set to a path,
- else ``$XDG_CACHE_HOME/numpyro_gmm/jax`` (``~/.cache/numpyro_gmm/jax``; on macOS
  ``~/Library/Caches/numpyro_gmm/jax``; on Windows ``%LOCALAPPDATA%\\numpyro_gmm\\jax``),

unless the user already chose a cache (``JAX_COMPILATION_CACHE_DIR`` or
``jax.config.update("jax_compilation_cache_dir", ...)`` before the import): then theirs is
kept. ``NUMPYRO_GMM_COMPILATION_CACHE=0`` (or ``off``, ``false``, ``no``) leaves JAX's
configuration untouched; :func:`configure_compilation_cache` moves or disables the cache
in a running process.

The cache is JAX's own: entries are keyed by the program, the JAX and XLA versions and the
device, so a stale entry is never used. A size limit (2 GiB by default, least recently used
entries evicted) makes JAX lock the directory with ``filelock``, so concurrent processes can
share it. Like every JAX compilation cache it is trusted code: do not point it at a directory
that others can write.
"""

import os
import sys
from pathlib import Path

__all__ = ["DEFAULT_MAX_SIZE", "ENV_VAR", "configure_compilation_cache", "default_cache_dir"]

#: Environment variable: a directory for the cache, or 0 / off / false / no to leave it off.
ENV_VAR = "NUMPYRO_GMM_COMPILATION_CACHE"
#: Size limit of the cache directory, in bytes (least recently used entries go first).
DEFAULT_MAX_SIZE = 2 * 1024**3
# Programs that compile faster than this are not worth a disk write and a later read.
_MIN_COMPILE_TIME_SECS = 0.1
_OFF = frozenset({"0", "off", "false", "no", "none", ""})


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
    """The import-time default: the environment's choice, the user's JAX setting, or ours."""
    setting = os.environ.get(ENV_VAR)
    if setting is not None and setting.strip().lower() in _OFF:
        return None
    if setting is None and os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None  # the user configured JAX's cache themselves
    import jax

    if setting is None and jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    try:
        return configure_compilation_cache(setting or "default")
    except ValueError:
        if setting:  # an explicit directory that cannot be used is an error
            raise
        return None  # no writable home: run without a cache, as JAX does by default
