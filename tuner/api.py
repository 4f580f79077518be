"""The Python API, for notebooks:

    from tuner import run_search, load_results
    grid = run_search("lstm_weighted", budget="smoke", num_samples=4)   # Ray's ResultGrid
    trials, epochs = load_results(grid.experiment_path)                 # two pandas DataFrames

`run_search` takes the command line's options as keywords (`--max-epochs 3` is `max_epochs=3`,
`--set lr=0.01` is `set={"lr": 0.01}` or `set=["lr=0.01"]`, `--seeds 0,1` is `seeds=[0, 1]`),
checks them exactly as the command does and raises `ConfigError` (a ValueError) with the same
one-line message instead of exiting.
"""
from __future__ import annotations

from tuner.errors import ConfigError


def run_search(experiment, **options):
    """Run one search; returns Ray Tune's `ResultGrid`. `experiment`: a name (see `--list`), a
    `search_spaces.Experiment`, or a path to an experiment file (.py/.yaml)."""
    from tuner import experiment_file, search

    args = search.parse_args([])
    known = vars(args)
    for key, value in options.items():
        if key not in known or key in ("list", "experiment"):
            raise TypeError(f"run_search() got an unknown option {key!r}; options: {', '.join(sorted(known))}")
        setattr(args, key, _value(key, value))
    if hasattr(experiment, "budgets"):  # an Experiment object
        return _run_object(experiment, args, _argv(experiment.name, options))
    if str(experiment).endswith(experiment_file.SUFFIXES):
        args.experiment_file = str(experiment)
        argv = _argv(None, {"experiment_file": str(experiment), **options})
    else:
        args.experiment = experiment
        argv = _argv(experiment, options)
    plan, images = search.prepare(args, argv)
    return search.execute(plan, images, argv)[1]


def _run_object(exp, args, argv):
    from search_spaces import EXPERIMENTS
    from tuner import search

    if exp.name in EXPERIMENTS and EXPERIMENTS[exp.name] is not exp:
        raise ConfigError(f"experiment {exp.name!r} is a built-in one; give yours another name")
    added = exp.name not in EXPERIMENTS
    EXPERIMENTS[exp.name] = exp
    try:
        args.experiment = exp.name
        plan, images = search.prepare(args, argv)
        return search.execute(plan, images, argv)[1]
    finally:
        if added:
            del EXPERIMENTS[exp.name]


def _value(key: str, value):
    if key == "set" and isinstance(value, dict):
        import json

        return [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in value.items()]
    if key == "seeds" and not isinstance(value, str):
        return ",".join(str(int(s)) for s in value)
    if key == "callback" and isinstance(value, str):
        return [value]
    return value


def _argv(experiment, options) -> list[str]:
    """The equivalent command line: what the 'Resume with' hint and the recorded options show."""
    out = [] if experiment is None else [str(experiment)]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        value = _value(key, value)
        if value is True:
            out.append(flag)
        elif isinstance(value, list):
            out += [a for v in value for a in (flag, str(v))]
        elif value not in (None, False):
            out += [flag, str(value)]
    return out


def load_results(run_dir, metric: str | None = None, mode: str | None = None):
    """(trials, epochs): the two tables of a run folder (local or s3://...), as `imbalance-tune export`
    writes them (docs/results_schema.md)."""
    from analysis import export

    return export.build(run_dir, metric, mode)
