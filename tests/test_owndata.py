"""Own data: `imagefolder:PATH` and `table:PATH`, from files built here to a search's report."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tuner import imagefolder, owndata
from tuner.config import resolve
from tuner.data import keep_fractions, load_dataset, make_split
from tuner.errors import ConfigError
from tuner.models import MODELS, build_model, check_input


def save(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path, fmt)


def tree(root, counts, size=(10, 8), colour=True, seed=0):
    """root/<class>/<i>.png with random pixels; counts: {class: n}."""
    rng = np.random.default_rng(seed)
    for cls, n in counts.items():
        for i in range(n):
            shape = (*size, 3) if colour else size
            save(root / cls / f"{i}.png", rng.integers(0, 256, shape))
    return root


def load(path, tmp_path, **options):
    return load_dataset(f"imagefolder:{path}", tmp_path / "data", options=options)


# --- image folders: decoding --------------------------------------------------------------------

def test_decoded_pixels_are_the_files_pixels(tmp_path):
    grey = np.arange(9).reshape(3, 3) * 20
    rgb = np.arange(27).reshape(3, 3, 3) * 9
    for i in range(3):  # a split layout: every file lands where we expect it
        save(tmp_path / "t/train/g" / f"{i}.png", grey + i)
        save(tmp_path / "t/train/h" / f"{i}.bmp", rgb + i)
    save(tmp_path / "t/test/g/0.png", grey)
    save(tmp_path / "t/test/h/0.bmp", rgb)
    im = load(tmp_path / "t", tmp_path)
    assert im.classes == ("g", "h") and im.input_shape == (3, 3, 3)  # one colour image: RGB for all
    assert im.train_x.dtype == np.uint8 and list(im.train_y) == [0, 0, 0, 1, 1, 1]
    for i in range(3):
        assert (im.train_x[i] == np.stack([grey + i] * 3)).all()  # grey becomes R = G = B
        assert (im.train_x[3 + i] == (rgb + i).transpose(2, 0, 1)).all()
    assert (im.test_x[1] == rgb.transpose(2, 0, 1)).all() and list(im.test_y) == [0, 1]
    assert im.info["test_split"] == "the test folder"
    # per-channel mean and std of the training pixels, 0-1 scale
    red = np.concatenate([(grey + i).ravel() for i in range(3)] + [(rgb + i)[..., 0].ravel() for i in range(3)]) / 255
    assert im.mean[0] == pytest.approx(red.mean()) and im.std[0] == pytest.approx(red.std())


def test_all_grey_is_one_channel_and_jpeg_works(tmp_path):
    for cls in ("a", "b"):
        for i in range(3):
            save(tmp_path / "t" / cls / f"{i}.jpg", np.full((6, 5), 100 + i), "JPEG")
    im = load(tmp_path / "t", tmp_path)
    assert im.input_shape == (1, 6, 5)
    assert abs(int(im.train_x.max()) - 101) <= 2  # JPEG is lossy, barely on a flat image


def test_mixed_sizes_use_the_most_common_and_say_so(tmp_path, capsys):
    tree(tmp_path / "t", {"a": 3, "b": 3}, size=(10, 8))
    save(tmp_path / "t/a/odd.png", np.zeros((20, 30, 3)))
    im = load(tmp_path / "t", tmp_path)
    assert im.input_shape == (3, 10, 8)
    err = capsys.readouterr().err
    assert "images differ in size (2 sizes): resizing all to the most common, 10x8 (HxW)" in err
    assert sum("images differ in size" in line for line in err.splitlines()) == 1


def test_image_size_resizes_with_pillow(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (10, 8, 3)).astype(np.uint8)
    save(tmp_path / "t/a/0.png", pixels)
    tree(tmp_path / "t", {"b": 2})
    save(tmp_path / "t/a/1.png", pixels)
    im = load(tmp_path / "t", tmp_path, image_size="5,4", test_fraction=0.5)
    assert im.input_shape == (3, 5, 4)
    expect = np.asarray(Image.fromarray(pixels).resize((4, 5), Image.BILINEAR)).transpose(2, 0, 1)
    x = np.concatenate([im.train_x, im.test_x])[np.concatenate([im.train_y, im.test_y]) == 0]
    assert (x[0] == expect).all()
    assert load(tmp_path / "t", tmp_path, image_size=6).input_shape == (3, 6, 6)


def test_corrupt_files_are_skipped_with_one_warning_naming_them(tmp_path):
    tree(tmp_path / "t", {"a": 3, "b": 3})
    (tmp_path / "t/a/broken.png").write_bytes(b"not a png")
    good = (tmp_path / "t/b/0.png").read_bytes()
    (tmp_path / "t/b/cut.png").write_bytes(good[: len(good) // 2])  # header fine, pixels missing
    with pytest.warns(UserWarning) as w:
        im = load(tmp_path / "t", tmp_path)
    msgs = [str(x.message) for x in w if "could not be decoded" in str(x.message)]
    assert len(msgs) == 1 and "skipped 2 file(s)" in msgs[0] and "a/broken.png" in msgs[0] and "b/cut.png" in msgs[0]
    assert len(im.train_y) + len(im.test_y) == 6


def test_hidden_and_non_image_files_are_ignored(tmp_path):
    tree(tmp_path / "t", {"a": 2, "b": 2})
    (tmp_path / "t/a/notes.txt").write_text("hello")
    (tmp_path / "t/a/.DS_Store").write_bytes(b"\0\1")
    save(tmp_path / "t/a/.hidden.png", np.zeros((10, 8, 3)))
    save(tmp_path / "t/.thumbs/x.png", np.zeros((10, 8, 3)))  # a hidden folder is no class
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about
        im = load(tmp_path / "t", tmp_path)
    assert im.classes == ("a", "b") and len(im.train_y) + len(im.test_y) == 4


@pytest.mark.parametrize("make, message", [
    (lambda t: (t / "t/empty").mkdir(), "class folder '{t}/t/empty' has no image"),
    (lambda t: (t / "t/empty").mkdir() or (t / "t/empty/readme.txt").write_text("x"), "class folder '{t}/t/empty' has no image"),
    (lambda t: [p.unlink() for p in (t / "t/b").iterdir()] and None, "class folder '{t}/t/b' has no image"),
])
def test_a_class_folder_without_images_is_an_error_naming_it(tmp_path, make, message):
    tree(tmp_path / "t", {"a": 2, "b": 2})
    make(tmp_path)
    with pytest.raises(ConfigError, match="^imagefolder:") as e:
        load(tmp_path / "t", tmp_path)
    assert message.format(t=tmp_path) in str(e.value)


def test_a_class_of_only_corrupt_files_is_an_error(tmp_path):
    tree(tmp_path / "t", {"a": 2})
    (tmp_path / "t/b").mkdir()
    (tmp_path / "t/b/x.png").write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="class folder 'b' has no image that could be decoded"):
        load(tmp_path / "t", tmp_path)


def test_layout_errors(tmp_path):
    tree(tmp_path / "one", {"a": 2})
    with pytest.raises(ConfigError, match="found 1 class folder"):
        load(tmp_path / "one", tmp_path)
    tree(tmp_path / "split/train", {"a": 2, "b": 2})
    tree(tmp_path / "split/test", {"a": 2, "c": 2})
    with pytest.raises(ConfigError, match="same class folders; b, c is in only one of them"):
        load(tmp_path / "split", tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "nowhere", tmp_path)
    with pytest.raises(ConfigError, match="is not a folder"):
        load(tmp_path / "one/a/0.png", tmp_path)
    tiny = tree(tmp_path / "tiny", {"a": 5, "b": 2}, size=(4, 4))  # b: 1 training image after the test split
    with pytest.raises(ConfigError, match=r"class 1 \(b\) has 1 training image\(s\) after imbalance \(keep 1 of 1\): "
                       "need at least 2, add examples of it or leave the class out"):
        make_split(load(tiny, tmp_path), resolve({"dataset": f"imagefolder:{tiny}", "imbalance": "natural"}))


def test_single_tree_gets_a_stratified_seeded_test_split(tmp_path):
    tree(tmp_path / "t", {"a": 20, "b": 10, "c": 3})
    im = load(tmp_path / "t", tmp_path, test_fraction=0.3, data_seed=4)
    assert np.bincount(im.test_y).tolist() == [6, 3, 1]  # round(0.3 n) per class
    assert im.info["found_counts"] == [14, 7, 2] and im.info["test_split"] == "stratified test_fraction=0.3, data_seed=4"
    again = load(tmp_path / "t", tmp_path, test_fraction=0.3, data_seed=4)
    assert (again.test_x == im.test_x).all()
    other = load(tmp_path / "t", tmp_path, test_fraction=0.3, data_seed=5)
    assert not (other.test_x == im.test_x).all()
    # no image in both parts
    rows = {x.tobytes() for x in im.train_x}
    assert not rows & {x.tobytes() for x in im.test_x}


def test_cache_follows_the_files(tmp_path, monkeypatch):
    tree(tmp_path / "t", {"a": 3, "b": 3})
    first = load(tmp_path / "t", tmp_path)
    calls = []
    real = imagefolder.decode
    monkeypatch.setattr(imagefolder, "decode", lambda *a: calls.append(1) or real(*a))
    assert (load(tmp_path / "t", tmp_path).train_x == first.train_x).all() and calls == []  # from the cache
    save(tmp_path / "t/a/0.png", np.full((10, 8, 3), 7))  # edit one file
    edited = load(tmp_path / "t", tmp_path)
    assert calls == [1]
    assert (np.concatenate([edited.train_x, edited.test_x]) == 7).all(axis=(1, 2, 3)).sum() == 1
    assert len(list((tmp_path / "data/cache").glob("imagefolder-*.npz"))) == 1  # the old cache is gone
    (tmp_path / "t/b/2.png").unlink()  # remove one
    removed = load(tmp_path / "t", tmp_path)
    assert len(removed.train_y) + len(removed.test_y) == 5 and calls == [1, 1]


def test_a_tree_too_big_for_memory_is_refused_with_a_size_that_fits(tmp_path, monkeypatch):
    tree(tmp_path / "t", {"a": 5, "b": 5}, size=(40, 20))
    monkeypatch.setenv("TUNER_MAX_DATA_BYTES", "10000")  # 10 images x 3 x 40 x 20 = 24,000 bytes
    monkeypatch.setattr(imagefolder, "to_array", lambda *a: pytest.fail("decoded before the check"))
    with pytest.raises(ConfigError) as e:
        load(tmp_path / "t", tmp_path)
    msg = str(e.value)
    assert "10 images of 3x40x20 would take 24.0 KB decoded, more than the 10.0 KB allowed" in msg
    size = msg.split("set image_size=")[1].split(" ")[0]
    h, w = map(int, size.split(","))
    assert 10 * 3 * h * w <= 10000 and h / w == pytest.approx(2, rel=0.2)
    monkeypatch.undo()
    monkeypatch.setenv("TUNER_MAX_DATA_BYTES", "10000")
    assert load(tmp_path / "t", tmp_path, image_size=size).input_shape == (3, h, w)


# --- classes: minority, imbalance, names ------------------------------------------------------

def images_with_counts(tmp_path, counts):
    return load(tree(tmp_path / "t", counts, size=(4, 4)), tmp_path, test_fraction=0.2)


def test_minority_default_is_under_half_the_median_and_names_override(tmp_path):
    im = images_with_counts(tmp_path, {"ant": 25, "bee": 25, "cat": 20, "dog": 5, "eel": 10})
    found = im.info["found_counts"]
    assert found == [20, 20, 16, 4, 8]  # median 16: under 8 -> dog only
    settled = owndata.settle({}, im)
    assert settled == {"minority_classes": [3], "minority_keep": 1.0}
    assert owndata.settle({"minority_classes": ["eel", 0]}, im)["minority_classes"] == [0, 4]
    with pytest.raises(ConfigError, match="minority_classes: no class named 'fox': the classes are ant, bee, cat, dog, eel"):
        owndata.settle({"minority_classes": ["fox"]}, im)
    with pytest.raises(ConfigError, match="class index 7 is out of range: the data has 5 classes"):
        owndata.settle({"minority_classes": [7]}, im)
    with pytest.raises(ConfigError, match="class_weights has 10 weights but the data has 5 classes"):
        owndata.settle({"class_weights": [1.0] * 10}, im)
    # imposed imbalance, by name or index; the natural one keeps everything
    imb = owndata.settle({"imbalance": {"bee": 0.5, "4": 0.2}}, im)["imbalance"]
    assert keep_fractions({"imbalance": imb}, 5) == {0: 1.0, 1: 0.5, 2: 1.0, 3: 1.0, 4: 0.2}
    assert owndata.settle({"imbalance": imb, "minority_classes": [3]}, im)["imbalance"] == imb  # settles to itself
    assert set(keep_fractions({"imbalance": "natural"}, 5).values()) == {1.0}
    assert keep_fractions({**settled, "imbalance": None}, 5) == {c: 1.0 for c in range(5)}


def test_digit_folder_names_are_names_and_settled_indices_stay_indices(tmp_path):
    im = images_with_counts(tmp_path, {"1": 10, "2": 10, "3": 10})
    settled = owndata.settle({"minority_classes": ["3"], "imbalance": {"2": 0.5}}, im)
    assert settled["minority_classes"] == [2] and settled["imbalance"] == {1: 0.5}
    assert owndata.settle({**settled, "minority_keep": 1.0}, im) == {k: v for k, v in settled.items() if k != "minority_keep"}


def test_models_take_the_detected_shape_or_are_refused(tmp_path):
    for shape in [(3, 20, 12), (1, 9, 9), (3, 8, 8)]:
        for name in ("elman", "lstm", "lstm2", "lstm_mlp", "cnn", "cifar_cnn", "vgg", "mlp"):
            if check_input(name, shape) is None:
                model = build_model(name, shape, 4, {"vgg_variant": "tiny", "pretrained": False})
                assert model(torch.zeros(2, *shape)).shape == (2, 4)
    assert "images need at least 8x8 pixels" in check_input("cifar_cnn", (1, 4, 4))
    assert build_model("lstm", (3, 20, 12), 4).rnn.input_size == 3 * 12  # a step: one row, all channels
    assert check_input("mlp", (7,)) is None and build_model("mlp", (7,), 3, {"hidden": 5, "layers": 3})(torch.zeros(2, 7)).shape == (2, 3)
    assert all(check_input(m, (7,)) for m in MODELS if not m.startswith(("mlp", "pairs_")))


# --- tables ---------------------------------------------------------------------------------------

def csv_table(tmp_path, n=40):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "age": rng.normal(50, 10, n).round(1),
        "income": rng.normal(3000, 500, n).round(),
        "city": rng.choice(["oslo", "rome", "lima"], n),
        "fraud": np.where(np.arange(n) % 5 == 0, "yes", "no"),
    })
    df.loc[3, "age"] = np.nan
    df.loc[17, "city"] = np.nan
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    return path, df


def load_table(path, **options):
    return load_dataset(f"table:{path}", options={"label": "fraud", **options})


def test_csv_rows_with_missing_values_are_dropped_and_named(tmp_path, capsys):
    path, df = csv_table(tmp_path)
    with pytest.warns(UserWarning, match=r"dropped 2 of 40 row\(s\) with missing values \(rows 3, 17, 0-based, "
                      r"header excluded; in columns age, city\); set impute=median"):
        t = load_table(path)
    assert "one-hot encoded categorical columns: city (3 values)" in capsys.readouterr().err
    assert t.kind == "table" and t.classes == ("no", "yes") and t.train_x.dtype == np.float32
    assert t.info["features"] == ["age", "income", "city=lima", "city=oslo", "city=rome"]
    assert len(t.train_y) + len(t.test_y) == 38 and np.bincount(t.test_y).tolist() == [6, 2]  # round(0.2 * 30), round(0.2 * 8)
    # standardised on the training split only: train mean 0 / std 1; test with the training statistics
    assert np.allclose(t.train_x.mean(0), 0, atol=1e-5) and np.allclose(t.train_x.std(0), 1, atol=1e-5)
    kept = df.dropna().reset_index(drop=True)
    raw_age = kept["age"].to_numpy()
    tr, te = owndata.stratified_split((kept["fraud"] == "yes").to_numpy().astype(int), 0.2, 0)
    mu, sd = raw_age[tr].mean(), raw_age[tr].std()
    assert np.allclose(t.test_x[:, 0], (raw_age[te] - mu) / sd, atol=1e-4)
    assert not np.isclose(t.test_x[:, 0].mean(), 0, atol=1e-3)


def test_impute_median_uses_the_training_split(tmp_path):
    path, df = csv_table(tmp_path)
    t = load_table(path, impute="median")
    assert len(t.train_y) + len(t.test_y) == 40
    y = (df["fraud"] == "yes").to_numpy().astype(int)
    tr, te = owndata.stratified_split(y, 0.2, 0)
    age = df["age"].to_numpy()
    age_filled = np.where(np.isnan(age), np.nanmedian(age[tr]), age)
    mu, sd = age_filled[tr].mean(), age_filled[tr].std()
    where = np.flatnonzero(tr == 3)
    x3 = t.train_x[where[0], 0] if len(where) else t.test_x[np.flatnonzero(te == 3)[0], 0]
    assert x3 == pytest.approx((np.nanmedian(age[tr]) - mu) / sd, abs=1e-4)


def test_parquet_and_table_errors(tmp_path):
    path, df = csv_table(tmp_path)
    df.dropna().to_parquet(tmp_path / "t.parquet")
    assert load_table(tmp_path / "t.parquet").input_shape == (5,)
    with pytest.raises(ConfigError, match=r"needs label=COLUMN \(--set label=COLUMN\): the columns are age, income, city, fraud"):
        load_dataset(f"table:{path}", options={})
    with pytest.raises(ConfigError, match="no column 'label' for label="):
        load_dataset(f"table:{path}", options={"label": "label"})
    pd.DataFrame({"x": [np.nan, np.nan], "fraud": ["no", "yes"]}).to_csv(tmp_path / "gaps.csv", index=False)
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="no row left after dropping those with missing values"):
        load_table(tmp_path / "gaps.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(ConfigError, match="expected a .parquet or .csv file"):
        load_dataset(f"table:{tmp_path / 't.xlsx'}", options={"label": "y"})


def test_table_refuses_image_models_and_rotation(tmp_path):
    path, _ = csv_table(tmp_path)
    t = load_table(path, impute="median")
    base = {"dataset": f"table:{path}", "label": "fraud", "minority_classes": [1]}
    owndata.check_fits(resolve({**base, "model": "mlp", "noise_sigma": 0.1, "ros_target": 1.0}), t)
    with pytest.raises(ConfigError, match="model 'lstm' cannot take feature vectors of 5 features: it reads images"):
        owndata.check_fits(resolve({**base, "model": "lstm"}), t)
    with pytest.raises(ConfigError, match="rotation_deg=10 rotates images: it does not apply to table data"):
        owndata.check_fits(resolve({**base, "model": "mlp", "rotation_deg": 10}), t)


# --- searches end to end ---------------------------------------------------------------------

def search(args, tmp_path, name):
    from tuner.search import main

    (tmp_path / "data").mkdir(exist_ok=True)
    return main([*args, "--budget", "smoke", "--num-samples", "1", "--max-epochs", "1", "--no-asha",
                 "--data-dir", str(tmp_path / "data"), "--storage-path", str(tmp_path / "runs"), "--name", name])


def report_of(tmp_path, name):
    from analysis import report

    run = tmp_path / "runs" / name
    assert report.main([str(run)]) == 0
    from analysis import load_trials

    trials = load_trials(run / "report" / "trials.parquet")  # list columns come back as JSON text, as documented
    return trials, (run / "report" / "report.md").read_text()


def test_search_on_an_image_tree_through_export_and_report(ray_session, tmp_path, capsys):
    root = tree(tmp_path / "scans", {"benign": 12, "malign": 3, "other": 9}, size=(8, 6))
    save(root / "benign/grey.png", np.full((8, 6), 90))  # grey among colour
    save(root / "other/big.png", np.zeros((16, 12, 3)))  # another size
    (root / "other/bad.jpg").write_bytes(b"\xff\xd8 broken")  # corrupt
    with pytest.warns(UserWarning, match="skipped 1 file"):
        assert search(["lstm_weighted", "--dataset", f"imagefolder:{root}"], tmp_path, "img") == 0
    out = capsys.readouterr()
    assert "image data" in out.out and "benign 10, malign* 2, other 8" in out.out and "CxHxW 3x8x6" in out.out
    trials, md = report_of(tmp_path, "img")
    row = trials.iloc[0]
    assert row["status"] == "TERMINATED" and json.loads(row["classes"]) == ["benign", "malign", "other"]
    assert json.loads(row["minority_classes"]) == [1] and row["minority_keep"] == 1.0
    assert row["test_fraction"] == 0.2 and row["data_seed"] == 0
    assert json.loads(row["found_counts"]) == [10, 2, 8] and json.loads(row["test_counts"]) == [3, 1, 2]
    assert f"imagefolder:{root}" in md and "| malign" in md and "benign" in md


def test_search_on_train_and_test_folders_of_grey_images(ray_session, tmp_path, capsys):
    root = tmp_path / "parts"
    tree(root / "train", {"ok": 12, "crack": 4, "dent": 10}, size=(9, 9), colour=False)
    tree(root / "test", {"ok": 3, "crack": 2, "dent": 3}, size=(9, 9), colour=False, seed=1)
    assert search(["cnn_weighted", "--dataset", f"imagefolder:{root}", "--set", "minority_classes=[crack,dent]"],
                  tmp_path, "parts") == 0
    assert "CxHxW 1x9x9" in capsys.readouterr().out
    trials, md = report_of(tmp_path, "parts")
    row = trials.iloc[0]
    assert row["status"] == "TERMINATED" and json.loads(row["classes"]) == ["crack", "dent", "ok"]
    assert json.loads(row["minority_classes"]) == [0, 1] and json.loads(row["test_counts"]) == [2, 3, 3]
    assert "test_fraction" not in trials  # the test folder is the test split
    assert "| crack | yes | 4 | 2 |" in md and "| ok |  | 12 | 3 |" in md


def test_search_on_a_table_through_export_and_report(ray_session, tmp_path, capsys):
    path, _ = csv_table(tmp_path)
    with pytest.warns(UserWarning, match="dropped 2 of 40"):
        assert search(["lstm_weighted", "--dataset", f"table:{path}", "--set", "label=fraud", "--set", "model=mlp",
                       "--set", "hidden=16", "--set", "minority_classes=[yes]"], tmp_path, "tab") == 0
    assert "table data" in capsys.readouterr().out
    trials, md = report_of(tmp_path, "tab")
    row = trials.iloc[0]
    assert row["status"] == "TERMINATED" and json.loads(row["classes"]) == ["no", "yes"]
    assert json.loads(row["minority_classes"]) == [1] and row["label"] == "fraud"
    assert f"table:{path}" in md and "| yes" in md


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "table:{csv}", "--set", "label=fraud", "--set", "model=mlp", "--set", "rotation_deg=10"],
     "rotation_deg=10 rotates images: it does not apply to table data"),
    (["--dataset", "table:{csv}", "--set", "label=fraud"], "model 'lstm_mlp' cannot take feature vectors of 5 features"),
    (["--dataset", "table:{csv}"], "needs label=COLUMN"),
    (["--dataset", "imagefolder:{tmp}/nowhere"], "does not exist"),
    (["--dataset", "imagefolder:{tmp}/tree", "--set", "model=cifar_cnn"], "model 'cifar_cnn' cannot take images of shape 3x4x4"),
    (["--dataset", "imagefolder:{tmp}/tree", "--set", "minority_classes=[zebra]"], "no class named 'zebra'"),
    (["--dataset", "imagefolder:{tmp}/tree", "--set", "image_size=0"], "image_size='0' is not allowed"),
    (["--dataset", "imagefolder:{tmp}/tree", "--set", "impute=mean"], "impute='mean' is not allowed: expected one of drop, median"),
    (["--dataset", "imagefolder:{tmp}/tree", "--set", "label=fraud"], "label='fraud' applies to table:PATH data only"),
    (["--dataset", "table:{csv}", "--set", "label=fraud", "--set", "image_size=32"], "image_size='32' applies to imagefolder:PATH"),
    (["--dataset", "mnist-sample", "--set", "image_size=32"], "image_size='32' applies to imagefolder:PATH data only"),
])
@pytest.mark.filterwarnings("ignore:.*dropped 2 of 40")
def test_own_data_errors_exit_2_with_one_line_before_ray_starts(argv, message, tmp_path, capsys):
    import ray

    from tuner.search import main

    path, _ = csv_table(tmp_path)
    tree(tmp_path / "tree", {"a": 5, "b": 5}, size=(4, 4))
    was_running = ray.is_initialized()
    with pytest.raises(SystemExit) as e:
        main(["lstm_weighted", *[a.format(csv=path, tmp=tmp_path) for a in argv], "--storage-path", str(tmp_path / "runs"),
              "--data-dir", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], err
    assert ray.is_initialized() == was_running


# --- class names in the report's tables and plots ----------------------------------------------

def named_trials():
    rows = []
    for g, accs in (("unbalanced", (0.9, 0.2, 0.8)), ("weighted", (0.8, 0.6, 0.7))):
        for s in (0, 1):
            rows.append({"run": "R", "trial_id": f"{g}{s}", "status": "TERMINATED", "group": g, "seed": s,
                         "dataset": "imagefolder:/x", "classes": '["benign", "malign", "other"]', "minority_classes": "[1]",
                         **{f"acc_{c}": a for c, a in enumerate(accs)}})
    return pd.DataFrame(rows)


def test_report_tables_and_plots_name_the_classes(tmp_path, monkeypatch):
    from analysis import compare, plots, render, report

    t = named_trials()
    assert compare.class_labels(t) == {0: "benign", 1: "malign", 2: "other"}
    assert compare.class_labels(t.drop(columns="classes").assign(dataset="cifar10"))[3] == "3 cat"
    assert compare.class_labels(t.drop(columns="classes"))[3] == "3"  # MNIST digits
    r = report.Report.__new__(report.Report)
    r.doc, r.figdir = render.Doc(), tmp_path
    figures = []
    real_save = plots.save
    monkeypatch.setattr(plots, "save", lambda fig, *a, **k: figures.append(fig) or real_save(fig, *a, **k))
    r.per_class(t, "")
    md = render.markdown(r.doc, tmp_path)
    assert "| malign (minority) |" in md and "| benign |" in md
    ticks = [x.get_text() for x in figures[-1].axes[0].get_xticklabels()]
    assert ticks == ["benign", "malign\n(minority)", "other"]
    plots.confusion_plot([[3, 1, 0], [1, 1, 0], [0, 0, 2]], tmp_path, "cm", minority=[1], names=compare.class_labels(t))
    assert [x.get_text() for x in figures[-1].axes[0].get_yticklabels()] == ["benign", "malign*", "other"]


# --- the search's plan on own data: settled before Ray, resumable --------------------------------

def planned(tmp_path, *argv):
    from tuner import search

    plan = search.build_plan(search.parse_args(["lstm_weighted", *argv, "--storage-path", str(tmp_path / "runs"),
                                                "--data-dir", str(tmp_path)]))
    images = search.load_images(plan)
    search.settle_on_data(plan, images)
    return plan, images


def test_imposed_imbalance_by_name_reaches_the_split(tmp_path, capsys):
    from tuner.data import make_split

    tree(tmp_path / "t", {"ant": 20, "bee": 20, "cat": 5}, size=(4, 4))
    plan, images = planned(tmp_path, "--dataset", f"imagefolder:{tmp_path / 't'}", "--set", "imbalance={bee:0.5}",
                           "--set", "val_fraction=0.1")
    assert plan.fixed["imbalance"] == {1: 0.5} and plan.fixed["minority_classes"] == [2] and plan.fixed["minority_keep"] == 1.0
    split = make_split(images, resolve(plan.fixed))
    assert split.imbalanced_counts.tolist() == [16, 8, 4]  # found 16, 16, 4; bee halved
    assert "decoding t: 100%" in capsys.readouterr().err  # the progress bar (the first, uncached decode)
    kept, _ = planned(tmp_path, "--dataset", f"imagefolder:{tmp_path / 't'}", "--set", "minority_keep=0.5",
                      "--set", "minority_classes=[ant]")
    assert make_split(images, resolve(kept.fixed)).imbalanced_counts.tolist() == [8, 16, 4]


def test_resume_of_an_own_data_run_compares_the_settled_settings(tmp_path):
    tree(tmp_path / "t", {"ant": 20, "bee": 20, "cat": 5}, size=(4, 4))
    plan, _ = planned(tmp_path, "--dataset", f"imagefolder:{tmp_path / 't'}", "--name", "old")
    trial = tmp_path / "runs/old/trial_1"
    trial.mkdir(parents=True)
    (tmp_path / "runs/old/experiment_state-x.json").write_text("{}")
    (trial / "params.json").write_text(json.dumps({**plan.fixed, "minority_weight": 3.0, "seed": 0}))
    planned(tmp_path, "--dataset", f"imagefolder:{tmp_path / 't'}", "--name", "old", "--resume")  # the same: accepted
    with pytest.raises(ConfigError, match=r"has minority_classes=\[2\] but this command gives \[0\]"):
        planned(tmp_path, "--dataset", f"imagefolder:{tmp_path / 't'}", "--name", "old", "--resume",
                "--set", "minority_classes=[ant]")


@pytest.mark.filterwarnings("ignore:.*dropped 2 of 40")
@pytest.mark.parametrize("remedy", [
    {"minority_weight": 5.0}, {"class_weights": [1.0, 4.0]}, {"ros_target": 1.0}, {"sampling_q": 0.0},
    {"loss_fn": "focal"}, {"loss_fn": "ldam"}, {"loss_fn": "logit_adjusted"}, {"loss_fn": "balanced_softmax"},
    {"loss_fn": "cb"}, {"drw_epoch": 1}, {"remix_alpha": 1.0}, {"noise_sigma": 0.3, "augment_scope": "all"},
    {"noise_copies": [0.1, 0.2]}, {"irm_lambda": 1.0, "irm_env": "groups"},
])
def test_every_feature_vector_remedy_trains_an_mlp_on_a_table(tmp_path, remedy):
    from tuner.trainable import train

    path, _ = csv_table(tmp_path)
    history = train({"dataset": f"table:{path}", "label": "fraud", "model": "mlp", "hidden": 8, "epochs": 1,
                     "batch_size": 8, "device": "cpu", **remedy})
    last = history[-1]
    assert np.isfinite(last["train_loss"]) and 0 <= last["acc"] <= 1
    assert json.loads(last["classes"]) == ["no", "yes"] and last["found_counts"] == [24, 6]  # dropped 2; minority: yes


def test_list_says_any_experiment_runs_on_your_data(capsys):
    from tuner.search import main

    assert main(["--list"]) == 0
    assert "Any experiment runs on your own data: --dataset imagefolder:PATH" in capsys.readouterr().out
