"""Evaluation metrics, all derived from one K x K confusion matrix.

Counting happens once on the device where predictions live; everything
else is arithmetic on the small matrix, so no metric loops over samples.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from tuner.lazy import lazy

torch = lazy("torch", globals())  # imported on first use (tuner.lazy): the driver's checks need no torch


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 counts indexed [true, pred], on the input device."""
    k = num_classes
    counts = torch.bincount(y_true.long().flatten() * k + y_pred.long().flatten(), minlength=k * k)
    if counts.numel() != k * k:  # bincount grows past K*K on out-of-range labels
        raise ValueError(f"labels must lie in 0..{k - 1}")
    return counts.reshape(k, k)


def _ratio(num, den):
    """num / den, NaN where den is 0 (an empty class or group has no rate)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)


def _mean(values):
    """Mean ignoring NaN; NaN (without numpy's warning) if nothing is left."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def metrics_from_confusion(cm, minority_classes: Sequence[int], prefix: str = "") -> dict[str, float]:
    if not isinstance(cm, np.ndarray) and hasattr(cm, "detach"):  # a tensor (asked so without importing torch)
        cm = cm.detach().cpu().numpy()
    cm = np.asarray(cm, dtype=float)
    k = cm.shape[0]
    minority_classes = [int(c) for c in minority_classes]
    if any(not 0 <= c < k for c in minority_classes):  # -1 would silently mean K-1
        raise ValueError(f"minority_classes must lie in 0..{k - 1}, got {minority_classes}")
    minority = np.zeros(k, dtype=bool)
    minority[minority_classes] = True
    majority = ~minority

    diag = np.diag(cm)
    support = cm.sum(axis=1)  # true counts per class
    predicted = cm.sum(axis=0)
    recall = _ratio(diag, support)

    out = {"acc": float(_ratio(diag.sum(), cm.sum()))}
    out.update({f"acc_{c}": float(r) for c, r in enumerate(recall)})
    out["minority_acc"] = _mean(recall[minority])
    out["majority_acc"] = _mean(recall[majority])
    out["balanced_acc"] = _mean(recall)  # NaN recalls are exactly the absent classes
    # sklearn's macro F1 averages only over labels seen in y_true or y_pred:
    # exactly those where 2tp / (support + predicted) is not 0/0 = NaN.
    out["macro_f1"] = _mean(_ratio(2 * diag, support + predicted))

    def block(rows, cols):
        return cm[np.ix_(rows, cols)].sum()

    n_a, n_i = support[majority].sum(), support[minority].sum()
    out["p_A_to_I"] = float(_ratio(block(majority, minority), n_a))
    out["p_A_to_A"] = float(_ratio(block(majority, majority) - diag[majority].sum(), n_a))
    out["p_I_to_A"] = float(_ratio(block(minority, majority), n_i))
    out["p_I_to_I"] = float(_ratio(block(minority, minority) - diag[minority].sum(), n_i))
    return {prefix + key: value for key, value in out.items()}
