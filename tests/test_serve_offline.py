"""The diagnose page after one visit, with the server gone: real headless Chromium at phone size.

The page is opened once; its service worker keeps the page, the scripts, ONNX Runtime Web and the
model. Then the server *process* is stopped (and the phone loses its signal: DevTools' offline mode).
The page is reloaded from the worker's cache and diagnoses a leaf and a photo that is not a leaf in
the browser, with the verdicts `paddyclf predict` gives on the same ONNX file. The server is started
again, the phone gets its signal back, and both diagnoses reach the history exactly once, the phone's
verdict beside the server's own re-check. Also here: the same photos through the browser, `serve` and
`predict` (parity, as `paddyclf benchmark browser` measures it on real photos).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("selenium")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from paddyclf.benchmarks.browser import (  # noqa: E402
    DIAGNOSE_JS,
    agreement,
    browser_results,
    onnx_model,
    predict_results,
    serve_results,
    serving,
    wait_for_engine,
)  # fmt: skip
from paddyclf.benchmarks.chromium import chromium_paths, headless_chromium  # noqa: E402
from paddyclf.benchmarks.serve import free_port, start_server  # noqa: E402
from paddyclf.fileio import file_sha256  # noqa: E402
from paddyclf.serve.app import create_app  # noqa: E402
from paddyclf.serve.config import ServeConfig  # noqa: E402
from paddyclf.serve.offline import runtime_available  # noqa: E402

pytestmark = pytest.mark.slow  # a real browser: `make test`, not `make test-fast`
OFFLINE = {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
ONLINE = {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}


@pytest.fixture()
def driver():
    if chromium_paths() is None or not runtime_available():
        message = "needs headless Chromium (apt-get install chromium chromium-driver) and `make web-runtime`"
        if os.environ.get("PADDYCLF_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    browser = headless_chromium()
    yield browser
    browser.quit()


def non_leaf_photo() -> Path:
    from sklearn.datasets import images

    return Path(images.__file__).parent / "china.jpg"


def html_data(driver, name: str) -> str | None:
    return driver.execute_script(f"return document.documentElement.dataset.{name} ?? null")


def diagnosed_cards(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "#results .card:not(.pending)")


def card_status(card) -> str:
    return next(c.removeprefix("status-") for c in card.get_attribute("class").split() if c.startswith("status-"))


def stop(process) -> None:
    process.terminate()
    process.wait(timeout=30)


def test_after_one_visit_the_page_diagnoses_offline_and_syncs_each_diagnosis_once(
    driver, served_checkpoint, tiny_data, tmp_path
):
    port, data = free_port(), tmp_path / "data"
    url = f"http://127.0.0.1:{port}"
    leaf = sorted((tiny_data / "images" / "blast").glob("*.jpg"))[0]
    server = start_server(str(served_checkpoint), data, port, [], tmp_path / "server.log")
    try:
        driver.get(url + "/")
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: html_data(d, "engine") == "browser" and html_data(d, "offline") == "ready")
    finally:
        stop(server)  # the server process is gone, not only the network
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", OFFLINE)  # and the phone has no signal
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz")

    driver.refresh()  # the page, its scripts, the runtime and the model come from the worker's cache
    wait = WebDriverWait(driver, 120)
    wait.until(lambda d: html_data(d, "engine") == "browser")
    assert driver.execute_script("return navigator.onLine") is False
    driver.find_element(By.ID, "photo-input").send_keys(f"{leaf}\n{non_leaf_photo()}")
    wait.until(lambda d: len(diagnosed_cards(d)) == 2)
    cards = diagnosed_cards(driver)
    shown = {c.find_element(By.CSS_SELECTOR, ".file").text: c for c in cards}
    assert set(shown) == {leaf.name, "china.jpg"}
    statuses = {name: card_status(card) for name, card in shown.items()}
    wait.until(lambda d: html_data(d, "outbox") == "2")  # kept on the phone until the server is back
    assert "2" in driver.find_element(By.ID, "outbox").text

    # the verdicts are `paddyclf predict`'s on the ONNX file the server exported for browsers
    onnx = next((data / "browser").glob("*.onnx"))
    predicted = predict_results(onnx, [leaf, non_leaf_photo()])
    assert statuses == {leaf.name: predicted[0]["status"], "china.jpg": predicted[1]["status"]}

    server = start_server(str(served_checkpoint), data, port, [], tmp_path / "server2.log")
    try:
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", ONLINE)  # the signal is back: sync
        wait.until(lambda d: html_data(d, "outbox") == "0")
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card[data-id]")) == 2)
        stored = httpx.get(url + "/api/v1/diagnoses").json()
        assert stored["total"] == 2
        by_name = {item["original_name"]: item for item in stored["items"]}
        for name, status in statuses.items():
            device = by_name[name]["device"]
            assert device["status"] == status  # the phone's verdict, beside the server's re-check
            assert by_name[name]["status"] == status
            assert device["model_sha256"] == file_sha256(onnx)  # the model the phone ran
        driver.refresh()  # a later visit finds nothing left to send
        wait.until(lambda d: html_data(d, "engine") == "browser")
        driver.set_script_timeout(60)
        counts = driver.execute_async_script("window.paddyclf.syncNow().then(arguments[0])")
        assert counts == {"sent": 0, "waiting": 0, "refused": 0}
        assert httpx.get(url + "/api/v1/diagnoses").json()["total"] == 2
    finally:
        stop(server)


def large_photo(tmp_path: Path) -> Path:
    """A 1397x1920 JPEG (a phone photo's size; the case where draft decoding once made predict and serve differ)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:1920, 0:1397].astype(np.float32)
    base = np.stack([np.sin(x / (40 + 9 * c) + y / (70 + 5 * c)) for c in range(3)], axis=-1) * 80 + 120
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "large.jpg"
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    path.write_bytes(buffer.getvalue())
    return path


def test_the_browser_serve_and_predict_give_one_answer_per_photo(driver, served_checkpoint, tiny_data, tmp_path):
    """The same ONNX file in the browser, behind `serve` and in `predict`: same top-1 and verdict, probabilities
    within float32 noise (the browser's resize is Pillow's, byte for byte)."""
    from serve_helpers import photo_with_exif
    from sklearn.datasets import images

    rotated = tmp_path / "rotated.jpg"  # EXIF says "rotate 90 degrees": Pillow and the browser both do
    rotated.write_bytes(photo_with_exif((90, 60), 6))
    flower = Path(images.__file__).parent / "flower.jpg"
    photos = [*sorted((tiny_data / "images").rglob("*.jpg"))[::3], non_leaf_photo(), flower, large_photo(tmp_path)]
    photos.append(rotated)
    onnx = onnx_model(str(served_checkpoint), tmp_path)
    predicted = predict_results(onnx, photos)
    config = ServeConfig(model=str(onnx), data_dir=str(tmp_path / "data"), port=free_port())
    with serving(create_app(config), config.port) as url:
        driver.get(url + "/")
        assert wait_for_engine(driver) == "browser"
        browser = browser_results(driver, photos, DIAGNOSE_JS)
        served = serve_results(url, photos)
    for first, second in ((browser, predicted), (browser, served), (served, predicted)):
        same = agreement(first, second)
        assert same["top1_agreement"] == 1.0 and same["verdict_agreement"] == 1.0, same
        assert same["max_probability_difference"] < 1e-4, same
