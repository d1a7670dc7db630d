"""The persistent compilation cache: on by default, turned off or moved by the environment."""

import json
import os
import subprocess
import sys

import pytest

from numpyro_gmm.compilation_cache import ENV_VAR, configure_compilation_cache

# One small fit in a fresh process; prints JAX's cache setting.
_FIT = """
import json, numpy as np, jax, numpyro_gmm as ngm
x = np.random.default_rng(0).normal(size=(60, 2))
ngm.GaussianMixture(2, covariance_type="diag", random_state=0).fit(x)
print(json.dumps({"dir": jax.config.jax_compilation_cache_dir,
                  "enabled": jax.config.jax_enable_compilation_cache}))
"""


def _run(env_updates: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "JAX_COMPILATION_CACHE_DIR")}
    env.update(env_updates)
    completed = subprocess.run(
        [sys.executable, "-c", _FIT], env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _entries(directory) -> set[str]:
    return {p.name for p in directory.iterdir() if p.name.endswith("-cache")}


def test_a_second_process_reuses_the_first_ones_programs(tmp_path):
    cache = tmp_path / "cache"
    first = _run({ENV_VAR: str(cache)})
    assert first["dir"] == str(cache)
    written = _entries(cache)
    assert written, "the first process stored no compiled program"
    _run({ENV_VAR: str(cache)})
    assert _entries(cache) == written  # every program came from the cache


def test_the_cache_is_on_by_default_and_a_users_choice_is_kept(tmp_path):
    xdg = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    default = str(tmp_path / "xdg" / "numpyro_gmm" / "jax")
    for setting in ({}, {ENV_VAR: "1"}):
        on = _run({**xdg, **setting})
        assert on["dir"] == default and on["enabled"]
    assert _entries(tmp_path / "xdg" / "numpyro_gmm" / "jax")
    off = _run({"XDG_CACHE_HOME": str(tmp_path / "xdg_off"), ENV_VAR: "0"})
    assert off["dir"] is None
    assert not (tmp_path / "xdg_off").exists()
    mine = tmp_path / "mine"
    kept = _run({**xdg, "JAX_COMPILATION_CACHE_DIR": str(mine)})
    assert kept["dir"] == str(mine)


def test_an_unwritable_default_directory_means_no_cache_not_a_failed_import(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = _run({"XDG_CACHE_HOME": str(blocker)})
    assert result["dir"] is None


def test_a_directory_that_cannot_be_created_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match=ENV_VAR):
        configure_compilation_cache(blocker / "cache")
