"""`paddyclf serve` in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`, via selenium).

Opens the diagnose page at a phone viewport (390 x 844), a small phone (360 x 740) and a desktop one,
uploads a leaf and a photo that is not a leaf, reads the cards and their verdicts, toggles Grad-CAM, then
opens History and reviews a photo with the token. Screenshots go to the test's folder, and to $PADDYCLF_SCREENSHOTS when
set. docs/serve_phone.png, shown in the README, is this test's phone screenshot with a model trained on
real photos: PADDYCLF_SCREENSHOTS=docs PADDYCLF_BROWSER_MODEL=<rice5 .pt> PADDYCLF_BROWSER_LEAF=<a photo>
(any model file works; an export has no Grad-CAM button).
`.ci/run` installs the browser; elsewhere the test skips without it unless $PADDYCLF_REQUIRE_BROWSER is set.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from conftest import china_jpg  # noqa: E402
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from paddyclf.benchmarks.serve import free_port  # noqa: E402
from paddyclf.serve.app import create_app  # noqa: E402
from paddyclf.serve.config import ServeConfig  # noqa: E402

pytestmark = pytest.mark.slow  # a real browser: `make test`, not `make test-fast`
TOKEN = "browser-review-token"
VIEWPORTS = {"phone": (390, 844, True), "small_phone": (360, 740, True), "desktop": (1280, 900, False)}
# where the photos are diagnosed: the phones run the model (ONNX Runtime Web); the desktop plays an old
# browser without WebAssembly, whose page uploads each photo to the server
ENGINES = {"phone": "browser", "small_phone": "browser", "desktop": "server"}
NO_WEBASSEMBLY = "delete window.WebAssembly;"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def serves_checkpoint() -> bool:
    return Path(os.environ.get("PADDYCLF_BROWSER_MODEL") or "checkpoint.pt").suffix == ".pt"


@pytest.fixture(scope="module")
def server(served_checkpoint, tmp_path_factory):
    """The app under uvicorn on loopback, in a thread of this process."""
    data = tmp_path_factory.mktemp("browser_data")
    model = os.environ.get("PADDYCLF_BROWSER_MODEL") or str(served_checkpoint)
    config = ServeConfig(model=model, data_dir=str(data), review_token=TOKEN, port=free_port())
    uv = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=config.port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{config.port}"
    deadline = time.monotonic() + 60
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert uv.started, "the server did not start"
    yield url
    uv.should_exit = True
    thread.join(timeout=30)


@pytest.fixture()
def browser_factory():
    if not (CHROMIUM and CHROMEDRIVER):
        message = "headless Chromium is missing: apt-get install chromium chromium-driver (.ci/run does)"
        if os.environ.get("PADDYCLF_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def make(width: int, height: int, mobile: bool):
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
            options.add_argument(flag)
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.quit()


def save(driver, name: str, folder: Path) -> None:
    """The viewport as the user sees it (NAME.png) and the whole page at that width (NAME_full.png)."""
    import base64

    full = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    paths = [folder / f"{name}.png", folder / f"{name}_full.png"]
    driver.save_screenshot(str(paths[0]))
    paths[1].write_bytes(base64.b64decode(full["data"]))
    for path in paths:
        assert path.stat().st_size > 5000  # a real rendering, not a blank page
        if os.environ.get("PADDYCLF_SCREENSHOTS"):
            target = Path(os.environ["PADDYCLF_SCREENSHOTS"])
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target / path.name)


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_diagnose_and_review_in_a_real_browser(server, browser_factory, tiny_data, tmp_path, viewport):
    width, height, mobile = VIEWPORTS[viewport]
    driver = browser_factory(width, height, mobile)
    wait = WebDriverWait(driver, 60)
    leaf = Path(os.environ.get("PADDYCLF_BROWSER_LEAF") or sorted((tiny_data / "images").rglob("*.jpg"))[0])

    if ENGINES[viewport] == "server":
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": NO_WEBASSEMBLY})
    driver.get(server + "/")
    assert driver.execute_script("return window.innerWidth") == width
    wait.until(lambda d: d.execute_script("return document.documentElement.dataset.engine") == ENGINES[viewport])
    photo_input = driver.find_element(By.ID, "photo-input")
    assert photo_input.get_attribute("capture") == "environment" and photo_input.get_attribute("multiple")
    photo_input.send_keys(f"{leaf}\n{china_jpg()}")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card:not(.pending)")) == 2)
    # diagnosed on the phone, then sent to the server's history: the card gets its number
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card[data-id]")) == 2)
    cards = driver.find_elements(By.CSS_SELECTOR, "#results .card")
    assert [card.find_element(By.CSS_SELECTOR, ".file").text for card in cards] == [leaf.name, "china.jpg"]
    for card in cards:
        assert card.find_element(By.CSS_SELECTOR, ".badge").text.strip()
        assert card.find_element(By.CSS_SELECTOR, ".verdict strong").text.strip()
        assert len(card.find_elements(By.CSS_SELECTOR, ".top-k li progress")) == 3
    china = next(c for c in cards if c.find_element(By.CSS_SELECTOR, ".file").text == "china.jpg")
    if "status-ok" not in china.get_attribute("class"):  # photo tips instead of an answer
        assert china.find_elements(By.CSS_SELECTOR, ".tips li")
    # Grad-CAM for a checkpoint: the thumbnail swaps for the overlay and back (an export has no button)
    card = cards[0]
    img = card.find_element(By.CSS_SELECTOR, "img")
    if not serves_checkpoint():
        assert not card.find_elements(By.CSS_SELECTOR, ".toggle-gradcam")
    else:
        card.find_element(By.CSS_SELECTOR, ".toggle-gradcam").click()
        wait.until(
            lambda d: (
                "gradcam.png" in img.get_attribute("src")
                and d.execute_script("return arguments[0].naturalWidth", img) > 0
            )
        )
        card.find_element(By.CSS_SELECTOR, ".toggle-gradcam").click()
        assert driver.execute_script("return arguments[0].getAttribute('src') === arguments[0].dataset.photo", img)
    assert driver.execute_script("return document.documentElement.scrollWidth") <= width  # nothing off-screen
    save(driver, f"serve_{viewport}", tmp_path)

    driver.get(server + "/history")
    first = driver.find_element(By.CSS_SELECTOR, ".cards .card")
    diagnosis_id = first.get_attribute("data-id")
    driver.find_element(By.ID, "review-token").send_keys(TOKEN)
    select = Select(first.find_element(By.CSS_SELECTOR, "form.review select"))
    label, value = select.options[-1].text, select.options[-1].get_attribute("value")  # a name, a class
    select.select_by_visible_text(label)
    first.find_element(By.CSS_SELECTOR, "form.review button").click()
    wait.until(lambda d: first.find_element(By.CSS_SELECTOR, ".review-state").text == f"reviewed: {label}")
    assert first.find_element(By.CSS_SELECTOR, ".review-message").text == "saved"
    stored = httpx.get(f"{server}/api/v1/diagnoses/{diagnosis_id}").json()
    assert stored["reviewed_label"] == value
    assert driver.execute_script("return document.documentElement.scrollWidth") <= width
    save(driver, f"serve_history_{viewport}", tmp_path)
    assert console_errors(driver) == []  # no CSP violation, no failed asset


def test_the_page_in_vietnamese_at_phone_size(server, browser_factory, tiny_data, tmp_path):
    """The switcher, then a diagnosis read in Vietnamese: verdict, class names, the disease card."""
    driver = browser_factory(*VIEWPORTS["phone"])
    wait = WebDriverWait(driver, 60)
    leaf = Path(os.environ.get("PADDYCLF_BROWSER_LEAF") or sorted((tiny_data / "images" / "blast").glob("*.jpg"))[0])
    driver.get(server + "/")
    driver.find_element(By.CSS_SELECTOR, 'a[hreflang="vi"]').click()
    wait.until(lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "vi")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Chẩn đoán bệnh trên lá lúa"
    driver.find_element(By.ID, "photo-input").send_keys(f"{leaf}\n{china_jpg()}")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card:not(.pending)")) == 2)
    text = driver.find_element(By.ID, "results").text
    assert any(name in text for name in ("Bệnh đạo ôn", "Bệnh bạc lá", "Bệnh đốm nâu", "Lá lúa khỏe"))
    assert "Most likely" not in text and "Not sure" not in text
    driver.get(server + "/history")  # the choice is remembered (a cookie)
    assert driver.find_element(By.TAG_NAME, "h1").text == "Lịch sử"
    driver.get(server + "/")
    driver.find_element(By.ID, "photo-input").send_keys(str(leaf))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card:not(.pending)")) == 1)
    assert driver.execute_script("return document.documentElement.scrollWidth") <= VIEWPORTS["phone"][0]
    save(driver, "serve_vi_phone", tmp_path)
    assert console_errors(driver) == []


def test_leaves_of_one_field_get_one_answer_that_grows_with_each_photo(server, browser_factory, tiny_data, tmp_path):
    driver = browser_factory(*VIEWPORTS["phone"])
    wait = WebDriverWait(driver, 60, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
    leaves = sorted((tiny_data / "images" / "blast").glob("*.jpg"))
    driver.get(server + "/?lang=en")
    driver.find_element(By.ID, "visit-toggle").click()
    driver.find_element(By.ID, "photo-input").send_keys("\n".join(str(p) for p in leaves[:2]))
    wait.until(lambda d: "from 2 photos" in d.find_element(By.CSS_SELECTOR, "#visit .card.visit .file").text)
    # the server numbers the visit once the phone has sent its first photo
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#visit .card").get_attribute("data-visit"))
    visit_id = driver.find_element(By.CSS_SELECTOR, "#visit .card").get_attribute("data-visit")
    driver.find_element(By.ID, "photo-input").send_keys(str(leaves[2]))  # another leaf of the same field
    wait.until(lambda d: "from 3 photos" in d.find_element(By.CSS_SELECTOR, "#visit .file").text)
    assert driver.find_element(By.CSS_SELECTOR, "#visit .card").get_attribute("data-visit") == visit_id
    assert len(driver.find_elements(By.CSS_SELECTOR, "#results .card")) == 3  # and each photo's own card
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .card[data-id]")) == 3)
    assert driver.execute_script("return document.documentElement.scrollWidth") <= VIEWPORTS["phone"][0]
    save(driver, "serve_visit_phone", tmp_path)
    stored = httpx.get(f"{server}/api/v1/visits/{visit_id}").json()
    assert stored["photos"] == 3 and len(stored["items"]) == 3
    # the server's answer from its own re-check of the three photos is the phone's answer
    assert f"status-{stored['status']}" in driver.find_element(By.CSS_SELECTOR, "#visit .card").get_attribute("class")
    assert console_errors(driver) == []


def test_a_wrong_token_is_reported_on_the_page(server, browser_factory, tiny_data):
    driver = browser_factory(*VIEWPORTS["phone"])
    leaf = sorted((tiny_data / "images").rglob("*.jpg"))[1]
    httpx.post(f"{server}/api/v1/diagnose", files=[("files", (leaf.name, leaf.read_bytes(), "image/jpeg"))])
    driver.get(server + "/history")
    driver.find_element(By.ID, "review-token").send_keys("not-the-token")
    first = driver.find_element(By.CSS_SELECTOR, ".cards .card")
    first.find_element(By.CSS_SELECTOR, "form.review button").click()
    message = first.find_element(By.CSS_SELECTOR, ".review-message")
    WebDriverWait(driver, 30).until(lambda d: "token" in message.text)
    assert "failed" in message.get_attribute("class")
    assert first.find_element(By.CSS_SELECTOR, ".review-state").text == "not reviewed"


def test_photos_dropped_on_the_page_are_diagnosed(server, browser_factory):
    driver = browser_factory(*VIEWPORTS["desktop"])
    driver.get(server + "/")
    # what a desktop drop delivers: a DataTransfer holding files (here a PNG drawn on a canvas)
    driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const canvas = document.createElement("canvas");
        canvas.width = canvas.height = 96;
        const context = canvas.getContext("2d");
        context.fillStyle = "#3a7d2c";
        context.fillRect(0, 0, 96, 96);
        canvas.toBlob((blob) => {
          const transfer = new DataTransfer();
          transfer.items.add(new File([blob], "dropped.png", { type: "image/png" }));
          const zone = document.getElementById("drop-zone");
          for (const type of ["dragenter", "dragover", "drop"]) {
            zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
          }
          done();
        }, "image/png");
        """
    )
    WebDriverWait(driver, 60).until(
        lambda d: (
            [c.text for c in d.find_elements(By.CSS_SELECTOR, "#results .card:not(.pending) .file")] == ["dropped.png"]
        )
    )
    assert "dragging" not in driver.find_element(By.ID, "drop-zone").get_attribute("class")
