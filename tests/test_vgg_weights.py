"""vgg_weights=PATH (issue 16 item 8): ImageNet VGG16 feature weights from a local file, checked by sha256
against torchvision's published hash prefix, loaded with weights_only=True; ImageNet normalisation for the
pretrained VGG16; a missing or wrong file is one line and exit 2 before Ray starts. The real file cannot be
downloaded here (offline): the tests build a VGG16-shaped state dict and point the expected prefix at it."""
import hashlib

import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.vgg import cfgs, make_layers

from tuner import models
from tuner.config import resolve
from tuner.data import Images, Split
from tuner.device_data import DeviceData
from tuner.errors import ConfigError
from tuner.search import main

CIFAR = (3, 32, 32)


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory):
    """torchvision's vgg16 state dict layout (features.* and classifier.*), random values, ~59 MB."""
    torch.manual_seed(123)
    features = make_layers(cfgs["D"])
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(4, 4)  # the real file's head is ignored
    path = tmp_path_factory.mktemp("w") / "vgg16-fake.pth"
    torch.save(state, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), state


@pytest.fixture
def trust(monkeypatch):
    """Make the expected sha256 prefix that of a given file (the success path of the hash check)."""
    def to(path):
        models._VERIFIED.clear()
        monkeypatch.setattr(models, "vgg16_sha256_prefix", lambda: hashlib.sha256(path.read_bytes()).hexdigest()[:8])
    yield to
    models._VERIFIED.clear()


def test_the_expected_prefix_is_torchvisions():
    assert torchvision.models.VGG16_Weights.IMAGENET1K_V1.url.endswith("/vgg16-397923af.pth")
    assert models.vgg16_sha256_prefix() == "397923af"


def test_the_weights_land_in_the_feature_layers(fake_weights, trust):
    path, _, state = fake_weights
    trust(path)
    assert resolve({"model": "vgg", "vgg_weights": str(path)})["vgg_weights"] == str(path)
    torch.manual_seed(0)
    model = models.build_model("vgg", CIFAR, options={"vgg_weights": str(path)})
    got = model.features.state_dict()
    assert set(got) == {k.removeprefix("features.") for k in state if k.startswith("features.")}
    assert all(torch.equal(got[k], state[f"features.{k}"]) for k in got)
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_a_checked_file_is_read_once_per_process(fake_weights, trust, monkeypatch):
    path, _, _ = fake_weights
    trust(path)
    assert models.check_vgg_weights(str(path)) is None
    monkeypatch.setattr(torch, "load", None)  # a second check must not load (nor hash) the file again
    for _ in range(3):
        resolve({"model": "vgg", "vgg_weights": str(path)})


def test_a_file_with_another_hash_is_refused(fake_weights):
    path, digest, _ = fake_weights
    models._VERIFIED.clear()
    with pytest.raises(ConfigError) as e:
        resolve({"model": "vgg", "vgg_weights": str(path)})
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"vgg_weights={str(path)!r} is not allowed")
    assert f"its sha256 starts {digest[:8]}, not 397923af as torchvision's VGG16_Weights.IMAGENET1K_V1" in message
    with pytest.raises(RuntimeError, match="could not load vgg_weights=.*its sha256 starts"):
        models.build_model("vgg", CIFAR, options={"vgg_weights": str(path)})


@pytest.mark.parametrize("content, reason", [
    (b"not a pickle at all", "it is not a PyTorch state dict that loads with weights_only=True"),
    ([torch.zeros(1)], "it is not a state dict of tensors (found list)"),
    ({"0.weight": torch.zeros(64, 3, 3, 3)}, "it has no VGG16 feature weights: missing features.0.weight"),
    ({**{f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()},
      "features.0.weight": torch.zeros(64, 1, 3, 3)},
     "it is not VGG16: features.0.weight has shape (64, 1, 3, 3), VGG16's is (64, 3, 3, 3)"),
])
def test_wrong_files_are_refused_with_one_line(tmp_path, trust, content, reason):
    path = tmp_path / "w.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    trust(path)  # the hash matches: the content is what is wrong
    with pytest.raises(ConfigError) as e:
        resolve({"model": "vgg", "vgg_weights": str(path)})
    assert reason in str(e.value) and "\n" not in str(e.value)


def test_vgg_weights_need_the_pretrained_vgg16(fake_weights, trust):
    path, _, _ = fake_weights
    trust(path)
    with pytest.raises(ConfigError, match="applies to the pretrained VGG16 only"):
        resolve({"model": "vgg", "vgg_variant": "tiny", "vgg_weights": str(path)})
    resolve({"model": "cifar_cnn", "vgg_weights": str(path)})  # a study's other arms: unused, accepted


def test_the_missing_file_stops_the_cli_with_one_line_before_ray(tmp_path, capsys, monkeypatch):
    import ray

    was_running = ray.is_initialized()

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "init", no_ray)
    with pytest.raises(SystemExit) as e:
        main(["cifar_vgg", "--budget", "paper", "--set", f"vgg_weights={tmp_path / 'vgg16-397923af.pth'}",
              "--storage-path", str(tmp_path)])
    assert e.value.code == 2 and ray.is_initialized() == was_running
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vgg_weights=" in err and "there is no such file" in err
    assert not any(tmp_path.glob("cifar_vgg*"))  # no run folder either


def test_the_pretrained_vgg16_is_normalised_with_imagenet_statistics():
    rgb = Images("x", np.zeros((4, 3, 8, 8), np.uint8), np.arange(4) % 2, np.zeros((2, 3, 8, 8), np.uint8),
                 np.arange(2), (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), classes=("a", "b"))
    split = Split(np.arange(4), np.arange(0), np.array([2, 2]), np.array([2, 2]))

    def stats(**cfg):
        dd = DeviceData(rgb, split, torch.device("cpu"), resolve({"dataset": "mnist-sample", **cfg}))
        return dd.mean.flatten().tolist(), dd.std.flatten().tolist()

    imagenet = (pytest.approx(list(models.IMAGENET_MEAN)), pytest.approx(list(models.IMAGENET_STD)))
    assert stats(model="vgg") == imagenet  # pretrained VGG16 (a download or vgg_weights)
    data = (pytest.approx([0.49, 0.48, 0.45]), pytest.approx([0.25, 0.24, 0.26]))
    assert stats(model="vgg", pretrained=False) == data and stats(model="vgg", vgg_variant="tiny") == data
    assert stats(model="cifar_cnn") == data
    plain = DeviceData(rgb, split, torch.device("cpu"))  # without the config: the data's own, as before
    assert plain.mean.flatten().tolist() == pytest.approx([0.49, 0.48, 0.45])
