"""`--experiment-file FILE`: experiments defined outside the package, in Python or YAML.

Python (`.py`): the file builds `Experiment`s as `search_spaces` does and names them in
`EXPERIMENT = Experiment(...)` or `EXPERIMENTS = [...]` (or registers them with `register`):

    from search_spaces import Budget, Choice, Experiment, Range, SMOKE
    EXPERIMENT = Experiment("my_weighted", "lstm, weighted loss", fixed={"loss_fn": "weighted_ce"},
                            space={"minority_weight": Range(1, 20, scale="log")})

YAML (`.yaml`/`.yml`): the same fields as plain data (docs/experiments.md):

    name: my_weighted
    description: lstm, weighted loss
    fixed: {loss_fn: weighted_ce}
    space:
      minority_weight: {low: 1, high: 20, scale: log, grid: [1, 5, 20]}
      loss_fn: {choice: [weighted_ce, focal]}
    metric: val_minority_acc
    budgets: {smoke: smoke, local: {num_samples: 8, max_epochs: 4, min_steps: 400}}

A budget given by name (smoke, local, paper) is the shared one. Every value is checked later by
`build_plan`, as for the package's experiments; here only the file's shape is checked.
"""
from __future__ import annotations

import dataclasses
import runpy
from pathlib import Path

from tuner.errors import ConfigError

SUFFIXES = (".py", ".yaml", ".yml")


def load(path) -> dict:
    """{name: Experiment} defined by the file. Raises ConfigError (one line) for a bad file."""
    from search_spaces import EXPERIMENTS

    p = Path(path).expanduser()
    if p.suffix not in SUFFIXES:
        raise ConfigError(f"--experiment-file {str(path)!r}: expected a .py, .yaml or .yml file")
    if not p.is_file():
        raise ConfigError(f"--experiment-file {str(path)!r} does not exist")
    exps = _load_python(p) if p.suffix == ".py" else [_from_yaml(p)]
    if not exps:
        raise ConfigError(f"--experiment-file {str(path)!r} defines no experiment: set EXPERIMENT = Experiment(...)")
    out = {}
    for exp in exps:
        builtin = EXPERIMENTS.get(exp.name)
        if builtin is not None and builtin is not exp:
            raise ConfigError(f"--experiment-file {str(path)!r}: experiment {exp.name!r} is a built-in one; choose another name")
        out[exp.name] = exp
    return out


def _load_python(p: Path) -> list:
    from search_spaces import EXPERIMENTS, Experiment

    before = dict(EXPERIMENTS)
    try:
        ns = runpy.run_path(str(p), run_name="imbalance_tune_experiment_file")
    except Exception as e:  # noqa: BLE001 - the user's file: say where it failed, in one line
        raise ConfigError(f"--experiment-file {str(p)!r} failed: {type(e).__name__}: {e}") from None
    found = [ns.get("EXPERIMENT")] + list(ns.get("EXPERIMENTS") or [])
    found = [e for e in found if e is not None]
    # experiments the file registered itself (as a package module would); kept out of the registry
    registered = [e for name, e in EXPERIMENTS.items() if name not in before]
    for name in [n for n in EXPERIMENTS if n not in before]:
        del EXPERIMENTS[name]
    exps = list({id(e): e for e in [*found, *registered]}.values())
    bad = [e for e in exps if not isinstance(e, Experiment)]
    if bad:
        raise ConfigError(f"--experiment-file {str(p)!r}: EXPERIMENT(S) must be search_spaces.Experiment, not {type(bad[0]).__name__}")
    return exps


FIELDS = ("name", "description", "fixed", "space", "searcher", "metric", "mode", "budgets", "requires")
BUDGET_FIELDS = tuple(f.name for f in dataclasses.fields(__import__("search_spaces.registry").registry.Budget))


def _from_yaml(p: Path):
    import yaml

    from search_spaces import Experiment

    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"--experiment-file {str(p)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise ConfigError(f"--experiment-file {str(p)!r}: expected a mapping with at least 'name:'")
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        raise ConfigError(f"--experiment-file {str(p)!r}: unknown field {unknown[0]!r}; allowed: {', '.join(FIELDS)}")
    fields = {k: v for k, v in doc.items() if k not in ("space", "budgets")}
    fields.setdefault("description", f"{doc['name']} (from {p.name})")
    fields["fixed"] = dict(doc.get("fixed") or {})
    fields["requires"] = tuple(doc.get("requires") or ())
    fields["space"] = {k: _space_entry(p, k, v) for k, v in (doc.get("space") or {}).items()}
    if "budgets" in doc:
        fields["budgets"] = {k: _budget(p, k, v) for k, v in doc["budgets"].items()}
    return Experiment(**fields)


def _space_entry(p: Path, key: str, spec):
    from search_spaces import Choice, Range

    if isinstance(spec, list):
        return Choice(tuple(spec))
    if isinstance(spec, dict) and set(spec) == {"choice"}:
        return Choice(tuple(spec["choice"]))
    if isinstance(spec, dict) and {"low", "high"} <= set(spec) <= {"low", "high", "scale", "grid"}:
        if spec.get("scale", "linear") not in ("linear", "log", "int"):
            raise ConfigError(f"--experiment-file {str(p)!r}: space {key}: scale {spec['scale']!r}; allowed: linear, log, int")
        return Range(spec["low"], spec["high"], spec.get("scale", "linear"), tuple(spec.get("grid") or ()))
    raise ConfigError(f"--experiment-file {str(p)!r}: space {key}: expected {{low, high[, scale, grid]}}, "
                      f"{{choice: [...]}} or a list, not {spec!r}")


def _budget(p: Path, name: str, spec):
    from search_spaces.registry import LOCAL, PAPER, SMOKE, Budget

    shared = {"smoke": SMOKE, "local": LOCAL, "paper": PAPER}
    if isinstance(spec, str):
        if spec not in shared:
            raise ConfigError(f"--experiment-file {str(p)!r}: budget {name}: {spec!r}; named budgets are smoke, local, paper")
        return shared[spec]
    if not isinstance(spec, dict) or set(spec) - set(BUDGET_FIELDS):
        bad = sorted(set(spec) - set(BUDGET_FIELDS))[0] if isinstance(spec, dict) else spec
        raise ConfigError(f"--experiment-file {str(p)!r}: budget {name}: unknown field {bad!r}; allowed: {', '.join(BUDGET_FIELDS)}")
    spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    spec.setdefault("num_samples", 1)
    if "max_epochs" not in spec and "min_steps" not in spec:
        raise ConfigError(f"--experiment-file {str(p)!r}: budget {name}: give max_epochs or min_steps")
    spec.setdefault("max_epochs", 1)  # sized in steps only: the epochs follow from the data
    try:
        return Budget(**spec)
    except TypeError as e:
        raise ConfigError(f"--experiment-file {str(p)!r}: budget {name}: {e}") from None
