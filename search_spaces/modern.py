"""The modern remedies (docs/remedies.md): the minority-vs-majority Pareto search and the tuned
best LSTM config."""
from dataclasses import dataclass

from search_spaces.registry import PAPER, SMOKE, Budget, Choice, Experiment, Range, register
from tuner.remedies import search_range


@dataclass(frozen=True)
class Tuned(Choice):
    """A searched choice whose grid is the tuned value only: Optuna searches every value, a grid
    (several seeds) re-runs the tuned one."""

    best: object = None

    def grid_values(self) -> list:
        return [self.best]


register(Experiment(
    "lstm_pareto",
    "lstm: minority vs majority validation accuracy, Pareto front over logit adjustment and class-aware sampling",
    fixed={"model": "lstm", "loss_fn": "logit_adjusted"},
    # both knobs move accuracy from the majority to the minority classes: tau up, q down
    space={
        "la_tau": search_range("la_tau"),
        "sampling_q": search_range("sampling_q"),
        "lr": Range(5e-4, 3e-3, scale="log", grid=(1e-3,)),
    },
    metric="val_minority_acc,val_majority_acc",
    budgets={
        "smoke": SMOKE,
        "local": Budget(num_samples=8, max_epochs=3),
        "paper": Budget(num_samples=64, max_epochs=30),
    },
    remedies=("logit_adjusted", "class_aware_sampling"),
))

# The best config found on validation (docs/remedies.md, "lstm_best"): the experiment's defaults.
# `search` runs the Optuna search around it; `local` re-runs it over 5 seeds (the grid of each
# searched setting is its tuned value only).
BEST = {
    "model": "lstm", "batch_size": 128, "lr": 2e-3,
    "loss_fn": "logit_adjusted", "la_tau": 1.0, "remix_alpha": 1.0, "remix_tau": 0.5, "rotation_deg": 0.0,
}
register(Experiment(
    "lstm_best",
    "lstm (hidden 128), 0-4 kept at 10%: the best remedies found for minority accuracy (logit adjustment + Remix)",
    fixed=BEST,
    space={
        "loss_fn": Tuned(("logit_adjusted", "ce", "focal", "ldam"), best=BEST["loss_fn"]),
        "la_tau": search_range("la_tau").narrow(0.5, 2.0, grid=(BEST["la_tau"],)),
        "remix_alpha": search_range("remix_alpha").narrow(0.2, 2.0, grid=(BEST["remix_alpha"],)),
        "remix_tau": search_range("remix_tau").narrow(grid=(BEST["remix_tau"],)),
        "rotation_deg": search_range("rotation_deg").narrow(0.0, 20.0, grid=(BEST["rotation_deg"],)),
        "lr": Range(1e-3, 4e-3, scale="log", grid=(BEST["lr"],)),
    },
    metric="val_minority_acc",  # the target; the summary shows majority and balanced accuracy beside it
    budgets={
        "smoke": SMOKE,
        "search": Budget(num_samples=16, max_epochs=10, grace_period=3, reduction_factor=2),
        # re-runs: no early stopping (ASHA also runs on grids; a grace period of every epoch never cuts)
        "local": Budget(num_samples=1, max_epochs=10, seeds=(0, 1, 2, 3, 4), searcher="grid", grace_period=10**6),
        "paper": Budget(num_samples=1, max_epochs=30, seeds=PAPER.seeds, searcher="grid", grace_period=10**6),
    },
    remedies=("logit_adjusted", "remix"),
))
