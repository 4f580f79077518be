"""The `digit_pairs` study: ten architectures on "is the first MNIST digit <= the second?".

Each arm is one architecture (`group` = its short name, `model` = `pairs_<name>`); each seed is a
round with new pairs (1000 training pairs, 10% of them for validation, 1000 test pairs) and a new
initialisation. Nothing is searched: every architecture runs every round to the end, and the
study's table is mean, sd and 95% CI of the test accuracy over rounds (`analysis.pairs.pairs_table`).
"""
import tuner.pairs  # noqa: F401  (the task, its datasets and models: this study's plug-in)
from search_spaces.registry import Budget, Claim, Experiment, register

ARCHITECTURES = ("perceptron", "mlp", "cnn", "cnn_pad", "cnn_dropout", "cnn_bn", "resnet", "siamese", "siamese_aux",
                 "digits")

# The dataset sits in the budgets, not in `fixed`: without full MNIST on disk and offline, the default
# run then falls back (with a warning) to the shipped sample, like every other experiment.
# The original trained its first four models (perceptron, MLP and the two plain CNNs) with SGD; the
# `_sgd` arms are those (lr 0.1, the earlier arms keep Adam). The paper budget also draws the
# validation pairs from spare images (pair_val_pairs=spare), so that all 1000 pairs train as in the
# original; smoke and local keep the earlier protocol (100 of the 1000 pairs held out, Adam only).
SGD_ARMS = tuple({"group": f"{name}_sgd", "model": f"pairs_{name}", "optimizer": "sgd", "lr": 0.1}
                 for name in ARCHITECTURES[:4])
ADAM_ONLY = ARCHITECTURES

BUDGETS = {
    "smoke": Budget(num_samples=1, max_epochs=1, seeds=(0,), fixed={"dataset": "digit_pairs-sample"}, groups=ADAM_ONLY),
    # the study's 50 epochs, 3 rounds instead of 10: 10 architectures x 3 rounds
    "local": Budget(num_samples=1, max_epochs=50, seeds=(0, 1, 2), fixed={"dataset": "digit_pairs"}, groups=ADAM_ONLY),
    # the study: 50 epochs, 10 rounds, every pair trains, and the SGD arms beside Adam
    "paper": Budget(num_samples=1, max_epochs=50, seeds=tuple(range(10)), searcher="grid",
                    fixed={"dataset": "digit_pairs", "pair_val_pairs": "spare"}),
}

# The study's claims (test accuracy at the final epoch, over rounds): each step of the siamese line helps,
# and dropout and batch norm help the padded CNN.
CLAIMS = (
    Claim("weight sharing helps: the siamese network beats the padded CNN", ("siamese", "cnn_pad"), "acc"),
    Claim("auxiliary digit losses help: siamese_aux beats siamese", ("siamese_aux", "siamese"), "acc"),
    Claim("comparing the predicted digits is best: digits beats siamese_aux", ("digits", "siamese_aux"), "acc"),
    Claim("dropout helps the CNN", ("cnn_dropout", "cnn_pad"), "acc"),
    Claim("batch normalisation helps the CNN", ("cnn_bn", "cnn_pad"), "acc"),
)

register(Experiment(
    "digit_pairs",
    "pairs of 14x14 MNIST digits, is the first <= the second: 10 architectures (MLPs, CNNs, siamese, aux losses)",
    fixed={"batch_size": 100, "lr": 1e-3, "optimizer": "adam"},
    arms=tuple({"group": name, "model": f"pairs_{name}"} for name in ARCHITECTURES) + SGD_ARMS,
    searcher="grid",
    metric="val_acc",
    budgets=BUDGETS,
    task="digit_pairs",  # tuner.pairs: its targets, models, loss and report table
    claims=CLAIMS,
))
