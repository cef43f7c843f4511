"""segact's SLURM launcher (``slurm_launcher.py``). Hydra takes launchers only from the
``hydra_plugins`` namespace, where they must be defined, so it lives here, outside ``segact``."""
