"""``paddyclf benchmark browser``: the diagnosis in the browser against ``predict`` and ``serve``, its speed and weight.

One served model, ONNX (a checkpoint is exported once, as ``serve`` does), in headless Chromium at
phone size:

- **Parity.** Every photo is diagnosed by ``predict`` (Python, ONNX Runtime), by ``serve`` (its API)
  and by the page (ONNX Runtime Web, :file:`static/js/model.js`) on the same ONNX file. Reported:
  top-1 and verdict agreement, and the largest probability difference, per pair. The page's resize
  is a port of Pillow's (:file:`static/js/resize.js`); the same photos are also run through a canvas
  ``drawImage`` resize (smoothing "high"), the browser's own, to show what the port buys.
- **Speed.** On one photo, alternately: the bare ``session.run`` on a ready tensor, and the page's
  whole diagnosis (decode, resize, tensor, model, verdict, card on the page). Medians and their
  ratio; again with WASM threads when ``--threads`` > 1 (the server then sends COOP/COEP headers).
- **Weight.** A fresh profile opens the page and diagnoses a photo chosen at once: the bytes the
  server sent (as sent: compressed where it compresses) until the page is ready offline, by kind,
  and the time from navigation to the first card.

Writes PREFIX.json and PREFIX.md.
"""

from __future__ import annotations

import base64
import contextlib
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from ..data import collect_images
from ..errors import UserError
from ..fileio import atomic_write, write_json
from ..inference.predict import predict_files
from ..inference.runtimes import read_sidecar
from .chromium import headless_chromium
from .common import PRINT
from .serve import free_port

SCRIPT_TIMEOUT_S = 300
# the page's model on one photo (base64 JPEG bytes): probabilities, OOD score and verdict
DIAGNOSE_JS = """
const [data, done] = [arguments[0], arguments[arguments.length - 1]];
const blob = new Blob([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], { type: "image/jpeg" });
window.paddyclf.model().diagnose(blob)
  .then((r) => done({ probabilities: r.probabilities, status: r.status, ood: r.oodScore }))
  .catch((e) => done({ error: String(e) }));
"""
# the same, resized by the canvas (drawImage, smoothing "high") instead of the port of Pillow
CANVAS_JS = """
const [data, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const { softmax, verdict } = await import("/static/js/model.js");
  const { normalize, normalizationTables, resizedSize } = await import("/static/js/resize.js");
  const model = window.paddyclf.model();
  const pre = model.metadata.preprocessing;
  const blob = new Blob([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], { type: "image/jpeg" });
  const bitmap = await createImageBitmap(blob, { imageOrientation: "from-image", colorSpaceConversion: "none" });
  const [w, h] = resizedSize(bitmap.width, bitmap.height, pre.resize_short_side);
  const crop = pre.center_crop;
  const canvas = new OffscreenCanvas(crop, crop);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = "high";
  context.drawImage(bitmap, -Math.round((w - crop) / 2), -Math.round((h - crop) / 2), w, h);
  const rgba = context.getImageData(0, 0, crop, crop).data;
  const rgb = new Uint8Array(crop * crop * 3);
  for (let i = 0; i < crop * crop; i++) for (let c = 0; c < 3; c++) rgb[3 * i + c] = rgba[4 * i + c];
  const input = normalize(rgb, crop, normalizationTables(pre.mean, pre.std, pre.scale));
  const tensor = new model.ort.Tensor("float32", input, [1, 3, crop, crop]);
  const { logits, oodScore } = await model.run(tensor);
  const probabilities = softmax(logits, model.trust.temperature || 1);
  done({ probabilities, status: verdict(probabilities, oodScore, model.trust), ood: oodScore });
})().catch((e) => done({ error: String(e) }));
"""
# alternately the bare session.run and the page's whole diagnosis of one photo, in milliseconds
SPEED_JS = """
const [data, repeats, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
(async () => {
  const { decode } = await import("/static/js/model.js");
  const page = window.paddyclf;
  const model = page.model();
  const file = new File([Uint8Array.from(atob(data), (c) => c.charCodeAt(0))], "leaf.jpg", { type: "image/jpeg" });
  const tensor = model.tensor(await decode(file));
  const feeds = { [model.session.inputNames[0]]: tensor };
  const results = document.getElementById("results");
  const bare = [], whole = [], steps = {};
  for (let i = 0; i < repeats + 3; i++) {
    let start = performance.now();
    await model.session.run(feeds);
    const b = performance.now() - start;
    const pending = page.placeholder(file);
    results.prepend(pending);
    start = performance.now();
    const { card, kept, result } = await page.diagnoseHere(file, pending, null);
    const shown = performance.now();
    card.getBoundingClientRect(); // style and layout of the card are part of it
    const end = performance.now();
    await kept;
    card.remove();
    if (i >= 3) { // 3 warm-up rounds
      bare.push(b);
      whole.push(end - start);
      for (const [step, ms] of Object.entries({ ...result.milliseconds, layout: end - shown })) {
        (steps[step] = steps[step] || []).push(ms);
      }
    }
  }
  done({ bare, whole, steps, threads: model.threads, isolated: self.crossOriginIsolated });
})().catch((e) => done({ error: String(e) }));
"""
# performance.now() when the first diagnosed card appears
FIRST_CARD_JS = """
window.__firstCard = null;
new MutationObserver((changes, observer) => {
  if (document.querySelector("#results .card.in-browser, #results .card[data-id]")) {
    window.__firstCard = performance.now();
    observer.disconnect();
  }
}).observe(document.getElementById("results"), { childList: true });
"""


class CountingApp:
    """ASGI wrapper: the body bytes the server sends, per path (as sent: gzip where it compresses)."""

    def __init__(self, app) -> None:
        self.app, self.sent, self.lock = app, defaultdict(int), threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.sent.clear()

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")

        async def counted(message) -> None:
            if message["type"] == "http.response.body":
                with self.lock:
                    self.sent[path] += len(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, counted if scope["type"] == "http" else send)


@contextlib.contextmanager
def serving(app, port: int) -> Iterator[str]:
    """``app`` under uvicorn on loopback, in a thread; yields its URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise UserError("The server did not start within 120 s.")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_for_engine(driver, timeout_s: float = 180) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout_s).until(lambda d: d.execute_script("return document.documentElement.dataset.engine"))
    return driver.execute_script("return document.documentElement.dataset.engine")


def browser_results(driver, photos: list[Path], script: str) -> list[dict]:
    driver.set_script_timeout(SCRIPT_TIMEOUT_S)
    results = []
    for path in photos:
        result = driver.execute_async_script(script, base64.b64encode(path.read_bytes()).decode())
        if "error" in result:
            raise UserError(f"The browser could not diagnose {path}: {result['error']}")
        results.append(result)
    return results


def serve_results(url: str, photos: list[Path]) -> list[dict]:
    import httpx

    results = []
    with httpx.Client(timeout=120) as client:
        for path in photos:
            response = client.post(f"{url}/api/v1/diagnose", files=[("files", (path.name, path.read_bytes()))])
            if response.status_code != 200:
                raise UserError(f"serve refused {path}: {response.text[:300]}")
            record = response.json()["results"][0]
            results.append({"probabilities": record["probabilities"], "status": record["status"]})
    return results


def predict_results(model: Path, photos: list[Path]) -> list[dict]:
    """``paddyclf predict`` on every photo: all classes' probabilities and the verdict."""
    classes = read_sidecar(model)["classes"]  # predict_files loads the model; no second load for its classes
    rows = predict_files(model, photos, top_k=len(classes), progress=False)
    out = []
    for row in rows:
        if row["status"].startswith("error"):
            raise UserError(f"predict could not read {row['path']}: {row['status']}")
        probabilities = [0.0] * len(classes)
        for rank in range(1, len(classes) + 1):
            probabilities[classes.index(row[f"label_{rank}"])] = float(row[f"prob_{rank}"])
        out.append({"probabilities": probabilities, "status": row["status"]})
    return out


def agreement(a: list[dict], b: list[dict]) -> dict:
    pa = np.array([r["probabilities"] for r in a], dtype=np.float64)
    pb = np.array([r["probabilities"] for r in b], dtype=np.float64)
    same_verdict = [x["status"] == y["status"] for x, y in zip(a, b, strict=True)]
    return {
        "photos": len(a),
        "top1_agreement": float(np.mean(pa.argmax(1) == pb.argmax(1))),
        "verdict_agreement": float(np.mean(same_verdict)),
        "max_probability_difference": float(np.abs(pa - pb).max()),
        "verdict_differences": int(len(a) - sum(same_verdict)),
    }


def speed(driver, photo: Path, repeats: int) -> dict:
    driver.set_script_timeout(SCRIPT_TIMEOUT_S)
    raw = driver.execute_async_script(SPEED_JS, base64.b64encode(photo.read_bytes()).decode(), repeats)
    if "error" in raw:
        raise UserError(f"The speed run failed in the browser: {raw['error']}")
    bare, whole = statistics.median(raw["bare"]), statistics.median(raw["whole"])
    return {
        "threads": raw["threads"],
        "cross_origin_isolated": raw["isolated"],
        "repeats": repeats,
        "session_run_ms": round(bare, 2),
        "whole_diagnosis_ms": round(whole, 2),
        "ratio": round(whole / bare, 3),
        "steps_ms": {step: round(statistics.median(ms), 2) for step, ms in raw["steps"].items()},
    }


def kind_of(path: str) -> str:
    if path.endswith(".wasm"):
        return "runtime (wasm)"
    if path.startswith("/static/vendor/"):
        return "runtime (js)"
    if path.startswith("/browser/"):
        return "model"
    if path.startswith("/static/"):
        return "page assets"
    if path.startswith("/api/"):
        return "api"
    return "pages and worker"


def first_visit(url: str, counter: CountingApp, photo: Path, timeout_s: float = 300) -> dict:
    """A fresh profile opens the page, chooses ``photo`` at once; bytes until ready offline, time to its card."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    counter.reset()
    driver = headless_chromium()
    try:
        driver.get(url + "/")
        driver.execute_script(FIRST_CARD_JS)
        driver.find_element(By.ID, "photo-input").send_keys(str(photo.resolve()))
        wait = WebDriverWait(driver, timeout_s)
        wait.until(lambda d: d.execute_script("return window.__firstCard"))
        first_card_ms = driver.execute_script("return window.__firstCard")
        wait.until(lambda d: d.execute_script("return document.documentElement.dataset.offline"))
        wait.until(lambda d: d.execute_script("return document.documentElement.dataset.outbox === '0'"))
        offline = driver.execute_script("return document.documentElement.dataset.offline")
        engine = driver.execute_script("return document.documentElement.dataset.engine")
    finally:
        driver.quit()
    with counter.lock:
        sent = dict(counter.sent)
    by_kind: dict[str, int] = defaultdict(int)
    for path, count in sent.items():
        by_kind[kind_of(path)] += count
    return {
        "engine": engine,
        "offline": offline,
        "bytes": sum(sent.values()),
        "bytes_by_kind": dict(sorted(by_kind.items())),
        "time_to_first_diagnosis_ms": round(first_card_ms, 1),
    }


def onnx_model(model: str, folder: Path) -> Path:
    """The ONNX file browsers run: ``model`` itself, or its export (as ``serve`` makes it)."""
    if Path(model).suffix.lower() == ".onnx":
        return Path(model)
    from ..export import export_model

    path = folder / "model.onnx"
    export_model(model, path, "onnx")
    return path


def run_browser_benchmark(
    model: str,
    images: list[str],
    limit: int | None = None,
    speed_photo: str | None = None,
    repeats: int = 30,
    threads: tuple[int, ...] = (1, 2),
    output: str = "results/browser_benchmark",
    log=PRINT,
) -> dict:
    from ..serve.app import create_app
    from ..serve.config import ServeConfig
    from ..serve.offline import runtime_available

    if not runtime_available():
        raise UserError("ONNX Runtime Web is missing from the package: run `make web-runtime` first.")
    photos = collect_images(images)[:limit]
    if not photos:
        raise UserError(f"No photos found in {' '.join(images)}.")
    big = Path(speed_photo) if speed_photo else photos[0]
    with tempfile.TemporaryDirectory(prefix="paddyclf-browser-bench-") as tmp:
        onnx = onnx_model(model, Path(tmp))
        log(f"{len(photos)} photos; model {onnx} ({onnx.stat().st_size / 1e6:.1f} MB)")
        predicted = predict_results(onnx, photos)
        result: dict = {"model": str(model), "onnx_bytes": onnx.stat().st_size, "photos": len(photos), "speed": []}
        for n_threads in threads:
            config = ServeConfig(
                model=str(onnx), data_dir=str(Path(tmp) / f"data{n_threads}"), cross_origin_isolation=n_threads > 1,
                browser_threads=n_threads, port=free_port(),
            )  # fmt: skip
            counter = CountingApp(create_app(config))
            with serving(counter, config.port) as url:
                if n_threads == threads[0]:
                    result["first_visit"] = first_visit(url, counter, big)
                    log(f"first visit: {result['first_visit']}")
                driver = headless_chromium()
                try:
                    driver.get(url + "/")
                    if wait_for_engine(driver) != "browser":
                        raise UserError("The page did not load the model in the browser; see the browser console.")
                    if n_threads == threads[0]:
                        browser = browser_results(driver, photos, DIAGNOSE_JS)
                        canvas = browser_results(driver, photos, CANVAS_JS)
                        served = serve_results(url, photos)
                        result["parity"] = {
                            "browser_vs_predict": agreement(browser, predicted),
                            "browser_vs_serve": agreement(browser, served),
                            "serve_vs_predict": agreement(served, predicted),
                            "canvas_resize_vs_predict": agreement(canvas, predicted),
                        }
                        log(f"parity: {result['parity']}")
                    result["speed"].append(speed(driver, big, repeats) | {"photo": big.name})
                    log(f"speed: {result['speed'][-1]}")
                finally:
                    driver.quit()
        with Image.open(big) as image:
            result["speed_photo_size"] = list(image.size)
    write_json(Path(output + ".json"), result)
    atomic_write(Path(output + ".md"), lambda tmp: tmp.write_text(markdown(result), encoding="utf-8"))
    log(f"wrote {output}.json and {output}.md")
    return result


def markdown(result: dict) -> str:
    lines = [f"# In-browser diagnosis: parity, speed and weight ({result['photos']} photos)", ""]
    lines += ["| pair | photos | top-1 same | verdict same | largest probability difference |", "|---|---|---|---|---|"]
    for pair, row in result["parity"].items():
        lines.append(
            f"| {pair.replace('_', ' ')} | {row['photos']} | {row['top1_agreement']:.1%} "
            f"| {row['verdict_agreement']:.1%} | {row['max_probability_difference']:.2g} |"
        )
    width, height = result["speed_photo_size"]
    lines += ["", f"Speed on one {width}x{height} photo (medians):", ""]
    steps = ["decode", "tensor", "run", "verdict", "card", "layout"]
    lines += [
        "| WASM threads | session.run ms | whole diagnosis ms | ratio | " + " | ".join(steps) + " (ms) |",
        "|---|---|---|---|" + "---|" * len(steps),
    ]
    for row in result["speed"]:
        lines.append(
            f"| {row['threads']} | {row['session_run_ms']} | {row['whole_diagnosis_ms']} | {row['ratio']}x | "
            + " | ".join(str(row["steps_ms"].get(step, "")) for step in steps)
            + " |"
        )
    visit = result["first_visit"]
    lines += ["", f"First visit: {visit['bytes'] / 1e6:.2f} MB sent, time to the first diagnosis "
              f"{visit['time_to_first_diagnosis_ms'] / 1000:.1f} s.", ""]  # fmt: skip
    lines += ["| kind | bytes |", "|---|---|"] + [f"| {k} | {v:,} |" for k, v in visit["bytes_by_kind"].items()]
    return "\n".join(lines) + "\n"
