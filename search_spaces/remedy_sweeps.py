"""One experiment per remedy, on the LSTM family and on the CNN (for the CNN-vs-RNN comparison)."""
from dataclasses import replace

from search_spaces.registry import LOCAL, PAPER, SMOKE, Budget, Choice, Experiment, Range, register
from tuner.remedies import search_range

# Over-sampled minority copies carry the augmentation, as in the studies ("raising the minority
# count to 100% of the original with noisy / rotated copies").
COPIES = {"ros_target": 1.0, "augment_scope": "copies"}

# each remedy's range as its declaration gives it (tuner.remedies)
WEIGHT, ROS, NOISE, ROTATION, IRM = (search_range(k) for k in ("minority_weight", "ros_target", "noise_sigma",
                                                                "rotation_deg", "irm_lambda"))

# `local` on the LSTM family: an LSTM epoch costs a fraction of a CNN epoch (figures:
# docs/performance.md, "Figures behind the budgets"), so the LSTM sweeps afford 8 trials x up to 8
# epochs (at least 400 steps). The baseline has nothing to search: 3 seeds of each arm instead. The
# CNN keeps the shared LOCAL (8 trials x up to 4 epochs).
# The default budget of a first run, often on the shipped sample: 8 epochs of full MNIST (~920
# steps of batch 256), and at least 400 steps wherever an epoch is short: 40 epochs of the
# sample, where the LSTM has converged by about 300 (README, "What to expect").
LSTM_LOCAL = Budget(num_samples=8, max_epochs=8, grace_period=2, reduction_factor=2, min_steps=400, grace_steps=100)
LSTM_BASELINE_LOCAL = Budget(num_samples=1, max_epochs=8, seeds=(0, 1, 2))


def remedy_experiments(prefix: str, model: str, *, weighted_model: str | None = None, ros_model: str | None = None,
                       local: Budget = LOCAL, baseline_local: Budget = LOCAL):
    """The remedy sweeps on one model family (`lstm_*` or `cnn_*`)."""
    sweeps = [
        Experiment(
            f"{prefix}_baseline",
            f"{model}: balanced vs imbalanced (0-4 kept at 10%), no remedy, several seeds",
            fixed={"model": model},
            space={"minority_keep": Choice((1.0, 0.1))},
            searcher="grid",
        ),
        Experiment(
            f"{prefix}_weighted",
            f"{weighted_model or model}: minority class loss weight 2-10",
            fixed={"model": weighted_model or model, "weight_decay": 1e-4},
            space={"minority_weight": WEIGHT},
            remedies=("weighted_loss",),
        ),
        Experiment(
            f"{prefix}_ros",
            f"{ros_model or model}: random over-sampling to ros_target 0.2-1.0 with +-25 deg rotated copies",
            fixed={"model": ros_model or model, "rotation_deg": 25.0, "augment_scope": "copies"},
            space={"ros_target": ROS},
            remedies=("ros", "rotation"),
        ),
        Experiment(
            f"{prefix}_noise",
            f"{model}: Gaussian noise on over-sampled minority copies (minority restored to balance)",
            fixed={"model": model, **COPIES},
            space={"noise_sigma": NOISE},
            remedies=("ros", "noise"),
        ),
        Experiment(
            f"{prefix}_rotation",
            f"{model}: random rotation 0-30 deg of over-sampled minority copies",
            fixed={"model": model, **COPIES},
            space={"rotation_deg": ROTATION},
            remedies=("ros", "rotation"),
        ),
        Experiment(
            f"{prefix}_irm",
            f"{model}: IRM penalty, minority vs majority environments, lambda on a log scale",
            fixed={"model": model, "irm_env": "groups", "irm_anneal_epochs": 1},
            space={"irm_lambda": IRM},
            remedies=("irm",),
        ),
        Experiment(
            f"{prefix}_combined",
            f"{model}: weight, over-sampling, noise, rotation and IRM searched together (Optuna TPE)",
            fixed={"model": model, "augment_scope": "copies", "irm_env": "groups", "irm_anneal_epochs": 1},
            space={
                "minority_weight": WEIGHT.narrow(1, 10, grid=(1, 3, 10)),
                "ros_target": ROS.narrow(0.0, 1.0, grid=(0.0, 0.5, 1.0)),
                "noise_sigma": NOISE.narrow(0.0, 0.5, grid=(0.0, 0.3)),
                "rotation_deg": ROTATION.narrow(grid=(0, 15)),
                "irm_lambda": IRM.narrow(1e-2, 1e3, grid=(0.1, 10)),
                "lr": Range(3e-4, 3e-3, scale="log", grid=(1e-3,)),
            },
            remedies=("weighted_loss", "ros", "noise", "rotation", "irm"),
        ),
    ]
    budgets = {"smoke": SMOKE, "local": local, "paper": PAPER}
    return [replace(e, budgets={**budgets, "local": baseline_local} if e.name.endswith("_baseline") else budgets)
            for e in sweeps]


for exp in remedy_experiments("lstm", "lstm", weighted_model="lstm_mlp", ros_model="lstm2",
                              local=LSTM_LOCAL, baseline_local=LSTM_BASELINE_LOCAL):
    register(exp)
for exp in remedy_experiments("cnn", "cnn"):
    register(exp)
