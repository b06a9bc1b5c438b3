"""`serve --registry`: the champion served, swapped under load without losing a request, a broken version
refused while the old one serves on, and every diagnosis naming the version that made it."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("mlflow")
pytest.importorskip("fastapi")

from conftest import REVIEW_TOKEN  # noqa: E402
from serve_helpers import upload  # noqa: E402
from test_registry import wrong_checkpoint  # noqa: E402

from paddyclf.registry import ModelRegistry, NewVersion, PromotionRequest, promote, register_checkpoint  # noqa: E402

AUTH = {"authorization": f"Bearer {REVIEW_TOKEN}"}


def broken_checkpoint(checkpoint: Path, out: Path) -> Path:
    """A checkpoint that loads but whose classifier weights are NaN: every answer would be garbage."""
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["state_dict"]["classifier.weight"] = torch.full_like(ckpt["state_dict"]["classifier.weight"], float("nan"))
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return out


def mismatched_checkpoint(checkpoint: Path, out: Path) -> Path:
    """A checkpoint whose weights do not fit its architecture (a layer is missing): it cannot even load."""
    ckpt = torch.load(checkpoint, weights_only=True)
    del ckpt["state_dict"]["classifier.bias"]
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return out


@pytest.fixture(scope="module")
def versions(served_checkpoint, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve_registry")
    return {
        "good": served_checkpoint,
        "other": wrong_checkpoint(served_checkpoint, root / "other" / "MobileNetV3_Small_BoT_Linear_best.pt"),
        "broken": broken_checkpoint(served_checkpoint, root / "broken" / "MobileNetV3_Small_BoT_Linear_best.pt"),
        "mismatched": mismatched_checkpoint(
            served_checkpoint, root / "mismatched" / "MobileNetV3_Small_BoT_Linear_best.pt"
        ),
    }


@pytest.fixture(scope="module")
def registered(versions, tmp_path_factory) -> Path:
    """v1 good (champion, with its ONNX export), v2 another valid model, v3 NaN weights, v4 weights that do not
    fit: made once."""
    folder = tmp_path_factory.mktemp("registered") / "registry"
    store = ModelRegistry(folder)
    register_checkpoint(store, versions["good"], "rice", NewVersion())
    register_checkpoint(store, versions["other"], "rice", NewVersion(parent=1, onnx=False))
    register_checkpoint(store, versions["broken"], "rice", NewVersion(parent=1, onnx=False))
    register_checkpoint(store, versions["mismatched"], "rice", NewVersion(parent=1, onnx=False))
    return folder


@pytest.fixture()
def registry(registered, tmp_path) -> ModelRegistry:
    """The test's own copy of :func:`registered`'s database (which aliases point where), sharing its
    artifact files, which nothing here writes: the database records their absolute URIs."""
    (tmp_path / "registry").mkdir()
    shutil.copyfile(registered / "mlflow.db", tmp_path / "registry" / "mlflow.db")
    return ModelRegistry(tmp_path / "registry")


def make_champion(registry: ModelRegistry, version: int, tmp_path: Path) -> None:
    promote(registry, "rice", PromotionRequest(version, force=True, reason="test", output_dir=tmp_path / "gate"))


@pytest.fixture()
def photos(tiny_data) -> list[bytes]:
    return [p.read_bytes() for p in sorted((tiny_data / "images").rglob("*.jpg"))[:12]]


def test_swap_under_load_loses_no_request_and_each_reply_names_its_version(make_client, registry, photos, tmp_path):
    client = make_client(model=None, registry=str(registry.target), name="rice")
    assert client.get("/api/v1/model").json()["version"] == "rice/v1"
    old_browser_model = client.get("/browser/model.json").json()["sha256"]
    replies, failures, stop = [], [], threading.Event()

    def post(k: int) -> None:
        while not stop.is_set():
            started = time.monotonic()
            response = client.post("/api/v1/diagnose", files=[upload(f"{k}.jpg", photos[k % len(photos)])])
            (replies if response.status_code == 200 else failures).append((started, response))

    clients = [threading.Thread(target=post, args=(k,)) for k in range(8)]
    for thread in clients:
        thread.start()
    time.sleep(1.0)
    make_champion(registry, 2, tmp_path)
    swap = client.post("/api/v1/model/reload", headers=AUTH)
    swapped_at = time.monotonic()
    time.sleep(1.0)
    stop.set()
    for thread in clients:
        thread.join()
    assert swap.status_code == 200 and swap.json()["status"] == "swapped", swap.text
    assert (swap.json()["from"], swap.json()["version"]) == ("rice/v1", "rice/v2")
    assert failures == []
    served = [(at, r.json()["results"][0]["model_version"]) for at, r in replies]
    assert {v for _, v in served} == {"rice/v1", "rice/v2"}
    # a request that began after the swap returned is answered by the new version
    after = [v for at, v in served if at > swapped_at]
    assert after and all(v == "rice/v2" for v in after)
    # the history holds each reply's version, and filters by it
    for _, r in replies[::10]:
        item = r.json()["results"][0]
        assert client.get(f"/api/v1/diagnoses/{item['id']}").json()["model_version"] == item["model_version"]
    v1 = client.get("/api/v1/diagnoses", params={"model_version": "rice/v1", "per_page": 100}).json()
    assert v1["total"] == sum(v == "rice/v1" for _, v in served)
    assert {d["model_version"] for d in v1["items"]} == {"rice/v1"}
    page = client.get("/history", params={"model_version": "rice/v2", "lang": "vi"}).text
    assert "rice/v2" in page and 'name="model_version"' in page
    assert client.get("/healthz").json()["model_version"] == "rice/v2"
    # the page's model follows: model.json names the new file, and the old file's URL says it is gone
    new_browser_model = client.get("/browser/model.json").json()["sha256"]
    assert new_browser_model != old_browser_model
    assert client.get(f"/browser/model.onnx?sha256={old_browser_model}").status_code == 404
    assert client.post("/api/v1/model/reload", headers=AUTH).json()["status"] == "unchanged"


def test_a_broken_version_is_refused_and_the_old_one_serves_on(make_client, registry, photos, tmp_path):
    client = make_client(model=None, registry=str(registry.target), name="rice")
    make_champion(registry, 3, tmp_path)
    refused = client.post("/api/v1/model/reload", headers=AUTH)
    assert refused.status_code == 409
    assert "not finite" in refused.json()["error"] and "rice/v1 keeps serving" in refused.json()["error"]
    assert client.get("/api/v1/model").json()["version"] == "rice/v1"
    make_champion(registry, 4, tmp_path)
    refused = client.post("/api/v1/model/reload", headers=AUTH)
    assert refused.status_code == 409 and "classifier.bias" in refused.json()["error"]
    reply = client.post("/api/v1/diagnose", files=[upload("a.jpg", photos[0])])
    assert reply.status_code == 200 and reply.json()["results"][0]["model_version"] == "rice/v1"


def test_a_retiring_model_waits_for_its_last_request_and_is_never_held_again():
    from paddyclf.serve.batching import DynamicBatcher
    from paddyclf.serve.served_model import ModelSource, ServedModel

    batcher = DynamicBatcher(lambda images: [], 1, 0.0)
    model = ServedModel(ModelSource(Path("model.pt")), "sha", None, lambda image: image, batcher)
    with model.in_use() as held:
        assert held is model
        retiring = threading.Thread(target=model.retire)
        retiring.start()
        time.sleep(0.2)
        assert retiring.is_alive() and not batcher.closed  # the request that holds it is not cut off
        with model.in_use() as late:
            assert late is None  # a request that read the old reference takes the new model instead
    retiring.join(timeout=10)
    assert not retiring.is_alive() and batcher.closed


def test_reload_needs_the_token_and_a_registry(make_client, registry):
    client = make_client(model=None, registry=str(registry.target), name="rice")
    assert client.post("/api/v1/model/reload").status_code == 401
    from_file = make_client()
    answer = from_file.post("/api/v1/model/reload", headers=AUTH)
    assert answer.status_code == 409 and "serves a file" in answer.json()["error"]


def test_serve_needs_either_a_model_or_a_registry_with_a_name(tmp_path, capsys):
    from paddyclf.cli import main

    assert main(["serve", "--data-dir", str(tmp_path)]) == 2
    assert "either --model FILE or --registry" in capsys.readouterr().err
    assert main(["serve", "--registry", str(tmp_path / "r"), "--data-dir", str(tmp_path)]) == 2
    assert "--registry and --name go together" in capsys.readouterr().err


def test_sighup_swaps_in_the_champion_of_a_one_process_server(make_client, registry, tmp_path):
    """The app's lifespan in the main thread, as uvicorn runs it: SIGHUP reloads (no server process needed)."""
    import asyncio

    client = make_client(model=None, registry=str(registry.target), name="rice")
    app, service = client.app, client.app.state.service
    make_champion(registry, 2, tmp_path)

    async def hang_up() -> str | None:
        async with app.router.lifespan_context(app):  # installs the SIGHUP handler in this (main) thread
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(300):
                if service.served.version == "rice/v2":
                    break
                await asyncio.sleep(0.1)
            return service.served.version

    previous = signal.getsignal(signal.SIGHUP)
    try:
        assert asyncio.run(hang_up()) == "rice/v2"
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_with_several_workers_a_reload_asks_uvicorn_for_its_rolling_restart(make_client, registry, monkeypatch):
    """With --workers N the reload is uvicorn's own SIGHUP (each new worker loads and checks the champion
    before an old one stops), and serve gives a worker the time that takes."""
    import paddyclf.serve.app as app_module
    import paddyclf.serve.server as server_module

    signals = []
    monkeypatch.setattr(app_module.os, "kill", lambda pid, sig: signals.append((pid, sig)))
    client = make_client(model=None, registry=str(registry.target), name="rice", workers=2)
    answer = client.post("/api/v1/model/reload", headers=AUTH)
    assert answer.json() == {"status": "restarting", "version": "rice/v1"}
    assert signals == [(os.getppid(), signal.SIGHUP)]  # to uvicorn's supervisor, the workers' parent

    from paddyclf.serve.app import SETTINGS_ENVIRONMENT_VARIABLE

    started = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **options: started.update(options, app=app))
    monkeypatch.setenv(SETTINGS_ENVIRONMENT_VARIABLE, "")  # serve() hands the workers their settings here
    config = client.app.state.service.config
    server_module.serve(dataclasses.replace(config, data_dir=str(Path(config.data_dir).parent / "other")))
    assert started["workers"] == 2 and started["timeout_worker_healthcheck"] == server_module.WORKER_READY_TIMEOUT_S
