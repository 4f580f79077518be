"""Rebuild tuner/sample_data/mnist_sample.npz: a stratified sample of real MNIST.

500 training images per class from the MNIST training set and 200 test images per class from the
MNIST test set, drawn with a fixed seed, so the offline default and the fast tests use real digits
with a real held-out test split. Usage: python scripts/build_mnist_sample.py [--data-dir ../shared/data]
"""
import argparse
from pathlib import Path

import numpy as np
from torchvision.datasets import MNIST

OUT = Path(__file__).resolve().parents[1] / "tuner" / "sample_data" / "mnist_sample.npz"


def stratified(x, y, per_class, rng):
    idx = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in range(10)]))
    return x[idx], y[idx].astype(np.uint8)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--test-per-class", type=int, default=200)
    args = p.parse_args()
    rng = np.random.default_rng(2024)
    train = MNIST(args.data_dir, train=True, download=False)
    test = MNIST(args.data_dir, train=False, download=False)
    train_x, train_y = stratified(train.data.numpy(), train.targets.numpy(), args.train_per_class, rng)
    test_x, test_y = stratified(test.data.numpy(), test.targets.numpy(), args.test_per_class, rng)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB): {len(train_y)} train, {len(test_y)} test images")


if __name__ == "__main__":
    main()
