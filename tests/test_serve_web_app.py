"""What lets the diagnose page work offline, in process (TestClient): the service worker and the files it
keeps, the web manifest and its icons, ONNX Runtime Web sent compressed as application/wasm, the page's
security headers, and the browser model's URL that names its hash."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from PIL import Image  # noqa: E402

from paddyclf.serve import app as app_module  # noqa: E402
from paddyclf.serve.config import ServeConfig  # noqa: E402
from paddyclf.serve.offline import RUNTIME, RUNTIME_FILES, runtime_available  # noqa: E402

needs_runtime = pytest.mark.skipif(not runtime_available(), reason="ONNX Runtime Web is missing: make web-runtime")
WASM = "/static/vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm"


def worker_setting(script: str, name: str):
    return json.loads(re.search(rf"const {name} = (.*?);\n", script).group(1))


def test_the_service_worker_keeps_every_file_the_page_needs(client):
    reply = client.get("/sw.js")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/javascript")
    assert reply.headers["cache-control"] == "no-cache"  # a new paddyclf reaches phones at their next visit
    assert re.match(r'const PADDYCLF_RELEASE = "[0-9a-f]{16}";', reply.text)
    assets = worker_setting(reply.text, "PADDYCLF_ASSETS")
    runtime = worker_setting(reply.text, "PADDYCLF_RUNTIME_ASSETS")
    for needed in ("/static/app.js", "/static/app.css", "/static/js/model.js", "/static/js/resize.js",
                   "/static/js/outbox.js", "/static/js/render.js", "/manifest.webmanifest"):  # fmt: skip
        assert needed in assets
    if runtime_available():  # the runtime in a cache of its own: a new paddyclf does not download it again
        assert {f"/static/vendor/onnxruntime-web/{name}" for name in RUNTIME_FILES} == set(runtime)
        assert worker_setting(reply.text, "PADDYCLF_MODEL") is True
    for url in assets + runtime:
        kept = client.get(url)
        assert kept.status_code == 200, url
        if url.startswith("/static/"):  # asked again each time (a 304 when unchanged), never guessed fresh
            assert kept.headers["cache-control"] == "no-cache"
    # every script the page imports is kept (a missing one would break the page offline)
    page_scripts = re.findall(r'from "\./js/(\w+\.js)"', client.get("/static/app.js").text)
    assert page_scripts and all(f"/static/js/{name}" in assets for name in page_scripts)


def test_the_manifest_makes_the_page_installable_in_the_visitors_language(client):
    reply = client.get("/manifest.webmanifest", headers={"Accept-Language": "vi"})
    assert reply.headers["content-type"].startswith("application/manifest+json")
    manifest = reply.json()
    assert manifest["start_url"] == "/" and manifest["display"] == "standalone" and manifest["lang"] == "vi"
    assert manifest["description"] == "Chẩn đoán bệnh trên lá lúa"
    for icon in manifest["icons"]:
        image = client.get(icon["src"])
        assert image.headers["content-type"] == "image/png"
        width, height = (int(n) for n in icon["sizes"].split("x"))
        with Image.open(io.BytesIO(image.content)) as png:
            assert png.size == (width, height)
    page = client.get("/").text
    assert '<link rel="manifest" href="/manifest.webmanifest">' in page and 'data-service-worker="/sw.js"' in page


@needs_runtime
def test_the_wasm_runtime_goes_compressed_as_application_wasm(client):
    original = (RUNTIME / "ort-wasm-simd-threaded.wasm").read_bytes()
    compressed = client.get(WASM, headers={"Accept-Encoding": "gzip"})
    assert compressed.headers["content-type"] == "application/wasm"
    assert compressed.headers["content-encoding"] == "gzip" and "accept-encoding" in compressed.headers["vary"]
    assert int(compressed.headers["content-length"]) < len(original) / 3  # 14 MB -> 3.7 MB
    assert compressed.content == original  # httpx undoes the gzip: the same bytes
    plain = client.get(WASM, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == original
    cached = client.get(WASM, headers={"Accept-Encoding": "gzip", "If-None-Match": compressed.headers["etag"]})
    assert cached.status_code == 304
    module = client.get("/static/vendor/onnxruntime-web/ort.wasm.min.mjs")
    assert module.headers["content-type"].startswith("text/javascript")


def test_the_page_allows_webassembly_but_no_inline_script_and_isolates_only_when_asked(make_client):
    page = make_client().get("/")
    policy = page.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]*)", policy).group(1)
    assert "'wasm-unsafe-eval'" in script_src and "'unsafe-inline'" not in script_src
    assert "'unsafe-eval'" not in script_src.replace("'wasm-unsafe-eval'", "")
    assert "blob:" in re.search(r"img-src ([^;]*)", policy).group(1)  # a photo diagnosed on the phone
    assert "cross-origin-embedder-policy" not in page.headers
    isolated = make_client(cross_origin_isolation=True, browser_threads=2).get("/")
    assert isolated.headers["cross-origin-opener-policy"] == "same-origin"
    assert isolated.headers["cross-origin-embedder-policy"] == "require-corp"


@needs_runtime
def test_the_page_runs_the_model_in_the_browser_only_when_the_runtime_is_there(make_client, monkeypatch):
    assert 'data-browser-model="/browser/model.json"' in make_client().get("/").text
    monkeypatch.setattr(app_module, "runtime_available", lambda: False)
    client = make_client()
    page = client.get("/").text
    assert "data-browser-model" not in page  # an install without npm: the server diagnoses, as before
    assert 'data-service-worker="/sw.js"' in page  # and the page still opens offline, to say so
    worker = client.get("/sw.js").text
    assert worker_setting(worker, "PADDYCLF_MODEL") is False and worker_setting(worker, "PADDYCLF_RUNTIME_ASSETS") == []


def test_the_browser_model_url_names_its_hash(client):
    metadata = client.get("/browser/model.json").json()
    assert isinstance(metadata["pillow_vertical_first"], bool) and metadata["preprocessing"]["center_crop"] > 0
    kept = client.get(f"/browser/model.onnx?sha256={metadata['sha256']}")
    assert kept.status_code == 200 and "immutable" in kept.headers["cache-control"]
    stale = client.get(f"/browser/model.onnx?sha256={'0' * 64}")
    assert stale.status_code == 404 and "another model" in stale.json()["error"]


def test_the_page_carries_the_words_of_a_diagnosis_in_its_language(client):
    page = client.get("/", headers={"Accept-Language": "vi"}).text
    wording = json.loads(re.search(r'<script id="wording" type="application/json">(.*?)</script>', page).group(1))
    assert wording["language"] == "vi" and set(wording["verdicts"]) == {"ok", "unsure", "out_of_distribution"}
    headline = wording["verdicts"]["ok"]["headline"]
    assert "%(label)s" in headline and "Most likely" not in headline
    model = client.get("/api/v1/model").json()
    assert set(model["classes"]) <= set(wording["class_names"])
    assert wording["class_names"]["blast"] == "Bệnh đạo ôn"
    assert wording["cards"]["blast"]["sources"] and wording["cards"]["blast"]["language"] == "vi"


def test_a_server_without_the_runtime_says_how_to_get_it(served_checkpoint, tmp_path, monkeypatch):
    from paddyclf.serve import server
    from paddyclf.serve.service import DiagnosisService

    config = ServeConfig(model=str(served_checkpoint), data_dir=str(tmp_path / "data"))
    service = DiagnosisService(config)
    try:
        monkeypatch.setattr(server, "runtime_available", lambda: False)
        report = "\n".join(server.startup_report(config, service))
        assert "ONNX Runtime Web is missing" in report and "make web-runtime" in report
        assert "browser model:" in report  # the export is there; only the runtime is missing
        monkeypatch.setattr(server, "runtime_available", lambda: True)
        assert "ONNX Runtime Web" not in "\n".join(server.startup_report(config, service))
    finally:
        service.close()


@pytest.mark.slow
@needs_runtime
def test_a_built_wheel_and_sdist_carry_the_runtime_so_installing_one_needs_no_npm(tmp_path):
    import subprocess
    import sys
    import tarfile
    import zipfile

    root = Path(__file__).parents[1]
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        str(root),
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(tmp_path),
    ]
    subprocess.run(command, check=True, timeout=600, cwd=tmp_path)
    (wheel,) = tmp_path.glob("paddyclf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sdist = f"from setuptools import build_meta; build_meta.build_sdist({str(tmp_path)!r})"
    subprocess.run([sys.executable, "-c", sdist], check=True, timeout=600, cwd=root, capture_output=True)
    (archive,) = tmp_path.glob("paddyclf-*.tar.gz")
    with tarfile.open(archive) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert {"src/paddyclf/serve/static/vendor/onnxruntime-web/" + name for name in RUNTIME_FILES} <= in_sdist
    vendor = "paddyclf/serve/static/vendor/onnxruntime-web/"
    assert {vendor + name for name in RUNTIME_FILES} <= names
    assert vendor + "ort-wasm-simd-threaded.wasm.gz" in names
    for page_file in (
        "static/app.js",
        "static/sw.js",
        "static/js/resize.js",
        "static/icons/icon-192.png",
        "templates/base.html",
    ):
        assert "paddyclf/serve/" + page_file in names
