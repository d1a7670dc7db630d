"""JAX's persistent compilation cache, on by default, in the user's cache directory.

A fit compiles an XLA program for each new configuration (components, covariance type,
initialization, data shape); XLA's compilation is the bulk of a first call's time. JAX keeps
compiled programs on disk and reuses them in later processes. At ``import numpyro_gmm`` the
cache is set from ``NUMPYRO_GMM_COMPILATION_CACHE``:

- unset (the default), ``1``, ``on``, ``true``, ``yes`` or ``default``: in
  ``$XDG_CACHE_HOME/numpyro_gmm/jax`` (``~/.cache/numpyro_gmm/jax``; on macOS
  ``~/Library/Caches/numpyro_gmm/jax``; on Windows ``%LOCALAPPDATA%\\numpyro_gmm\\jax``),
  unless ``JAX_COMPILATION_CACHE_DIR`` already names one (a user's JAX setting is kept);
- a path: there;
- ``0``, ``off``, ``false``, ``no`` or ``none``: no persistent cache from this package (JAX's
  own setting is left as it is).

When unset and the default directory cannot be created (a read-only home), the process runs
without a cache; an explicit setting that cannot be honoured is an error.
:func:`configure_compilation_cache` does the same in a running process (before its first
compilation).

The cache is JAX's own: entries are keyed by the program, the compiler options, the JAX and
XLA versions and the device; a size limit (2 GiB by default, least recently used entries
evicted) makes JAX lock the directory with ``filelock``, so concurrent processes share it
safely. Like every JAX compilation cache it is trusted code: do not point it at a directory
that others can write.

A process that compiles a few hundred distinct programs holds many memory mappings (about 80
per XLA:CPU executable) and, past Linux's limit, crashes inside LLVM or while loading a
cached program; :func:`numpyro_gmm.program_cache.release_compiled_programs_if_crowded`, called
before every fit, drops JAX's in-memory programs well before that.
"""

import os
import sys
from pathlib import Path

__all__ = ["DEFAULT_MAX_SIZE", "ENV_VAR", "configure_compilation_cache", "default_cache_dir"]

#: Environment variable: 0 turns the cache off, a directory moves it (default: on).
ENV_VAR = "NUMPYRO_GMM_COMPILATION_CACHE"
#: Size limit of the cache directory, in bytes (least recently used entries go first).
DEFAULT_MAX_SIZE = 2 * 1024**3
# Programs that compile faster than this are not worth a disk write and a later read.
_MIN_COMPILE_TIME_SECS = 0.0
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
    """The import-time setting (see the module docstring): on unless turned off."""
    setting = os.environ.get(ENV_VAR)
    if setting is None:
        if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
            return None
        try:
            return configure_compilation_cache("default")
        except ValueError:  # no writable cache directory: run without one
            return None
    setting = setting.strip()
    if setting.lower() in _OFF:
        return None
    return configure_compilation_cache("default" if setting.lower() in _ON else setting)
