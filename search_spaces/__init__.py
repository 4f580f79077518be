"""The named experiments: `EXPERIMENTS[name]` is plain data (see `search_spaces.registry`).

Adding one: an `Experiment(...)` passed to `register` in a module imported below.
"""
from search_spaces.registry import (  # noqa: F401  (what experiment files import: docs/experiments.md)
    EXPERIMENTS, LOCAL, PAPER, SMOKE, Budget, Choice, Claim, Experiment, Range, register,
)
from search_spaces import remedy_sweeps  # noqa: F401,E402  (registers lstm_* and cnn_*)
from search_spaces import modern  # noqa: F401,E402  (registers lstm_pareto, lstm_balanced_screen, lstm_best)
from search_spaces import digit_pairs  # noqa: F401,E402  (registers digit_pairs)
from search_spaces import studies  # noqa: F401,E402  (registers the studies: rnn_noise_irm, lstm_weighted_loss, ...)
