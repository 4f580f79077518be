"""The imbalance studies, one command each: `python -m tuner.search STUDY [--budget smoke|local|paper]`.

A study is an `Experiment` with `arms`: labelled groups of fixed settings (a grid over `group`,
crossed with the seeds and the space). A sweep inside a study (the minority weight 2..10, ROS to
0.2..1.0) is one arm per value (`weight_2`, ..., `weight_10`), so every trial keeps its group label
and every setting stays a flat config key. `python -m analysis.report RUN_DIR` lays each study's
results out as the original did (`analysis.studies`); docs/studies.md has the commands, budgets,
timings and results.

Budgets: `smoke` (seconds to minutes on a CPU, the shipped mnist-sample or a tiny VGG), `local`
(the default: full data, 1-10 epochs, at most ~10 minutes on a 2-core CPU; batch 128 so that a few
epochs learn something) and `paper` (the original epochs, batch size and learning rate, 5 seeds:
for GPUs). Every trial selects its epoch on validation (`val_balanced_acc`) and reports test.
"""
from search_spaces.registry import NOISE_VARIANCES, Budget, Claim, Experiment, register  # noqa: F401

SEEDS5 = (0, 1, 2, 3, 4)
# IRM as the original study ran it: the IRMv1 penalty estimated within each training batch over
# pairs of distinct samples (irm_env="batch", the default), weight 1. The environments "minority
# classes vs majority classes" (irm_env="groups") are an extra, named arm: they make the penalty a
# per-group calibration term, not the original's method. The original gave no lambda: the paper
# budget sweeps it on a log scale, with the penalty annealed in (weight 1 for the first
# IRM_ANNEAL_EPOCHS epochs, then lambda, Adam's moments reset at the switch), as IRMv1 does.
IRM = {"irm_lambda": 1.0}
IRM_GROUPS = {"irm_lambda": 1.0, "irm_env": "groups"}
IRM_LAMBDAS = (0.1, 1, 10, 100)
IRM_ANNEAL_EPOCHS = 10
BALANCED = {"minority_keep": 1.0}


def budgets(smoke: Budget, local: Budget, paper: Budget) -> dict[str, Budget]:
    return {"smoke": smoke, "local": local, "paper": paper}


def without_lambda_sweep(arms: tuple[dict, ...]) -> tuple[str, ...]:
    """The groups of a CPU budget: every arm but the paper budget's IRM lambda sweep."""
    return tuple(a["group"] for a in arms if not a["group"].startswith("irm_lambda_"))


def sweep(label: str, key: str, values, **settings) -> tuple[dict, ...]:
    """One arm per value of `key`: groups `label_<value>` (`weight_2`, `ros_0.4_rot`, ...)."""
    suffix = settings.pop("suffix", "")
    return tuple({"group": f"{label}_{v:g}{suffix}", key: v, **settings} for v in values)


def noise_irm_arms(model: str, balanced_models: tuple[str, ...]) -> tuple[dict, ...]:
    """Balanced baselines of each model; `model` unbalanced, noise-augmented, with IRM, and both;
    IRM with group environments; the lambda sweep (`irm_lambda_<value>`, paper budget only).
    Longest first (trials start in this order: the short ones fill the gaps at the end)."""
    return (
        {"group": "combined", "model": model, "noise_copies": NOISE_VARIANCES, **IRM},
        {"group": "irm", "model": model, **IRM},
        {"group": "irm_groups", "model": model, **IRM_GROUPS},
        *sweep("irm_lambda", "irm_lambda", IRM_LAMBDAS, model=model, irm_anneal_epochs=IRM_ANNEAL_EPOCHS),
        {"group": "augmented", "model": model, "noise_copies": NOISE_VARIANCES},
        *({"group": f"{m}_balanced", "model": m, **BALANCED} for m in reversed(balanced_models)),
        {"group": "unbalanced", "model": model},
    )


def noise_irm_claims(model: str, other: str, metric: str = "acc") -> tuple[Claim, ...]:
    """The claims of rnn_noise_irm and cifar_vgg: the study's model beats the other on balanced data;
    noise augmentation, IRM and both improve the minority classes."""
    better = {"lstm": "the LSTM beats the Elman network on balanced MNIST",
              "vgg": "the pretrained VGG16 beats the small CNN on balanced CIFAR-10"}[model]
    return (
        Claim(better, (f"{model}_balanced", f"{other}_balanced"), metric),
        Claim("noise augmentation helps the minority classes", ("augmented", "unbalanced")),
        Claim("IRM improves the minority classes", ("irm", "unbalanced")),
        Claim("IRM with noise augmentation improves the minority classes", ("combined", "unbalanced")),
        Claim("noise augmentation helps (balanced accuracy)", ("augmented", "unbalanced"), "balanced_acc"),
    )


# --- rnn_noise_irm: Elman vs LSTM; noise augmentation, IRM and both on imbalanced MNIST --------------

RNN_ARMS = noise_irm_arms("lstm", ("elman", "lstm"))
NOISE_IRM_CLAIMS = noise_irm_claims("lstm", "elman")
register(Experiment(
    "rnn_noise_irm",
    "study: elman vs lstm balanced; lstm imbalanced (0-4 at 10%) with noise copies, IRM, both",
    fixed={"model": "lstm", "optimizer": "adam", "lr": 1e-3, "batch_size": 1024},
    arms=RNN_ARMS,
    searcher="grid",
    budgets=budgets(
        smoke=Budget(1, 1, searcher="grid", fixed={"dataset": "mnist-sample", "batch_size": 128},
                     groups=without_lambda_sweep(RNN_ARMS)),
        local=Budget(1, 8, searcher="grid", fixed={"batch_size": 128}, groups=without_lambda_sweep(RNN_ARMS)),
        paper=Budget(1, 100, seeds=SEEDS5, searcher="grid"),
    ),
    remedies=("noise_copies", "irm"),
    claims=NOISE_IRM_CLAIMS,
))


# --- lstm_weighted_loss: augmentation to 40% / 100%, the minority weight 2..10, per-class weights ----

WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 10)
WEIGHT_ARMS = tuple(f"weight_{w}" for w in WEIGHTS)
WEIGHTED_CLAIMS = (
    Claim("loss weights fail on the LSTM: no minority weight 2-10 raises the minority accuracy", WEIGHT_ARMS,
          kind="no_gain", baseline="unbalanced"),
    Claim("the best minority weight is about 7", WEIGHT_ARMS, kind="best_near", param="minority_weight", near=7.0),
    Claim("augmentation to 100% helps the minority classes: rotated copies", ("rotation_100", "unbalanced")),
    Claim("augmentation to 100% helps the minority classes: noisy copies", ("noise_100", "unbalanced")),
    Claim("augmentation to 100% helps the minority classes: noisy and rotated copies",
          ("noise_rotation_100", "unbalanced")),
    Claim("per-class weights (step two) beat the uniform weight 7", ("class_weights", "weight_7")),
)
NOISE_SIGMA = 0.3  # the original's noise level is not given; 0.3 ~ the smallest variance (0.1) of rnn_noise_irm
LSTM_MLP = {"model": "lstm_mlp", "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4, "batch_size": 256}


def augmentation_arms() -> tuple[dict, ...]:
    arms = []
    for name, settings in (("noise", {"noise_sigma": NOISE_SIGMA}), ("rotation", {"rotation_deg": 15.0})):
        for target in (0.4, 1.0):  # minority raised to 40% / 100% of a class's original count
            arms.append({"group": f"{name}_{round(target * 100)}", "ros_target": target, "augment_scope": "copies",
                         **settings})
    # the original's fifth augmentation arm: copies with noise and rotation, up to 100%
    arms.append({"group": "noise_rotation_100", "ros_target": 1.0, "augment_scope": "copies",
                 "noise_sigma": NOISE_SIGMA, "rotation_deg": 15.0})
    return tuple(arms)


# The original's MLP head ended with a ReLU (on the logits): `final_relu=true` in the paper budget,
# as the original ran it. The CPU budgets keep it off (a ReLU on logits clamps every negative logit
# to 0 and slows cross-entropy down, tuner/models.py); `--set final_relu=true` turns it on there.
WEIGHTED_BUDGETS = budgets(
    smoke=Budget(1, 1, searcher="grid", fixed={"dataset": "mnist-sample", "batch_size": 128}),
    local=Budget(1, 10, searcher="grid", fixed={"batch_size": 128}),  # its time: docs/studies.md, "Timings"
    paper=Budget(1, 50, seeds=SEEDS5, searcher="grid", fixed={"final_relu": True}),
)

register(Experiment(
    "lstm_weighted_loss",
    "study: lstm_mlp balanced vs imbalanced; noise/rotation copies to 40%/100%; minority weight 2-10",
    fixed=LSTM_MLP,
    arms=({"group": "balanced", **BALANCED}, {"group": "unbalanced"}, *augmentation_arms(),
          *sweep("weight", "minority_weight", WEIGHTS)),
    searcher="grid",
    budgets=WEIGHTED_BUDGETS,
    remedies=("weighted_loss", "ros", "noise", "rotation"),
    claims=WEIGHTED_CLAIMS,
))

# Step two of lstm_weighted_loss: each class weighted by its own best weight of the sweep (chosen on
# validation). `python -m analysis.report` of a lstm_weighted_loss run prints this command with the
# vector filled in; report both runs together to see the result beside the sweep.
register(Experiment(
    "lstm_class_weights",
    "study step 2: lstm_mlp with per-class weights from a lstm_weighted_loss run (its report prints the command)",
    fixed=LSTM_MLP,
    arms=({"group": "class_weights"},),
    searcher="grid",
    budgets=WEIGHTED_BUDGETS,
    remedies=("weighted_loss",),
    requires=("class_weights",),
))


# --- ros_vs_weights: over-sampling vs loss weights, with and without rotation, CNN and LSTM ------------

ROS_TARGETS = (0.2, 0.4, 0.6, 0.8, 1.0)  # = 1/rho: minority count / majority count after over-sampling
# weight 10 x ROS target gives a minority class the same share of the loss as over-sampling it to that target
ROS_WEIGHTS = (2, 4, 6, 8, 10)
ROTATE = {"rotation_deg": 25.0}


# lr 0.01 as in the original, which names no optimizer. On mnist-sample (balanced, 3 epochs, batch 128)
# Adam at 0.01 left the CNN at chance (10%) and SGD at 0.01 left lstm2 at 18% (Adam: 91%, the CNN with
# SGD: 92%): each model gets the optimizer that trains it at that rate.
MODELS = {"cnn": {"optimizer": "sgd", "momentum": 0.9}, "lstm2": {"optimizer": "adam"}}


def ros_weight_arms(targets=ROS_TARGETS, weights=ROS_WEIGHTS, rotate_all: bool = True) -> tuple[dict, ...]:
    """Every arm for each model, labelled `MODEL:ARM` (`cnn:ros_0.2_rot`, `lstm2:weight_4`). The `_rot`
    arms rotate the copies (ROS) or the minority images (weights); the `_rot_all` arms rotate every
    training image, as the original did (`augment_scope=all`)."""
    arms = (
        {"group": "balanced", **BALANCED},
        {"group": "unbalanced"},
        *sweep("ros", "ros_target", targets),
        *sweep("ros", "ros_target", targets, suffix="_rot", augment_scope="copies", **ROTATE),
        *sweep("weight", "minority_weight", weights),
        # no copies to rotate: the minority images themselves are rotated
        *sweep("weight", "minority_weight", weights, suffix="_rot", augment_scope="minority", **ROTATE),
        *(() if not rotate_all else (
            *sweep("ros", "ros_target", targets, suffix="_rot_all", augment_scope="all", **ROTATE),
            *sweep("weight", "minority_weight", weights, suffix="_rot_all", augment_scope="all", **ROTATE))),
    )
    return tuple({**arm, "group": f"{model}:{arm['group']}", "model": model, **settings}
                 for model, settings in MODELS.items() for arm in arms)


def ros_claims(model: str) -> tuple[Claim, ...]:
    m = f"{model}:"
    return (
        Claim(f"{model}: ROS to balance beats the loss weight of the same share (weight 10)",
              (m + "ros_1", m + "weight_10"), "balanced_acc"),
        Claim(f"{model}: ROS to balance helps the minority classes", (m + "ros_1", m + "unbalanced")),
        Claim(f"{model}: rotation helps ROS (the original rotated every image)", (m + "ros_1_rot_all", m + "ros_1")),
        Claim(f"{model}: rotation helps ROS (rotated copies only)", (m + "ros_1_rot", m + "ros_1")),
        Claim(f"{model}: rotation helps loss weights (the original rotated every image)",
              (m + "weight_10_rot_all", m + "weight_10")),
        Claim(f"{model}: the wrong predictions of the unbalanced model order as p_I->I > p_I->A > p_A->I > p_A->A",
              ("p_I_to_I", "p_I_to_A", "p_A_to_I", "p_A_to_A"), within=m + "unbalanced"),
    )


ROS_CLAIMS = ros_claims("cnn") + ros_claims("lstm2")


def _groups(targets, weights, rotate_all: bool = True) -> tuple[str, ...]:
    return tuple(a["group"] for a in ros_weight_arms(targets, weights, rotate_all))


register(Experiment(
    "ros_vs_weights",
    "study: cnn and lstm2, ROS to 0.2-1.0 vs minority weight 2-10, each with and without +-25 deg rotation",
    fixed={"lr": 0.01, "batch_size": 256},
    arms=ros_weight_arms(),
    searcher="grid",
    budgets=budgets(
        smoke=Budget(1, 1, searcher="grid", fixed={"dataset": "mnist-sample", "batch_size": 128},
                     groups=_groups((0.2, 1.0), (2, 10), rotate_all=False)),
        # one epoch of each arm on full MNIST: the CNN dominates (its time: docs/performance.md)
        local=Budget(1, 1, searcher="grid", fixed={"batch_size": 128}, groups=_groups((0.2, 1.0), (2, 10))),
        paper=Budget(1, 100, seeds=SEEDS5, searcher="grid"),
    ),
    remedies=("ros", "weighted_loss", "rotation"),
    claims=ROS_CLAIMS,
))


# --- cifar_vgg: cifar_cnn vs pretrained VGG16; VGG imbalanced with noise copies, IRM, both ---------

VGG_ARMS = noise_irm_arms("vgg", ("cifar_cnn", "vgg"))
VGG_CLAIMS = noise_irm_claims("vgg", "cifar_cnn")
register(Experiment(
    "cifar_vgg",
    "study: CIFAR-10, cifar_cnn vs pretrained vgg balanced; vgg imbalanced with noise copies, IRM, both (GPU)",
    fixed={"dataset": "cifar10", "model": "vgg", "vgg_variant": "vgg16", "pretrained": True, "optimizer": "adam",
           "lr": 1e-3, "batch_size": 1024},
    arms=VGG_ARMS,
    searcher="grid",
    budgets=budgets(
        # CPU: a VGG-shaped 3-block network from scratch (VGG16 needs a GPU and ImageNet weights)
        smoke=Budget(1, 1, searcher="grid", fixed={"vgg_variant": "tiny", "pretrained": False, "batch_size": 128},
                     groups=without_lambda_sweep(VGG_ARMS)),
        local=Budget(1, 4, searcher="grid", fixed={"vgg_variant": "tiny", "pretrained": False, "batch_size": 128},
                     groups=without_lambda_sweep(VGG_ARMS)),
        paper=Budget(1, 100, seeds=SEEDS5, searcher="grid"),
    ),
    remedies=("noise_copies", "irm"),
    claims=VGG_CLAIMS,
))
