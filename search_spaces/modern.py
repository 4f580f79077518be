"""The modern remedies (docs/remedies.md): the minority-vs-majority Pareto search, the screen of
remedy families for balanced accuracy, and the tuned best LSTM config."""
from dataclasses import dataclass

from search_spaces.registry import NOISE_VARIANCES, PAPER, SMOKE, Budget, Choice, Experiment, Range, register
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

# The screen that picked lstm_best's family (docs/remedies.md): one seed of each remedy family,
# 15 epochs on a cosine schedule, beside the balanced-data reference; ranked on val_balanced_acc.
ROTATE_ALL = {"rotation_deg": 10.0, "augment_scope": "all"}
register(Experiment(
    "lstm_balanced_screen",
    "lstm, 0-4 kept at 10%: one seed of each remedy family for balanced accuracy (the screen behind lstm_best)",
    fixed={"model": "lstm", "batch_size": 128, "lr": 2e-3, "lr_schedule": "cosine"},
    searcher="grid",
    arms=(
        {"group": "balanced_reference", "minority_keep": 1.0},
        {"group": "ldam_drw", "loss_fn": "ldam", "drw_epoch": 10},
        {"group": "ldam_drw_rot_all", "loss_fn": "ldam", "drw_epoch": 10, **ROTATE_ALL},
        {"group": "la_rot_all", "loss_fn": "logit_adjusted", "la_tau": 1.0, **ROTATE_ALL},
        {"group": "cas_q0.5_rot_all", "sampling_q": 0.5, **ROTATE_ALL},
        {"group": "noise_irm", "noise_copies": NOISE_VARIANCES, "irm_lambda": 1.0},
        {"group": "la_remix", "loss_fn": "logit_adjusted", "la_tau": 1.0, "remix_alpha": 1.0, "remix_tau": 0.5},
        {"group": "ce_rot_all_posthoc", "posthoc_tau": 1.0, **ROTATE_ALL},
        {"group": "la_wd", "loss_fn": "logit_adjusted", "la_tau": 1.0, "optimizer": "adamw", "weight_decay": 0.05},
        {"group": "ce"},
    ),
    metric="val_balanced_acc",
    budgets={
        "smoke": Budget(num_samples=1, max_epochs=1, searcher="grid", grace_period=10**6,
                        fixed={"dataset": "mnist-sample"}),
        "local": Budget(num_samples=1, max_epochs=15, searcher="grid", grace_period=10**6),
    },
    remedies=("ldam", "drw", "rotation", "logit_adjusted", "class_aware_sampling", "noise_copies", "irm", "remix",
              "posthoc_logit_adjustment"),
))

# The best config found on validation (docs/remedies.md, "lstm_best"): the experiment's defaults.
# `search` runs the Optuna + ASHA search around it (one seed, no reference); `local` re-runs it over
# 5 seeds beside the balanced-data reference (the grid of each searched setting is its tuned value).
BEST = {
    "model": "lstm", "batch_size": 128, "lr": 2.58e-3, "lr_schedule": "cosine",
    "loss_fn": "ldam", "ldam_max_margin": 0.238, "drw_epoch": 12,
    "rotation_deg": 16.9, "augment_scope": "all", "ema_decay": 0.0,
}
EPOCHS = 15
# The same LSTM, schedule and epochs on all of MNIST (no image removed), no remedy: what the remedies
# try to get back to. Every searched setting is set to its "off" value here.
REFERENCE = {"group": "balanced_reference", "minority_keep": 1.0, "loss_fn": "ce", "drw_epoch": 0,
             "rotation_deg": 0.0, "ema_decay": 0.0}
register(Experiment(
    "lstm_best",
    "lstm (hidden 128), 0-4 kept at 10%: the best balanced remedies found (LDAM + DRW, rotation of all images), "
    "beside the balanced-data reference",
    fixed=BEST,
    space={
        "loss_fn": Tuned(("ldam", "ce", "focal"), best=BEST["loss_fn"]),  # the losses DRW re-weights
        "ldam_max_margin": search_range("ldam_max_margin").narrow(0.2, 1.0, grid=(BEST["ldam_max_margin"],)),
        "drw_epoch": search_range("drw_epoch").narrow(5, 13, grid=(BEST["drw_epoch"],)),
        "rotation_deg": search_range("rotation_deg").narrow(0.0, 20.0, grid=(BEST["rotation_deg"],)),
        "augment_scope": Tuned(("all", "minority"), best=BEST["augment_scope"]),
        "ema_decay": Tuned((0.0, 0.999), best=BEST["ema_decay"]),
        "lr": Range(1e-3, 4e-3, scale="log", grid=(BEST["lr"],)),
    },
    arms=({"group": "best"}, REFERENCE),
    metric="val_balanced_acc",  # minority and majority accuracy together; the summary shows both beside it
    budgets={
        "smoke": Budget(num_samples=1, max_epochs=2, seeds=(0, 1), searcher="grid", grace_period=10**6,
                        fixed={"dataset": "mnist-sample"}),
        # ASHA's first cut after 8 epochs: after most trials' DRW switch (drw_epoch 5-13)
        "search": Budget(num_samples=16, max_epochs=EPOCHS, grace_period=8, reduction_factor=2, groups=()),
        # re-runs: no early stopping (ASHA also runs on grids; a grace period of every epoch never cuts)
        "local": Budget(num_samples=1, max_epochs=EPOCHS, seeds=(0, 1, 2, 3, 4), searcher="grid", grace_period=10**6),
        "paper": Budget(num_samples=1, max_epochs=30, seeds=PAPER.seeds, searcher="grid", grace_period=10**6),
    },
    remedies=("ldam", "drw", "rotation", "weight_ema"),
))
