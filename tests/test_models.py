import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from tuner.models import MODELS, OPTIONS, build_model, count_parameters, model_bytes

MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)
TINY_VGG = {"vgg_variant": "tiny", "pretrained": False}


def conv(c_in, c_out, k=3):
    return c_out * c_in * k * k + c_out


def dense(n_in, n_out):
    return n_in * n_out + n_out


def rnn(n_in, hidden, gates=1):
    # weight_ih, weight_hh, bias_ih, bias_hh, one set per gate
    return gates * (hidden * n_in + hidden * hidden + 2 * hidden)


# Parameter counts on MNIST worked out by hand from each layer's shape.
HAND_COUNTS = {
    "elman": rnn(28, 128) + dense(128, 10),  # 20224 + 1290
    "lstm": rnn(28, 128, gates=4) + dense(128, 10),  # 80896 + 1290
    "lstm2": rnn(28, 100, gates=4) + rnn(100, 100, gates=4) + dense(100, 10),
    "lstm_mlp": rnn(28, 64, gates=4) + dense(28, 512) + dense(512, 10),
    "cnn": conv(1, 32) + conv(32, 32) + dense(32 * 14 * 14, 256) + dense(256, 10),
    # 28 -> 14 -> 7 -> 3 after three pools
    "cifar_cnn": conv(1, 32) + conv(32, 64) + conv(64, 128)
    + dense(128 * 3 * 3, 256) + dense(256, 128) + dense(128, 10),
    "vgg": conv(3, 16) + conv(16, 32) + conv(32, 64) + dense(64, 256) + dense(256, 10),
    # defaults hidden=128, layers=2, on the flattened 784 pixels
    "mlp": dense(784, 128) + dense(128, 128) + dense(128, 10),
}


def test_hand_counts_match_spec_numbers():
    assert HAND_COUNTS["elman"] == 21514
    assert HAND_COUNTS["lstm"] == 82186
    assert HAND_COUNTS["lstm2"] == 133810
    assert HAND_COUNTS["lstm_mlp"] == 44042
    assert HAND_COUNTS["cnn"] == 1618026


def test_every_registered_model_is_covered():
    # the digit_pairs models (registered by tuner.pairs) are counted by hand in tests/test_pairs.py
    assert {m for m in MODELS if not m.startswith("pairs_")} == set(HAND_COUNTS)


@pytest.mark.parametrize("name", sorted(HAND_COUNTS))
def test_parameter_count(name):
    model = build_model(name, MNIST, options=TINY_VGG)
    assert count_parameters(model) == HAND_COUNTS[name]


def test_count_parameters_skips_frozen():
    model = build_model("cnn", MNIST)
    model[0].requires_grad_(False)
    assert count_parameters(model) == HAND_COUNTS["cnn"] - conv(1, 32)


@pytest.mark.parametrize("name", sorted(HAND_COUNTS))
@pytest.mark.parametrize("shape", [MNIST, CIFAR])
def test_forward_shape(name, shape):
    torch.manual_seed(0)
    model = build_model(name, shape, num_classes=7, options=TINY_VGG).eval()
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [MNIST, CIFAR])
def test_vgg16_random_init_forward(shape):
    # 28 px MNIST would vanish after vgg16's five pools without the upsampling.
    model = build_model("vgg", shape, options={"pretrained": False}).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 10)
    assert sum(isinstance(m, nn.Conv2d) for m in model.features) == 13


def test_unknown_model_message():
    with pytest.raises(ValueError) as err:
        build_model("foo", MNIST)
    message = str(err.value)
    assert message.startswith("unknown model 'foo': choose one of cifar_cnn, cnn, elman, ")
    assert "\n" not in message


def test_unknown_vgg_variant():
    with pytest.raises(ValueError, match="vgg_variant"):
        build_model("vgg", CIFAR, options={"vgg_variant": "vgg99"})


def test_options_default_and_unrelated_keys():
    assert OPTIONS == {"final_relu": False, "pretrained": True, "vgg_variant": "vgg16", "hidden": 128, "layers": 2}
    config = {"lr": 0.1, "sampler": "oversample", "vgg_variant": "tiny", "pretrained": False}
    assert count_parameters(build_model("vgg", MNIST, options=config)) == HAND_COUNTS["vgg"]


def test_final_relu_clamps_logits():
    x = torch.randn(64, *MNIST)
    torch.manual_seed(0)
    plain = build_model("lstm_mlp", MNIST).eval()
    torch.manual_seed(0)
    clamped = build_model("lstm_mlp", MNIST, options={"final_relu": True}).eval()
    with torch.no_grad():
        a, b = plain(x), clamped(x)
    assert (a < 0).any()
    assert (b >= 0).all()
    assert torch.equal(b, a.clamp(min=0))  # same weights, only the ReLU differs


def test_vgg_pretrained_offline_error(monkeypatch):
    seen = {}

    def offline_vgg16(*, weights=None, **kwargs):
        seen["weights"] = weights
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models, "vgg16", offline_vgg16)
    with pytest.raises(RuntimeError) as err:
        build_model("vgg", CIFAR, options={"pretrained": True})
    assert seen["weights"] is torchvision.models.VGG16_Weights.IMAGENET1K_V1
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("could not load ImageNet weights for vgg (")
    assert "Temporary failure in name resolution" in message
    assert message.endswith("; set pretrained=false to train from random initialisation")


def test_tiny_vgg_ignores_pretrained(monkeypatch):
    monkeypatch.setattr(torchvision.models, "vgg16", None)  # must not be called
    build_model("vgg", CIFAR, options={"vgg_variant": "tiny", "pretrained": True})


@pytest.mark.parametrize("name", ["elman", "lstm", "cnn", "cifar_cnn"])
def test_model_bytes_float32(name):
    model = build_model(name, CIFAR)
    assert list(model.buffers()) == []
    assert model_bytes(model) == 4 * count_parameters(model)


def test_model_bytes_counts_buffers_and_dtype():
    model = nn.BatchNorm1d(8)  # 16 params + running_mean/var (8 each) + num_batches_tracked (int64)
    assert model_bytes(model) == 4 * 16 + 4 * 16 + 8
    assert model_bytes(nn.Linear(3, 2).double()) == 8 * 8


@pytest.mark.parametrize("name", sorted(HAND_COUNTS))
def test_same_seed_same_weights(name):
    def weights(seed):
        torch.manual_seed(seed)
        return build_model(name, CIFAR, options=TINY_VGG).state_dict()

    first, second, other = weights(1), weights(1), weights(2)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
