"""The studies' claims (issue 16 item 6): each verdict on a hand-built results table whose answer is known,
and the claims section in the study reports."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis import claims, report
from search_spaces import EXPERIMENTS
from search_spaces.registry import Claim

SEEDS = (0, 1, 2, 3, 4)


def frame(arms: dict[str, list[float]], metric="minority_acc", **extra) -> pd.DataFrame:
    """One trial per (group, seed): `arms` gives each group's metric per seed."""
    return pd.DataFrame([{"group": g, "seed": s, metric: v, **{k: f(g) for k, f in extra.items()}}
                         for g, values in arms.items() for s, v in zip(SEEDS, values)])


BASE = [0.90, 0.92, 0.91, 0.93, 0.89]
NOISY = [0.05, -0.04, 0.03, -0.02, 0.01]  # mean +0.006, sd 0.037: a paired t-test cannot tell it from 0


def plus(values, d):
    return [v + x for v, x in zip(values, d if isinstance(d, list) else [d] * len(values))]


IRM = Claim("IRM improves the minority classes", ("irm", "unbalanced"))


def test_supported_with_the_paired_difference_and_its_ci():
    gain = [0.020, 0.030, 0.025, 0.022, 0.028]
    r = claims.evaluate(IRM, frame({"unbalanced": BASE, "irm": plus(BASE, gain)}))
    assert r["verdict"] == "supported" and r["seeds"] == 5
    step = r["steps"].iloc[0]
    d = np.array(gain)
    half = st.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert step["diff_mean"] == pytest.approx(d.mean())
    assert (step["diff_ci95_low"], step["diff_ci95_high"]) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))
    assert claims.difference_text(r["steps"]) == f"irm − unbalanced: +2.5 pp [{(d.mean() - half) * 100:+.1f}, {(d.mean() + half) * 100:+.1f}]"


def test_contradicted():
    r = claims.evaluate(IRM, frame({"unbalanced": BASE, "irm": plus(BASE, [-0.10, -0.12, -0.13, -0.11, -0.14])}))
    assert r["verdict"] == "contradicted" and r["steps"].iloc[0]["diff_mean"] < 0


def test_within_noise():
    r = claims.evaluate(IRM, frame({"unbalanced": BASE, "irm": plus(BASE, NOISY)}))
    assert r["verdict"] == "within noise" and r["steps"].iloc[0]["p_value"] > 0.05


@pytest.mark.parametrize("arms, reason", [
    ({"unbalanced": BASE}, "missing: irm"),                          # an arm not run
    ({"unbalanced": BASE[:1], "irm": BASE[:1]}, "fewer than 2 seeds"),  # one seed: no CI
])
def test_not_enough_data(arms, reason):
    r = claims.evaluate(IRM, frame(arms))
    assert r["verdict"] == "not enough data" and reason in r["reason"]


def test_not_enough_data_when_the_seeds_do_not_pair_up():
    t = frame({"unbalanced": BASE, "irm": BASE})
    t.loc[t["group"] == "irm", "seed"] += 10  # seeds 10-14: none in common with the unbalanced run
    assert claims.evaluate(IRM, t)["verdict"] == "not enough data"


def test_an_ordering_of_groups_needs_every_step():
    order = Claim("a > b > c", ("a", "b", "c"), "acc")
    clear = frame({"a": plus(BASE, 0.05), "b": BASE, "c": plus(BASE, [-0.04, -0.05, -0.06, -0.05, -0.04])}, "acc")
    assert claims.evaluate(order, clear)["verdict"] == "supported"
    half = frame({"a": plus(BASE, 0.05), "b": BASE, "c": plus(BASE, NOISY)}, "acc")  # b vs c within noise
    r = claims.evaluate(order, half)
    assert r["verdict"] == "within noise" and list(r["steps"]["hi"]) == ["a", "b"]
    assert "p_adjusted" in r["steps"] and (r["steps"]["p_adjusted"] >= r["steps"]["p_value"]).all()  # BH within the claim
    reversed_ = frame({"a": plus(BASE, 0.05), "b": BASE, "c": plus(BASE, 0.05)}, "acc")
    assert claims.evaluate(order, reversed_)["verdict"] == "contradicted"


def test_an_ordering_of_metrics_within_one_group():
    """The p-rates of the unbalanced run: p_I->I > p_I->A > p_A->I > p_A->A, paired by seed."""
    claim = Claim("p order", ("p_I_to_I", "p_I_to_A", "p_A_to_I", "p_A_to_A"), within="cnn:unbalanced")
    rng = np.random.default_rng(1)
    rows = [{"group": "cnn:unbalanced", "seed": s, "p_I_to_I": 0.10 + e[0], "p_I_to_A": 0.07 + e[1],
             "p_A_to_I": 0.04 + e[2], "p_A_to_A": 0.01 + e[3]} for s, e in zip(SEEDS, rng.normal(0, 0.002, (5, 4)))]
    assert claims.evaluate(claim, pd.DataFrame(rows))["verdict"] == "supported"
    swapped = pd.DataFrame(rows).rename(columns={"p_I_to_I": "p_I_to_A", "p_I_to_A": "p_I_to_I"})
    assert claims.evaluate(claim, swapped)["verdict"] == "contradicted"
    assert claims.evaluate(claim, pd.DataFrame(rows).drop(columns="p_A_to_A"))["verdict"] == "not enough data"


def test_no_gain_claims():
    fail = Claim("weights fail", ("weight_2", "weight_3"), kind="no_gain", baseline="unbalanced")
    same = frame({"unbalanced": BASE, "weight_2": plus(BASE, [0.001, -0.001, 0.0, 0.002, -0.002]),
                  "weight_3": plus(BASE, [-0.001, 0.001, 0.0, -0.002, 0.002])})
    assert claims.evaluate(fail, same)["verdict"] == "supported"  # both gains' CIs below +1 point
    gain = frame({"unbalanced": BASE, "weight_2": plus(BASE, 0.0), "weight_3": plus(BASE, [0.05, 0.06, 0.05, 0.07, 0.06])})
    assert claims.evaluate(fail, gain)["verdict"] == "contradicted"
    noisy = frame({"unbalanced": BASE, "weight_2": plus(BASE, NOISY), "weight_3": plus(BASE, NOISY)})
    assert claims.evaluate(fail, noisy)["verdict"] == "within noise"  # no gain shown, none ruled out


def test_best_near_claims():
    claim = Claim("the best weight is about 7", ("weight_2", "weight_7", "weight_10"), kind="best_near",
                  param="minority_weight", near=7.0)
    weight = {"weight_2": 2.0, "weight_7": 7.0, "weight_10": 10.0}

    def t(offsets):
        return frame({g: plus(BASE, o) for g, o in zip(weight, offsets)}, minority_weight=weight.get)

    assert claims.evaluate(claim, t([0.0, 0.05, 0.01]))["verdict"] == "supported"
    r = claims.evaluate(claim, t([0.10, 0.0, 0.01]))
    assert r["verdict"] == "contradicted" and r["steps"].iloc[0]["hi"] == "weight_2"
    assert claims.evaluate(claim, t([[0.0, 0.05, 0.0, 0.04, 0.0], 0.0, 0.0]))["verdict"] == "within noise"
    assert claims.evaluate(claim, t([0.0, 0.05, 0.01])[lambda d: d["group"] != "weight_7"])["verdict"] == "not enough data"


def test_every_study_declares_its_claims_on_arms_it_runs():
    for name in ("rnn_noise_irm", "lstm_weighted_loss", "ros_vs_weights", "cifar_vgg", "digit_pairs"):
        exp = EXPERIMENTS[name]
        assert exp.claims, name
        groups = {a["group"] for a in exp.arms} | ({"class_weights"} if name == "lstm_weighted_loss" else set())
        for c in exp.claims:
            assert c.kind in ("order", "no_gain", "best_near") and c.text
            named = [c.within] if c.within else [*c.order, *([c.baseline] if c.baseline else [])]
            assert set(named) <= groups, (name, c.text)
    texts = {c.text for c in EXPERIMENTS["rnn_noise_irm"].claims}
    assert {"IRM improves the minority classes", "noise augmentation helps the minority classes"} <= texts
    texts = {c.text for c in EXPERIMENTS["lstm_weighted_loss"].claims}
    assert "the best minority weight is about 7" in texts and any(t.startswith("loss weights fail") for t in texts)


def study_trials(experiment: str, gains: dict[str, float], seeds=SEEDS) -> pd.DataFrame:
    """A trials table as analysis.load_trials gives it: best-epoch metrics as best_*, final-epoch ones plain."""
    rows = []
    for i, (g, gain) in enumerate(gains.items()):
        for s in seeds:
            acc = np.clip(np.full(10, 0.9) + gain + 0.002 * s + 0.001 * np.arange(10), 0, 1)
            row = {"run": "R", "trial_id": f"t{i}_{s}", "trial_index": i * 10 + s, "experiment": experiment,
                   "group": g, "seed": s, "status": "TERMINATED", "asha_stopped": False, "model": "lstm",
                   "dataset": "mnist", "budget": "local", "epochs_run": 3, "wall_time_s": 1.0, "num_params": 10,
                   "minority_keep": 0.1, "error": None, "error_file": None, "logdir": "x",
                   "selection_metric": "val_balanced_acc", "selection_mode": "max", "best_epoch": 2}
            for prefix, a in (("best_", acc), ("", acc - 0.01)):  # the final epoch 1 point lower
                row.update({f"{prefix}acc_{c}": a[c] for c in range(10)})
                row.update({f"{prefix}minority_acc": a[:5].mean(), f"{prefix}majority_acc": a[5:].mean(),
                            f"{prefix}balanced_acc": a.mean(), f"{prefix}acc": a.mean()})
                row.update({f"{prefix}val_balanced_acc": a.mean()})
            rows.append(row)
    return pd.DataFrame(rows)


def test_the_report_ends_each_study_with_its_claims(tmp_path):
    t = study_trials("rnn_noise_irm", {"elman_balanced": 0.0, "lstm_balanced": 0.05, "unbalanced": 0.0,
                                       "augmented": 0.02, "irm": -0.03})
    t.loc[t["group"] == "augmented", "best_minority_acc"] += [0.01, -0.01, 0.02, -0.02, 0.0]  # a spread
    md, _ = report.write_report(t, pd.DataFrame(), tmp_path / "r")
    text = md.read_text()
    section = text[text.index("### The original's claims, tested"):]
    assert "| IRM improves the minority classes | irm > unbalanced |" in section
    rows = {line.split(" | ")[0].strip("| "): line for line in section.splitlines() if line.startswith("| ")}
    assert "**contradicted**" in rows["IRM improves the minority classes"]
    assert "**supported**" in rows["noise augmentation helps the minority classes"]
    assert "**not enough data** (missing: combined)" in rows["IRM with noise augmentation improves the minority classes"]
    assert "irm − unbalanced: -3.0 pp" in rows["IRM improves the minority classes"]
    assert "difference, final epoch [95% CI]" in section and "verdict, final epoch" in section
    # the final epoch beside the best-validation one in the study tables
    assert "| minority mean, final epoch |" in text and "test accuracy, final epoch" in text


def test_the_digit_pairs_report_tests_its_claims_on_the_final_epoch(tmp_path):
    rows = [dict(run="r", trial_id=f"{g}{s}", experiment="digit_pairs", status="TERMINATED", group=g, model=f"pairs_{g}",
                 seed=s, epochs_run=3, asha_stopped=False, acc=a + 0.01 * s, best_acc=0.90, val_acc=0.80 + 0.01 * s,
                 best_val_acc=0.85, selection_metric="val_acc", selection_mode="max", num_params=10, wall_time_s=1.0,
                 dataset="digit_pairs", budget="local", error=None, error_file=None, logdir="x")
            for g, a in (("cnn_pad", 0.80), ("siamese", 0.87)) for s in (0, 1, 2)]
    rows[3]["acc"] += 0.005  # not identical differences
    md, _ = report.write_report(pd.DataFrame(rows), pd.DataFrame(), tmp_path / "r")
    text = md.read_text()
    assert "### The original's claims, tested" in text
    line = next(x for x in text.splitlines() if x.startswith("| weight sharing helps"))
    # best-validation epoch: every trial 0.90 -> no difference (within noise); the final epoch: +7 points
    assert "**within noise**" in line and line.rstrip(" |").endswith("supported")
    assert "siamese − cnn_pad: +7.2 pp" in line
