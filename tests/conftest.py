"""Shared fixtures: a tiny synthetic dataset, made once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from paddyclf.data.synthetic import make_dataset

TEST_THREADS = 2
torch.set_num_threads(TEST_THREADS)
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub download fails at once instead of retrying

SHARED_WEIGHTS = (
    Path(__file__).resolve().parents[2] / "shared" / "weights" / "mobilenetv3_small_100.tflite_in1k.safetensors"
)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """A test (or fixture) that loads a predictor with ``threads=``, as the web app does, must not change
    later tests' numerics: every test ends with the suite's thread count."""
    yield
    torch.set_num_threads(TEST_THREADS)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """4 classes x 10 synthetic 64 px leaves: 6 train / 2 valid / 2 test each. Returns the folder."""
    root = tmp_path_factory.mktemp("tiny")
    make_dataset(root, per_class=10, size=64, fractions=(0.6, 0.2, 0.2))
    return root


def china_jpg() -> Path:
    """scikit-learn's sample photo of a temple: a real, textured photo that is not a leaf."""
    from sklearn.datasets import images

    return Path(images.__file__).parent / "china.jpg"


def tiny_args(data: Path, out: Path, *extra: str) -> list[str]:
    """Flags for a fast CPU training run on ``tiny_data``."""
    return [
        "--metadata",
        str(data / "metadata.csv"),
        "--label2id",
        str(data / "label2id.json"),
        "--image-size",
        "64",
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--num-workers",
        "0",
        "--device",
        "cpu",
        "--head-lr",
        "2e-3",
        "--base-lr",
        "1e-3",
        "--output-dir",
        str(out),
        *extra,
    ]


@pytest.fixture(scope="session")
def served_checkpoint(tiny_data, tmp_path_factory) -> Path:
    """A calibrated BoT-Linear trained on ``tiny_data``: the model the web-app tests serve."""
    from paddyclf.cli import main

    out = tmp_path_factory.mktemp("served_model")
    assert main(["train", *tiny_args(tiny_data, out)]) == 0
    return out / "MobileNetV3_Small_BoT_Linear_best.pt"


REVIEW_TOKEN = "expert-token-123"


@pytest.fixture()
def make_client(served_checkpoint, tmp_path):
    """``make(**settings)``: a TestClient of the app serving ``served_checkpoint`` (review token
    :data:`REVIEW_TOKEN`), with any ``ServeConfig`` field set; every client is closed after the test."""
    from fastapi.testclient import TestClient

    from paddyclf.serve.app import create_app
    from paddyclf.serve.config import ServeConfig

    clients = []

    def make(**settings) -> TestClient:
        model = settings.pop("model", served_checkpoint)  # None: a `registry=` and `name=` say what is served
        config = ServeConfig(model=str(model) if model else None, data_dir=str(tmp_path / "data"))
        for key, value in {"review_token": REVIEW_TOKEN, **settings}.items():
            setattr(config, key, value)
        client = TestClient(create_app(config))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture()
def client(make_client):
    return make_client()
