"""imbalance-tune: Ray Tune searches of class-imbalance remedies. The notebook API:

    from tuner import run_search, load_results
"""


def run_search(experiment, **options):
    """See `tuner.api.run_search` (imported on first use: `import tuner` stays light for Ray workers)."""
    from tuner.api import run_search as run

    return run(experiment, **options)


def load_results(run_dir, metric=None, mode=None):
    """See `tuner.api.load_results`."""
    from tuner.api import load_results as load

    return load(run_dir, metric, mode)
