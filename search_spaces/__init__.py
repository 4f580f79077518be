"""The named experiments: `EXPERIMENTS[name]` is plain data (see `search_spaces.registry`).

Adding one: an `Experiment(...)` passed to `register` in a module imported below.
"""
from search_spaces.registry import EXPERIMENTS, Budget, Choice, Experiment, Range, register  # noqa: F401
from search_spaces import remedy_sweeps  # noqa: F401,E402  (registers lstm_* and cnn_*)
