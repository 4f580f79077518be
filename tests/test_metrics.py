import math

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from tuner.metrics import confusion_matrix, metrics_from_confusion

K = 10
MINORITY = [2, 5, 7]


def random_sets():
    """(name, y_true, y_pred) covering the awkward cases as well as plain noise."""
    sets = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        y_true = rng.integers(0, K, 300)
        # mostly right, some noise, so the metrics are not all near 0.1
        y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, K, 300))
        sets.append((f"seed{seed}", y_true, y_pred))
    rng = np.random.default_rng(10)
    y_true = rng.choice([c for c in range(K) if c != 5], 200)  # class 5 never true
    y_pred = rng.integers(0, K, 200)
    sets.append(("class_never_true", y_true, y_pred))
    y_true = rng.integers(0, K, 200)
    y_pred = np.where(y_true == 3, 3, rng.choice([0, 1, 2, 4, 6, 8, 9], 200))
    sets.append(("class_never_anywhere", y_true[y_true != 7], y_pred[y_true != 7]))
    sets.append(("all_one_class", rng.integers(0, K, 200), np.full(200, 4)))
    return sets


SETS = random_sets()


def metrics_for(y_true, y_pred, **kwargs):
    cm = confusion_matrix(torch.from_numpy(y_true), torch.from_numpy(y_pred), K)
    return metrics_from_confusion(cm, MINORITY, **kwargs)


@pytest.mark.parametrize("name,y_true,y_pred", SETS, ids=[s[0] for s in SETS])
def test_confusion_matrix_matches_sklearn(name, y_true, y_pred):
    cm = confusion_matrix(torch.from_numpy(y_true), torch.from_numpy(y_pred), K)
    assert cm.dtype == torch.int64
    expected = sk.confusion_matrix(y_true, y_pred, labels=range(K))
    np.testing.assert_array_equal(cm.numpy(), expected)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("name,y_true,y_pred", SETS, ids=[s[0] for s in SETS])
def test_scores_match_sklearn(name, y_true, y_pred):
    m = metrics_for(y_true, y_pred)
    assert m["acc"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    recall = sk.recall_score(y_true, y_pred, labels=range(K), average=None, zero_division=np.nan)
    for c in range(K):
        if np.isnan(recall[c]):
            assert math.isnan(m[f"acc_{c}"])
        else:
            assert m[f"acc_{c}"] == pytest.approx(recall[c])
    assert m["balanced_acc"] == pytest.approx(sk.balanced_accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y_true, y_pred, average="macro", zero_division=0))
    minority = [recall[c] for c in MINORITY if not np.isnan(recall[c])]
    majority = [recall[c] for c in range(K) if c not in MINORITY and not np.isnan(recall[c])]
    assert m["minority_acc"] == pytest.approx(np.mean(minority))
    assert m["majority_acc"] == pytest.approx(np.mean(majority))
    assert all(type(v) is float for v in m.values())


@pytest.mark.parametrize("name,y_true,y_pred", SETS, ids=[s[0] for s in SETS])
def test_error_rates_match_plain_masks(name, y_true, y_pred):
    true_i, pred_i = np.isin(y_true, MINORITY), np.isin(y_pred, MINORITY)
    true_a, pred_a = ~true_i, ~pred_i
    wrong = y_true != y_pred
    expected = {
        "p_A_to_I": (true_a & pred_i).sum() / true_a.sum(),
        "p_A_to_A": (true_a & pred_a & wrong).sum() / true_a.sum(),
        "p_I_to_A": (true_i & pred_a).sum() / true_i.sum(),
        "p_I_to_I": (true_i & pred_i & wrong).sum() / true_i.sum(),
    }
    m = metrics_for(y_true, y_pred)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key


def test_hand_worked_example():
    # 4 classes, minority I = {1, 3}, majority A = {0, 2}.
    # true: 0 0 0 0 2 2 | 1 1 1 3
    # pred: 0 1 2 0 2 3 | 1 0 3 3
    y_true = torch.tensor([0, 0, 0, 0, 2, 2, 1, 1, 1, 3])
    y_pred = torch.tensor([0, 1, 2, 0, 2, 3, 1, 0, 3, 3])
    m = metrics_from_confusion(confusion_matrix(y_true, y_pred, 4), [1, 3])
    assert m["acc"] == pytest.approx(5 / 10)  # right: 0,0,2,1,3
    assert m["acc_0"] == pytest.approx(2 / 4)
    assert m["acc_1"] == pytest.approx(1 / 3)
    assert m["acc_2"] == pytest.approx(1 / 2)
    assert m["acc_3"] == pytest.approx(1 / 1)
    assert m["minority_acc"] == pytest.approx((1 / 3 + 1) / 2)
    assert m["majority_acc"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    # 6 true A: 0->1 and 2->3 went to I, 0->2 stayed in A but wrong
    assert m["p_A_to_I"] == pytest.approx(2 / 6)
    assert m["p_A_to_A"] == pytest.approx(1 / 6)
    # 4 true I: 1->0 went to A, 1->3 stayed in I but wrong
    assert m["p_I_to_A"] == pytest.approx(1 / 4)
    assert m["p_I_to_I"] == pytest.approx(1 / 4)


def test_empty_groups_and_classes_are_nan():
    cm = np.zeros((3, 3), dtype=np.int64)
    cm[0, 0], cm[0, 1] = 3, 1  # only class 0 has samples
    m = metrics_from_confusion(cm, [2])
    assert m["acc_0"] == pytest.approx(0.75)
    assert math.isnan(m["acc_1"]) and math.isnan(m["acc_2"])
    assert math.isnan(m["minority_acc"])
    assert math.isnan(m["p_I_to_A"]) and math.isnan(m["p_I_to_I"])
    assert m["p_A_to_A"] == pytest.approx(0.25)
    assert m["p_A_to_I"] == 0.0


def test_numpy_and_torch_input_agree():
    _, y_true, y_pred = SETS[0]
    cm = confusion_matrix(torch.from_numpy(y_true), torch.from_numpy(y_pred), K)
    a = metrics_from_confusion(cm, MINORITY)
    b = metrics_from_confusion(cm.numpy(), MINORITY)
    assert a == b


def test_prefix():
    _, y_true, y_pred = SETS[0]
    plain = metrics_for(y_true, y_pred)
    prefixed = metrics_for(y_true, y_pred, prefix="val_")
    assert list(prefixed) == ["val_" + k for k in plain]
    assert list(prefixed.values()) == list(plain.values())
    assert {"val_acc", "val_acc_9", "val_balanced_acc", "val_macro_f1", "val_p_I_to_I"} <= set(prefixed)


def test_bad_labels_rejected():
    with pytest.raises(ValueError):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError):
        metrics_from_confusion(np.eye(3), [-1])
