import numpy as np
import pytest
from PIL import Image

from tuner.config import resolve
from tuner.data import keep_fractions, load_dataset, long_tail, make_split
from tuner.errors import ConfigError

STUDY = {"minority_classes": [0, 1, 2, 3, 4], "minority_keep": 0.1, "data_seed": 0, "val_fraction": 0.1, "imbalance": None}


def test_full_mnist_imbalance_counts(shared_data):
    images = load_dataset("mnist", shared_data, download=False)
    split = make_split(images, STUDY)
    # floor(0.1 * n) of each minority class, majority classes untouched
    assert split.imbalanced_counts.tolist() == [592, 674, 595, 613, 584, 5421, 5918, 6265, 5851, 5949]
    assert len(images.test_y) == 10_000  # the test set is never altered
    assert np.bincount(images.test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_validation_split_is_stratified_and_disjoint(sample_images):
    split = make_split(sample_images, STUDY)
    assert not set(split.train_idx) & set(split.val_idx)
    val_counts = sample_images.class_counts(split.val_idx)
    # 10% of 50 minority images = 5, of 500 majority = 50 per class
    assert val_counts.tolist() == [5] * 5 + [50] * 5
    assert (split.counts + val_counts).tolist() == split.imbalanced_counts.tolist()
    # a different data seed picks a different subset, the same seed the same one
    assert np.array_equal(make_split(sample_images, STUDY).train_idx, split.train_idx)
    assert not np.array_equal(make_split(sample_images, {**STUDY, "data_seed": 1}).train_idx, split.train_idx)


def test_tiny_classes_keep_a_few_validation_images(sample_images):
    split = make_split(sample_images, {**STUDY, "minority_keep": 0.02})  # 10 images per minority class
    assert sample_images.class_counts(split.val_idx)[:5].tolist() == [3] * 5


def test_imbalance_profiles(sample_images):
    fracs = keep_fractions({**STUDY, "imbalance": {"3": 0.5, 7: 0.2}})
    assert fracs[3] == 0.5 and fracs[7] == 0.2 and fracs[0] == 1.0
    split = make_split(sample_images, {**STUDY, "imbalance": {3: 0.5, 7: 0.2}})
    assert split.imbalanced_counts.tolist() == [500, 500, 500, 250, 500, 500, 500, 100, 500, 500]
    lt = long_tail(0.01)
    assert lt[0] == 1.0 and lt[9] == pytest.approx(0.01) and all(lt[c] > lt[c + 1] for c in range(9))
    split = make_split(sample_images, {**STUDY, "imbalance": "long_tail:0.01"})
    assert split.imbalanced_counts[0] == 500 and split.imbalanced_counts[9] == 5


def test_empty_class_after_imbalance_is_a_clear_error(sample_images):
    with pytest.raises(ConfigError, match="class 3 has 0 training image"):
        make_split(sample_images, {**STUDY, "imbalance": {3: 0.001}})


def test_fallback_to_the_shipped_sample_only_when_asked(tmp_path):
    with pytest.warns(UserWarning, match="falling back to the shipped 'mnist-sample'"):
        images = load_dataset("mnist", tmp_path, download=False, fallback=True)
    assert images.name == "mnist-sample" and images.train_x.shape == (5000, 1, 28, 28)
    with pytest.raises(ConfigError, match="dataset 'mnist' unavailable"):
        load_dataset("mnist", tmp_path, download=False, fallback=False)
    with pytest.raises(ConfigError, match="unknown dataset 'mnits': choose one of"):
        load_dataset("mnits")


def test_data_dir_from_environment(tmp_path, monkeypatch):
    from tuner.data import resolve_data_dir

    monkeypatch.setenv("TUNER_DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    assert resolve_data_dir("/x") == __import__("pathlib").Path("/x")


def test_cifar10_image_folder_is_decoded_once_and_cached(tmp_path):
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for c in classes:
            (tmp_path / "cifar10" / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                    tmp_path / "cifar10" / split / c / f"{i}.png")
    images = load_dataset("cifar10", tmp_path, download=False)
    assert images.train_x.shape == (30, 3, 32, 32) and images.train_x.dtype == np.uint8
    assert images.class_counts().tolist() == [3] * 10 and images.classes[0] == "airplane"
    first = np.asarray(Image.open(tmp_path / "cifar10/train/airplane/0.png")).transpose(2, 0, 1)
    assert np.array_equal(images.train_x[0], first)
    assert (tmp_path / "cifar10" / "cache-train.npz").exists()
    (tmp_path / "cifar10/train/airplane/0.png").unlink()  # the cache is used, not the images
    again = load_dataset("cifar10", tmp_path, download=False)
    assert np.array_equal(again.train_x, images.train_x)


@pytest.mark.parametrize("bad, message", [
    ({"model": "resnet"}, "unknown model 'resnet'"),
    ({"dataset": "svhn"}, "unknown dataset 'svhn'"),
    ({"loss_fn": "hinge"}, "unknown remedy loss_fn='hinge'"),
    ({"minority_classes": [0, 12]}, "minority_classes=[0, 12] is not allowed: expected a list of class labels in 0-9"),
    ({"minority_keep": 0.0}, "minority_keep=0.0 is not allowed: expected a fraction in (0, 1]"),
    ({"minority_keep": 1.5}, "minority_keep=1.5 is not allowed"),
    ({"minority_weight": 0}, "minority_weight=0.0 is not allowed: expected a number > 0"),
    ({"noise_sigma": -0.1}, "noise_sigma=-0.1 is not allowed: expected a number >= 0"),
    ({"rotation_deg": -5}, "rotation_deg=-5.0 is not allowed"),
    ({"lr": "fast"}, "lr='fast' has the wrong type: expected float"),
    ({"colour": 1}, "unknown setting 'colour'"),
    ({"imbalance": {11: 0.5}}, "class labels in 0-9"),
])
def test_bad_settings_give_one_clear_line(bad, message):
    with pytest.raises(ConfigError) as err:
        resolve(bad)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_data_seed_can_follow_the_trial_seed(sample_images):
    """data_seed='seed': each seed keeps other images (so CIs over seeds cover that choice); the same
    seed keeps the same ones. The default (0) keeps the same images for every seed, as before."""
    def kept(**cfg):
        return make_split(sample_images, resolve({"dataset": "mnist-sample", **cfg})).train_idx

    assert np.array_equal(kept(seed=1, data_seed="seed"), kept(seed=1, data_seed="seed"))
    assert not np.array_equal(kept(seed=1, data_seed="seed"), kept(seed=2, data_seed="seed"))
    assert np.array_equal(kept(seed=2, data_seed="seed"), kept(seed=7, data_seed=2))
    assert np.array_equal(kept(seed=1), kept(seed=2))  # default: data_seed 0 whatever the seed
    assert resolve({"seed": 3, "data_seed": "seed"})["data_seed"] == 3 and resolve({"data_seed": "4"})["data_seed"] == 4


@pytest.mark.parametrize("cfg, message", [
    ({"data_seed": "trial"}, "data_seed='trial' is not allowed: expected an integer >= 0 or 'seed' (the trial's seed)"),
    ({"data_seed": -1}, "data_seed=-1 is not allowed: expected an integer >= 0 or 'seed'"),
    ({"data_seed": "seed", "dataset": "table:/x.csv"}, "data_seed='seed' applies to the built-in datasets"),
])
def test_data_seed_refusals(cfg, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve(cfg)


def test_data_seed_from_the_command_line():
    from tuner.search import parse_sets

    assert parse_sets(["data_seed=seed", "seed=2"]) == {"data_seed": "seed", "seed": 2}
    assert parse_sets(["data_seed=5"]) == {"data_seed": 5}  # an integer, as before


def _write_idx(path, array: np.ndarray) -> None:
    # the IDX layout written by hand: zero, zero, 0x08 (unsigned bytes), the number of dimensions,
    # each dimension as a big-endian int32, then the bytes
    import struct

    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_is_read_from_its_idx_files_without_torchvision(tmp_path):
    import subprocess
    import sys

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)), "train-labels-idx1-ubyte": np.arange(12) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)), "t10k-labels-idx1-ubyte": np.array([3, 1, 4, 1, 5])}
    for name, array in arrays.items():
        _write_idx(raw / name, array)
    images = load_dataset("mnist", tmp_path, download=False)
    assert images.train_x.shape == (12, 1, 28, 28) and images.train_x.dtype == np.uint8
    assert np.array_equal(images.train_x[:, 0], arrays["train-images-idx3-ubyte"])
    assert images.train_y.tolist() == (np.arange(12) % 10).tolist() and images.train_y.dtype == np.int64
    assert np.array_equal(images.test_x[:, 0], arrays["t10k-images-idx3-ubyte"]) and images.test_y.tolist() == [3, 1, 4, 1, 5]
    assert images.train_x.flags.writeable
    # torchvision (and the torch._dynamo its import pulls in, about 1 s) only downloads
    code = f"import sys; from tuner.data import load_dataset; load_dataset('mnist', {str(tmp_path)!r}, download=False); " \
           "print('torchvision' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False"]


def test_a_truncated_or_foreign_mnist_file_is_named(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, shape in (("train-images-idx3-ubyte", (4, 28, 28)), ("train-labels-idx1-ubyte", (4,)),
                        ("t10k-images-idx3-ubyte", (2, 28, 28)), ("t10k-labels-idx1-ubyte", (2,))):
        _write_idx(raw / name, np.zeros(shape))
    images_file = raw / "train-images-idx3-ubyte"
    images_file.write_bytes(images_file.read_bytes()[:-100])
    with pytest.raises(ConfigError, match=r"train-images-idx3-ubyte: 3036 values for the shape \(4, 28, 28\)"):
        load_dataset("mnist", tmp_path, download=False)
    images_file.write_bytes(b"\x1f\x8b\x08\x00" + bytes(100))  # a gzip file under the uncompressed name
    with pytest.raises(ConfigError, match="train-images-idx3-ubyte is not an IDX file of unsigned bytes"):
        load_dataset("mnist", tmp_path, download=False)


def test_full_mnist_read_directly_equals_torchvisions_reading(shared_data):
    from torchvision.datasets import MNIST

    images = load_dataset("mnist", shared_data, download=False)
    for train, x, y in ((True, images.train_x, images.train_y), (False, images.test_x, images.test_y)):
        tv = MNIST(root=str(shared_data), train=train, download=False)
        assert np.array_equal(tv.data.numpy(), x[:, 0]) and np.array_equal(tv.targets.numpy(), y)
