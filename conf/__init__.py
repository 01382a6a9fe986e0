"""muscale's Hydra configs, installed as the package ``muscale.conf`` (see setup.py and
muscale/resources.py); ``pkg://muscale.conf`` in Hydra's search path."""
