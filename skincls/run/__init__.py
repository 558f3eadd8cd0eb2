"""A run on disk: the run directory (``RunDir``: every file a run writes, its lock and checks),
checkpoints, and :func:`skincls.run.load.load_run`, which every serving command uses."""
