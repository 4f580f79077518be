"""Multi-objective searches: the Pareto front, its knee, and lstm_pareto end to end on the sample."""
import json

import numpy as np
import pandas as pd
import pytest

from tuner.pareto import front_and_knee, knee_point, pareto_front
from tuner.search import build_plan, main, make_tuner, parse_args

POINTS = [(0.9, 0.5), (0.8, 0.8), (0.5, 0.9), (0.7, 0.7), (0.8, 0.6), (0.5, 0.9)]


def dominated_by_loops(points, sign):
    """Brute force: j is dominated when some i is >= in every objective and > in one."""
    out = []
    for j, b in enumerate(points):
        out.append(any(all(sign * x >= sign * y for x, y in zip(a, b)) and any(sign * x > sign * y for x, y in zip(a, b))
                       for a in points))
    return out


def test_pareto_front_against_brute_force():
    mask = pareto_front(POINTS, ["max", "max"])
    assert mask.tolist() == [True, True, True, False, False, True]  # equal points do not dominate each other
    assert mask.tolist() == [not d for d in dominated_by_loops(POINTS, 1)]
    assert pareto_front(POINTS, ["min", "min"]).tolist() == [not d for d in dominated_by_loops(POINTS, -1)]
    # float noise of a mean of per-class rates is a tie, not a win
    assert 0.1 + 0.2 > 0.3
    assert pareto_front([(0.1 + 0.2, 0.4), (0.3, 0.6)], ["max", "max"]).tolist() == [False, True]
    rng = np.random.default_rng(0)
    for _ in range(20):
        pts = rng.integers(0, 5, (12, 3)).tolist()  # ties on purpose
        assert pareto_front(pts, ["max"] * 3).tolist() == [not d for d in dominated_by_loops(pts, 1)]


def test_knee_is_closest_to_the_ideal_after_scaling():
    # scaled to [0, 1] per objective: (1, 0), (0.75, 0.75), (0, 1) -> distances 1, 0.354, 1
    assert knee_point([(0.9, 0.5), (0.8, 0.8), (0.5, 0.9)], ["max", "max"]) == 1
    # raw distances to (1, 1) would pick the last point (0.1 away); scaled ones pick the middle:
    # (1, 0), (0.8, 0.6), (0, 1) -> 1, 0.447, 1
    front = [(1.0, 0.0), (0.98, 0.6), (0.90, 1.0)]
    raw = [np.hypot(1 - a, 1 - b) for a, b in front]
    assert int(np.argmin(raw)) == 2 and knee_point(front, ["max", "max"]) == 1
    assert knee_point([(0.7, 0.2)], ["max", "max"]) == 0  # one point is its own knee
    assert knee_point([(0.1, 5.0), (0.3, 1.0), (0.5, 0.5)], ["min", "min"]) == 1


def test_comma_separated_metrics_make_a_multi_objective_plan(tmp_path, sample_images):
    plan = build_plan(parse_args(["lstm_pareto", "--budget", "smoke", "--storage-path", str(tmp_path), "--name", "P"]))
    assert plan.objectives == ("val_minority_acc", "val_majority_acc") and plan.metric == "val_minority_acc"
    assert not plan.asha and plan.searcher == "optuna"  # ASHA ranks one metric: every trial runs to the end
    tuner = make_tuner(plan, sample_images, 2)
    tc = tuner._local_tuner._tune_config
    assert tc.metric is None and tc.mode is None  # Ray: the metrics live in the searcher only
    assert tc.search_alg.metric == ["val_minority_acc", "val_majority_acc"]
    assert tc.search_alg.mode == ["max", "max"]
    single = build_plan(parse_args(["lstm_weighted", "--budget", "smoke", "--storage-path", str(tmp_path), "--name", "S"]))
    assert single.objectives == () and single.asha


def test_front_and_knee_order_the_front_best_first_and_name_the_knee_row():
    # rows 0-2 are on the front (row 5 ties row 2: both stay, in row order); knee = row 1 (see above)
    on_front, order, knee = front_and_knee(POINTS, ["max", "max"])
    assert on_front.tolist() == [True, True, True, False, False, True]
    assert order == [0, 1, 2, 5] and knee == 1
    on_front, order, knee = front_and_knee([(0.1, 5.0), (0.5, 0.5), (0.3, 1.0)], ["min", "min"])
    assert order == [0, 2, 1] and knee == 2


def test_a_bad_objective_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["lstm_pareto", "--metric", "val_minority_acc,accuracy", "--storage-path", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--metric 'accuracy'" in err and err.count("\n") == 1


def test_lstm_pareto_smoke_prints_and_plots_the_front(ray_session, tmp_path, capsys):
    assert main(["lstm_pareto", "--budget", "smoke", "--num-samples", "4", "--max-epochs", "1",
                 "--storage-path", str(tmp_path), "--name", "P"]) == 0
    out = capsys.readouterr().out
    finals = {}
    for f in sorted((tmp_path / "P").glob("trial_*/result.json")):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        assert [r["epoch"] for r in rows] == [1]
        finals[rows[-1]["trial_id"]] = (rows[-1]["val_minority_acc"], rows[-1]["val_majority_acc"])
    assert len(finals) == 4
    ids, pts = list(finals), list(finals.values())
    expected = {t for t, dom in zip(ids, dominated_by_loops(pts, 1)) if not dom}
    section = out.split("Pareto front of val_minority_acc, val_majority_acc (max) over 4 trials")[1]
    lines = section.split("Knee (*)")[0].splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["knee", "trial"])
    table = [line.split() for line in lines[header + 1:] if line.strip()]
    printed = {cells[1] if cells[0] == "*" else cells[0] for cells in table}
    assert printed == expected
    knees = [cells[1] for cells in table if cells[0] == "*"]
    assert len(knees) == 1
    # the knee: smallest distance to (1, 1) after min-max scaling over the front, computed here by hand
    front = np.array([finals[t] for t in sorted(expected)])
    span = front.max(0) - front.min(0)
    scaled = np.where(span > 0, (front - front.min(0)) / np.where(span > 0, span, 1), 1.0)
    dist = dict(zip(sorted(expected), np.hypot(*(1 - scaled).T)))
    assert dist[knees[0]] == pytest.approx(min(dist.values()))
    png = tmp_path / "P" / "pareto.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"Plot:     {png}" in out
    # The report of the run shows the same front and knee, and the objectives are a column of the export.
    from analysis import report

    assert report.main([str(tmp_path / "P"), "--out", str(tmp_path / "R")]) == 0
    md = (tmp_path / "R" / "report.md").read_text()
    section = md.split("## Pareto front of `val_minority_acc`, `val_majority_acc`")[1].split("\n## ")[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ") and not line.startswith("| knee")]
    assert {r[1] for r in rows} == expected and [r[1] for r in rows if r[0] == "| *"] == knees
    assert "**ranked on validation data** by `val_minority_acc`" in md  # the first objective, as the summary
    assert "(figures/pareto.png)" in md and (tmp_path / "R" / "figures" / "pareto.svg").exists()
    trials = pd.read_parquet(tmp_path / "R" / "trials.parquet")
    assert set(trials["objectives"]) == {"val_minority_acc,val_majority_acc"}
