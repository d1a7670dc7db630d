"""``python -m numpyro_gmm.cli``: the ``numpyro-gmm`` command."""

from numpyro_gmm.cli import main

raise SystemExit(main())
