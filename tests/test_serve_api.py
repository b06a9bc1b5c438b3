"""`paddyclf serve`: every endpoint of the JSON API and the pages, in process (FastAPI's TestClient)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import sqlite3
import stat
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")

import torch
from conftest import REVIEW_TOKEN
from fastapi.testclient import TestClient
from PIL import Image
from serve_helpers import bad_uploads, photo_with_exif, upload

from paddyclf.cli import main
from paddyclf.errors import UserError
from paddyclf.i18n import percent
from paddyclf.serve import store as store_module
from paddyclf.serve.app import BodyLimit, breakable
from paddyclf.serve.batching import DynamicBatcher
from paddyclf.serve.config import ServeConfig
from paddyclf.serve.service import DiagnosisService, load_class_info
from paddyclf.serve.store import (
    DATABASE_NAME,
    MIGRATIONS,
    SCHEMA_VERSION,
    DiskFullError,
    NewDiagnosis,
    Store,
    connect,
    migrate,
)

TOKEN = REVIEW_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def leaves(tiny_data) -> list[Path]:
    return sorted((tiny_data / "images").rglob("*.jpg"))


def diagnose(client: TestClient, *paths: Path, name: str | None = None) -> list[dict]:
    files = [upload(name or p.name, p.read_bytes()) for p in paths]
    reply = client.post("/api/v1/diagnose", files=files)
    assert reply.status_code == 200, reply.text
    return reply.json()["results"]


# --------------------------------------------------------------------------- diagnose, model, health


def test_diagnose_returns_one_stored_result_per_photo(client, leaves):
    results = diagnose(client, leaves[0], leaves[15])
    assert [r["original_name"] for r in results] == [leaves[0].name, leaves[15].name]
    for result in results:
        assert result["status"] in ("ok", "unsure", "out_of_distribution")
        assert len(result["top_k"]) == 3
        probabilities = [t["probability"] for t in result["top_k"]]
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
        assert result["predicted"] == result["top_k"][0]["label"]
        assert result["verdict"]["headline"]
        photo = client.get(result["photo_url"])
        assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
        assert hashlib.sha256(photo.content).hexdigest() == result["photo_sha256"]  # content-addressed
        assert client.get(result["thumbnail_url"]).status_code == 200
    stored = client.get("/api/v1/diagnoses").json()
    assert stored["total"] == 2 and [r["id"] for r in stored["items"]] == [results[1]["id"], results[0]["id"]]


def test_model_endpoint_names_classes_size_thresholds_and_file_hash(client, served_checkpoint, tiny_data):
    info = client.get("/api/v1/model").json()
    label2id = json.loads((tiny_data / "label2id.json").read_text())
    assert info["classes"] == sorted(label2id, key=label2id.get)
    assert info["input_size"] == [3, 64, 64]
    assert info["sha256"] == hashlib.sha256(served_checkpoint.read_bytes()).hexdigest()
    assert set(info["thresholds"]) == {"temperature", "unsure_below", "ood_score", "ood_above"}
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model_sha256"] == info["sha256"]


def test_docs_and_openapi_are_served_without_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "cdn." not in page.text
    script = page.text.split('src="', 1)[1].split('"', 1)[0]
    assert script.startswith("/") and client.get(script).status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/diagnose", "/api/v1/model", "/api/v1/diagnoses", "/api/v1/diagnoses/{diagnosis_id}/review"} <= set(
        paths
    )


# --------------------------------------------------------------------------- history and review


def test_history_is_newest_first_paged_and_filtered(client, leaves):
    ids = [r["id"] for r in diagnose(client, *leaves[:5])]
    page1 = client.get("/api/v1/diagnoses?page=1&per_page=2").json()
    page3 = client.get("/api/v1/diagnoses?page=3&per_page=2").json()
    assert page1["total"] == 5 and [r["id"] for r in page1["items"]] == ids[::-1][:2]
    assert [r["id"] for r in page3["items"]] == [ids[0]]
    first = client.get(f"/api/v1/diagnoses/{ids[0]}").json()
    same_class = client.get("/api/v1/diagnoses", params={"predicted": first["predicted"]}).json()
    assert same_class["items"] and all(r["predicted"] == first["predicted"] for r in same_class["items"])
    same_status = client.get("/api/v1/diagnoses", params={"status": first["status"]}).json()
    assert all(r["status"] == first["status"] for r in same_status["items"])
    assert client.post(
        f"/api/v1/diagnoses/{ids[1]}/review", json={"label": first["predicted"]}, headers=AUTH
    ).is_success
    reviewed = client.get("/api/v1/diagnoses?reviewed=yes").json()
    assert [r["id"] for r in reviewed["items"]] == [ids[1]]
    assert client.get("/api/v1/diagnoses?reviewed=no").json()["total"] == 4
    page = client.get("/history?reviewed=yes")
    assert page.status_code == 200 and page.text.count('<article class="card') == 1


@pytest.mark.parametrize(
    "query", ["page=0", "per_page=0", "per_page=101", "page=x", "status=fine", "reviewed=maybe"], ids=str
)
def test_bad_history_queries_get_a_422_json_error(client, query):
    reply = client.get(f"/api/v1/diagnoses?{query}")
    assert reply.status_code == 422 and reply.json()["error"]


def test_ids_and_pages_past_sqlites_64_bit_integers_are_not_found_not_a_500(client, leaves):
    diagnose(client, leaves[0])
    huge = 10**20  # sqlite3 raises OverflowError on anything past 2**63 - 1
    for url in (f"/api/v1/diagnoses/{huge}", f"/api/v1/diagnoses/{huge}/gradcam.png", "/api/v1/diagnoses/-1"):
        reply = client.get(url)
        assert reply.status_code == 404 and "no diagnosis" in reply.json()["error"], url
    label = client.get("/api/v1/model").json()["classes"][0]
    assert client.post(f"/api/v1/diagnoses/{huge}/review", json={"label": label}, headers=AUTH).status_code == 404
    page = client.get(f"/api/v1/diagnoses?page={huge}").json()
    assert page["items"] == [] and page["total"] >= 1
    assert client.get(f"/history?page={huge}").status_code == 200


def test_review_needs_the_token_and_a_known_label(client, leaves):
    (record,) = diagnose(client, leaves[0])
    url, label = f"/api/v1/diagnoses/{record['id']}/review", client.get("/api/v1/model").json()["classes"][-1]
    missing = client.post(url, json={"label": label})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.post(url, json={"label": label}, headers={"Authorization": "Bearer wrong-token!"}).status_code == 401
    assert client.post(url, json={"label": label}, headers={"Authorization": TOKEN}).status_code == 401
    assert client.post(url, json={"label": "Rust"}, headers=AUTH).status_code == 422
    assert client.post(url, json={"name": label}, headers=AUTH).status_code == 422
    broken = client.post(url, content=b'{"label":', headers=AUTH | {"Content-Type": "application/json"})
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["error"]
    assert client.post("/api/v1/diagnoses/999/review", json={"label": label}, headers=AUTH).status_code == 404
    assert client.get(f"/api/v1/diagnoses/{record['id']}").json()["reviewed_label"] is None  # nothing written so far
    done = client.post(url, json={"label": label}, headers=AUTH)
    assert done.status_code == 200 and done.json()["reviewed_label"] == label and done.json()["reviewed_at"]


def test_review_is_off_without_a_token(make_client, leaves, monkeypatch):
    monkeypatch.delenv("PADDYCLF_REVIEW_TOKEN", raising=False)
    client = make_client(review_token=None)
    (record,) = diagnose(client, leaves[0])
    reply = client.post(f"/api/v1/diagnoses/{record['id']}/review", json={"label": record["predicted"]}, headers=AUTH)
    assert reply.status_code == 403 and "off" in reply.json()["error"]
    assert (
        "Reviewing is off" in client.get("/history").text and '<form class="review"' not in client.get("/history").text
    )


def test_the_token_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PADDYCLF_REVIEW_TOKEN", "from-the-environment")
    assert ServeConfig(model="m.pt").with_environment().review_token == "from-the-environment"
    assert (
        ServeConfig(model="m.pt", review_token="given-on-the-line").with_environment().review_token
        == "given-on-the-line"
    )
    assert ServeConfig(model="m.pt").review_token is None  # --help never shows it


# --------------------------------------------------------------------------- bad input and security


@pytest.mark.parametrize("kind", ["empty", "text", "svg", "truncated", "bomb"])
def test_a_bad_file_gets_a_4xx_json_error_naming_it_and_nothing_is_stored(client, leaves, kind):
    name, data, status = bad_uploads(leaves[0].read_bytes())[kind]
    reply = client.post("/api/v1/diagnose", files=[upload(leaves[1].name, leaves[1].read_bytes()), upload(name, data)])
    assert reply.status_code == status, reply.text
    assert reply.json()["file"] == name and reply.json()["error"]
    assert client.get("/api/v1/diagnoses").json()["total"] == 0  # the good photo of that request is not stored either
    assert client.get("/healthz").status_code == 200
    diagnose(client, leaves[2])  # and it keeps serving


def test_too_many_pixels_is_refused_from_the_header(make_client, leaves):
    client = make_client(max_megapixels=0.001)  # 1000 pixels; the 64 x 64 leaf has 4096
    reply = client.post("/api/v1/diagnose", files=[upload("big.jpg", leaves[0].read_bytes())])
    assert reply.status_code == 413 and "64x64" in reply.json()["error"] and reply.json()["file"] == "big.jpg"


def test_an_upload_over_the_size_limit_gets_413_json(make_client, leaves):
    client = make_client(max_upload_mb=0.01)  # 10 kB
    reply = client.post("/api/v1/diagnose", files=[upload("big.jpg", b"\xff" * 20_000)])
    assert reply.status_code == 413 and "0.01 MB" in reply.json()["error"]
    assert client.get("/api/v1/diagnoses").json()["total"] == 0
    diagnose(client, leaves[0])


def test_the_size_limit_stops_reading_a_streamed_body():
    """An unsized (chunked) body is counted as it arrives: the app stops asking for chunks past the limit."""
    sent = []

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive():
        sent.append(1)
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}  # an endless body

    async def send(message):
        pass

    import asyncio

    from starlette.exceptions import HTTPException

    with pytest.raises(HTTPException) as error:
        asyncio.run(BodyLimit(app, 10_000, {})({"type": "http", "headers": []}, receive, send))
    assert error.value.status_code == 413 and len(sent) == 11


def test_a_declared_oversize_body_is_refused_before_reading():
    read = []

    async def app(scope, receive, send):  # pragma: no cover - must not run
        raise AssertionError("the app ran")

    async def receive():
        read.append(1)
        return {"type": "http.request", "body": b"", "more_body": False}

    messages = []

    async def send(message):
        messages.append(message)

    import asyncio

    scope = {"type": "http", "headers": [(b"content-length", b"999999999")]}
    asyncio.run(BodyLimit(app, 10_000, {"error": "too large"})(scope, receive, send))
    assert messages[0]["status"] == 413 and json.loads(messages[1]["body"]) == {"error": "too large"} and not read


def test_class_names_wrap_at_underscores_and_stay_escaped():
    assert str(breakable("bacterial_leaf_blight")) == "bacterial_<wbr>leaf_<wbr>blight"
    assert str(breakable("<b>_x")) == "&lt;b&gt;_<wbr>x"


def test_a_script_in_a_filename_is_escaped_on_every_page(client, leaves):
    name = "<script>alert(1)</script>.jpg"
    page = client.post("/", files=[upload(name, leaves[0].read_bytes())])
    assert page.status_code == 200
    history = client.get("/history")
    for html in (page.text, history.text):
        assert "&lt;script&gt;alert(" in html and "<script>alert" not in html
    assert client.get("/api/v1/diagnoses").json()["items"][0]["original_name"] == name  # JSON keeps it as text


def test_a_client_filename_never_becomes_a_path(client, leaves, tmp_path):
    (record,) = diagnose(client, leaves[0], name="../../escaped.jpg")
    assert record["original_name"] == "../../escaped.jpg"
    assert not list(tmp_path.rglob("escaped*"))
    stored = sorted(p.relative_to(tmp_path / "data").as_posix() for p in (tmp_path / "data").rglob("*.jpg"))
    sha = record["photo_sha256"]
    assert stored == [f"photos/{sha[:2]}/{sha}.jpg", f"thumbs/{sha[:2]}/{sha}.jpg"]


def test_no_directory_listings_and_no_paths_outside_the_store(client):
    for url in [
        "/static/",
        "/photos/",
        "/thumbs/",
        "/photos/../diagnoses.sqlite3",
        "/photos/abc.jpg",
        f"/photos/{'0' * 64}.jpg",
    ]:
        reply = client.get(url)
        assert reply.status_code == 404, url
        assert "diagnoses.sqlite3" not in reply.text


def test_security_headers_and_cors_off(client):
    page = client.get("/")
    script_src = page.headers["content-security-policy"].split("script-src ")[1].split(";")[0]
    assert script_src == "'self' 'wasm-unsafe-eval'"  # no inline script; WebAssembly for the in-browser model
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/static/app.js" type="module"' in page.text and "<script>" not in page.text
    preflight = client.options(
        "/api/v1/diagnose", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert (
        "access-control-allow-origin"
        not in client.get("/api/v1/model", headers={"Origin": "https://x.example"}).headers
    )


def test_an_unexpected_failure_is_a_json_500_and_the_server_keeps_serving(client, leaves, monkeypatch):
    service = client.app.state.service
    monkeypatch.setattr(service.store, "add", lambda new: (_ for _ in ()).throw(sqlite3.OperationalError("disk full")))
    raw = TestClient(client.app, raise_server_exceptions=False)  # no `with`: the app's lifespan stays the client's
    reply = raw.post("/api/v1/diagnose", files=[upload("a.jpg", leaves[0].read_bytes())])
    assert reply.status_code == 500 and "OperationalError" in reply.json()["error"]
    monkeypatch.undo()
    diagnose(client, leaves[0])


# --------------------------------------------------------------------------- photos


def test_exif_orientation_is_applied_exif_stripped_and_gps_kept(client, tmp_path):
    reply = client.post("/api/v1/diagnose", files=[upload("phone.jpg", photo_with_exif((60, 40), orientation=6))])
    record = reply.json()["results"][0]
    assert (record["width"], record["height"]) == (40, 60)  # rotated as the camera meant
    assert record["gps_latitude"] == pytest.approx(-14.5) and record["gps_longitude"] == pytest.approx(121.26)
    with Image.open(tmp_path / "data" / "photos" / record["photo_sha256"][:2] / f"{record['photo_sha256']}.jpg") as img:
        assert img.size == (40, 60) and not img.getexif() and "exif" not in img.info


def test_heic_photos_from_iphones_are_accepted(client, leaves):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    with Image.open(leaves[0]) as img:
        img.save(buffer, format="HEIF")
    reply = client.post("/api/v1/diagnose", files=[upload("IMG_0001.HEIC", buffer.getvalue(), "image/heic")])
    assert reply.status_code == 200, reply.text
    assert reply.json()["results"][0]["width"] == 64


def test_the_same_photo_twice_is_two_diagnoses_and_one_file(client, leaves, tmp_path):
    a, b = diagnose(client, leaves[0], leaves[0])
    assert a["id"] != b["id"] and a["photo_sha256"] == b["photo_sha256"]
    assert len(list((tmp_path / "data" / "photos").rglob("*.jpg"))) == 1


# --------------------------------------------------------------------------- Grad-CAM, class info, pages


def test_gradcam_overlay_for_a_checkpoint_and_a_clear_404_for_an_export(
    make_client, served_checkpoint, leaves, tmp_path
):
    client = make_client()
    (record,) = diagnose(client, leaves[0])
    overlay = client.get(record["gradcam_url"])
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(overlay.content)).size == (64, 64)
    onnx = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(served_checkpoint), "--output", str(onnx)]) == 0
    exported = make_client(model=onnx)
    (record,) = diagnose(exported, leaves[0])
    assert record["gradcam_url"] is None
    reply = exported.get(f"/api/v1/diagnoses/{record['id']}/gradcam.png")
    assert reply.status_code == 404 and "checkpoint" in reply.json()["error"]
    assert exported.get("/api/v1/model").json()["backend"] == "onnxruntime"


def test_class_info_replaces_the_built_in_card_for_an_answer_and_is_escaped(make_client, leaves, tmp_path):
    client = make_client()
    names = client.get("/api/v1/model").json()["classes"]  # healthy, brown_spot, blast, leaf_blight
    info = tmp_path / "info.json"
    info.write_text(
        json.dumps({names[0]: {"Symptoms": "<b>brown spots</b>", "Advice": "ask an agronomist"}, names[1]: "plain"})
    )
    client = make_client(class_info=str(info))
    service = client.app.state.service
    (record,) = diagnose(client, leaves[0])
    stored = service.store.get(record["id"])
    answer = service.describe(stored | {"status": "ok", "top_k": [{"label": names[0], "probability": 0.9}]})
    assert answer["class_info"] == [
        {"heading": "Symptoms", "text": "<b>brown spots</b>"},
        {"heading": "Advice", "text": "ask an agronomist"},
    ]
    assert answer["card"] is None  # the operator's text replaces the built-in card
    assert answer["verdict"]["headline"] == "Most likely Healthy rice plant (90.0%)."  # the card's name stays
    sure = service.describe(answer | {"top_k": [{"label": names[0], "probability": 0.99996}]})
    assert sure["verdict"]["headline"] == "Most likely Healthy rice plant (over 99.9%)."  # never 100.0%
    assert service.describe(answer, "vi")["verdict"]["headline"].startswith("Nhiều khả năng là Lá lúa khỏe")
    assert [percent(p, "en") for p in (0.0, 0.0001, 0.0123, 0.9994)] == ["0.0%", "under 0.1%", "1.2%", "99.9%"]
    blast = service.describe(stored | {"status": "ok", "top_k": [{"label": "blast", "probability": 0.9}]})
    assert blast["card"]["class"] == "blast" and blast["card"]["sources"] and blast["class_info"] == []
    assert blast["verdict"]["headline"] == "Most likely Blast (90.0%)."
    unsure = service.describe(stored | {"status": "unsure"})
    assert unsure["class_info"] == [] and unsure["card"] is None
    assert any("daylight" in tip for tip in unsure["verdict"]["tips"])
    from paddyclf.serve.app import templates

    html = str(templates("en").get_template("_card.html").make_module({"class_name": str}).card(answer))
    assert "&lt;b&gt;brown spots&lt;/b&gt;" in html and "<b>brown" not in html


def test_bad_class_info_files_are_clear_errors(tmp_path):
    path = tmp_path / "info.json"
    for content, words in [
        ("[1, 2]", "JSON object"),
        ('{"Rust": "x"}', "Rust"),
        ('{"a": 3}', "text"),
        ("{", "not valid JSON"),
    ]:
        path.write_text(content)
        with pytest.raises(UserError, match=words):
            load_class_info(str(path), ["a", "b"])
    with pytest.raises(UserError, match="not found"):
        load_class_info(str(tmp_path / "missing.json"), ["a"])


def test_pages_render_for_phone_and_desktop(client, leaves):
    home = client.get("/")
    assert 'accept="image/*"' in home.text and 'capture="environment"' in home.text and "multiple" in home.text
    assert 'name="viewport"' in home.text
    assert "<form" in home.text and 'enctype="multipart/form-data"' in home.text  # works without JavaScript too
    page = client.post("/", files=[upload(leaves[0].name, leaves[0].read_bytes())])
    assert page.text.count('<article class="card') == 1 and "<progress" in page.text
    empty = client.post("/", files=[upload("empty.jpg", b"")])
    assert empty.status_code == 422 and "empty" in empty.text and 'class="card error"' in empty.text
    history = client.get("/history")
    assert history.status_code == 200 and 'id="review-token"' in history.text and '<form class="review"' in history.text
    for asset in ("/static/app.js", "/static/app.css"):
        assert client.get(asset).status_code == 200


# --------------------------------------------------------------------------- batching and the store


def test_dynamic_batching_joins_concurrent_images_and_keeps_their_order():
    sizes = []

    def run(images: torch.Tensor) -> list[float]:
        sizes.append(len(images))
        return images.flatten(1)[:, 0].tolist()

    batcher = DynamicBatcher(run, max_batch=4, max_wait_s=0.5)
    futures = [batcher.submit(torch.full((3, 2, 2), float(i))) for i in range(6)]
    assert [f.result(timeout=10) for f in futures] == [float(i) for i in range(6)]
    assert sizes == [4, 2] and batcher.stats() == {"batches": 2, "images": 6, "largest_batch": 4}
    batcher.close()


def test_a_failing_batch_fails_its_requests_and_the_batcher_lives_on():
    calls = []

    def run(images: torch.Tensor) -> list[int]:
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("runtime crashed")
        return [1] * len(images)

    batcher = DynamicBatcher(run, max_batch=8, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="crashed"):
        batcher.submit(torch.zeros(3, 2, 2)).result(timeout=10)
    assert batcher.submit(torch.zeros(3, 2, 2)).result(timeout=10) == 1
    batcher.close()


def test_concurrent_requests_share_batches(make_client, leaves):
    client = make_client(max_wait_ms=200.0)
    errors = []

    def post(path):
        try:
            diagnose(client, path)
        except AssertionError as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(p,)) for p in leaves[:6]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and client.get("/api/v1/diagnoses").json()["total"] == 6
    assert client.get("/healthz").json()["batching"]["largest_batch"] > 1


def new_diagnosis(label: str = "a") -> NewDiagnosis:
    return NewDiagnosis("0" * 64, "x.jpg", 10, 10, [(label, 0.9), ("b", 0.1)], "ok", 1.5, "f" * 64)


def test_an_old_database_is_migrated_and_keeps_its_rows(tmp_path):
    connection = connect(tmp_path / DATABASE_NAME)
    migrate(connection, target=1)  # a history written by the first schema
    connection.execute(
        "INSERT INTO diagnoses (created_at, photo_sha256, original_name, width, height, predicted, confidence, status, "
        "top_k, model_sha256) VALUES ('2026-01-01', ?, 'old.jpg', 5, 5, 'a', 0.8, 'ok', '[[\"a\", 0.8]]', ?)",
        ("1" * 64, "2" * 64),
    )
    connection.close()
    store = Store(tmp_path)
    assert store.connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
    (old,) = store.page(1, 10)[0]
    assert old["original_name"] == "old.jpg" and old["reviewed_label"] is None
    assert store.review(old["id"], "b")["reviewed_label"] == "b"
    assert store.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.integrity() == "ok"
    store.close()


def test_a_database_from_a_newer_paddyclf_is_refused(tmp_path):
    connection = connect(tmp_path / DATABASE_NAME)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(UserError, match="newer"):
        Store(tmp_path)


def test_a_row_is_committed_before_add_returns(tmp_path):
    store = Store(tmp_path)
    record = store.add(new_diagnosis())
    other = sqlite3.connect(tmp_path / DATABASE_NAME)  # another process's view
    assert other.execute("SELECT original_name FROM diagnoses WHERE id = ?", (record["id"],)).fetchone() == ("x.jpg",)
    other.close()
    store.close()


def test_a_photo_is_fsynced_to_disk_before_its_row_is_committed(client, leaves, monkeypatch):
    """A power cut after the reply must not leave a row whose photo was still in the page cache."""
    events, real_fsync = [], os.fsync
    service = client.app.state.service
    real_add = service.store.add

    def fsync(fd: int) -> None:
        events.append("fsync " + ("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(service.store, "add", lambda new: (events.append("commit row"), real_add(new))[1])
    diagnose(client, leaves[0])
    assert events == ["fsync file", "fsync folder", "fsync file", "fsync folder", "commit row"]  # photo, thumbnail


def test_a_full_disk_is_a_507_naming_the_photo_and_serving_goes_on(client, leaves, monkeypatch):
    store = client.app.state.service.store
    (first,) = diagnose(client, leaves[0])
    # SQLite's own "database or disk is full": the database may not grow, and its pages fill up
    pages = store.connection.execute("PRAGMA page_count").fetchone()[0]
    store.connection.execute(f"PRAGMA max_page_count = {pages}")
    filler = store.add(new_diagnosis())["id"]
    for write in (lambda: store.add(new_diagnosis()), lambda: store.review(filler, first["predicted"])):
        with pytest.raises(DiskFullError):  # fill the diagnoses' pages, then the reviews'
            for _ in range(10_000):
                write()
    stored = client.get("/api/v1/diagnoses").json()["total"]
    refused = [client.post("/api/v1/diagnose", files=[upload("leaf.jpg", leaves[1].read_bytes())])]
    review = client.post(f"/api/v1/diagnoses/{first['id']}/review", json={"label": first["predicted"]}, headers=AUTH)
    store.connection.execute("PRAGMA max_page_count = 1073741823")
    # and the photo files: ENOSPC
    monkeypatch.setattr(store_module, "write_bytes_durably", disk_is_full)
    refused.append(client.post("/api/v1/diagnose", files=[upload("new.jpg", leaves[4].read_bytes())]))
    monkeypatch.undo()

    for reply in refused:
        error = reply.json()
        assert reply.status_code == 507 and "disk is full" in error["error"] and error["file"], error
    assert review.status_code == 507 and "nothing was changed" in review.json()["error"]
    assert client.get("/api/v1/diagnoses").json()["total"] == stored  # no half-written row
    assert client.get(f"/api/v1/diagnoses/{first['id']}").json()["reviewed_label"] is None
    assert diagnose(client, leaves[4])[0]["id"] > 0  # space again: serving goes on, the transaction was undone


def disk_is_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# --------------------------------------------------------------------------- CLI


def test_serve_refuses_bad_settings_with_exit_2(served_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PADDYCLF_REVIEW_TOKEN", raising=False)
    model = str(served_checkpoint)
    bad = tmp_path / "bad.json"
    bad.write_text('{"NoSuchClass": "x"}')
    cases = [
        ["--model", str(tmp_path / "missing.pt")],
        ["--model", model, "--review-token", "short"],
        ["--model", model, "--port", "0"],
        ["--model", model, "--max-upload-mb", "0"],
        ["--model", model, "--class-info", str(bad)],
        ["--model", model, "--top-k", "9"],
    ]
    for args in cases:
        assert main(["serve", *args, "--data-dir", str(tmp_path / "data")]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "Traceback" not in err


def test_serve_export_refuses_missing_or_unreviewed_histories(tmp_path, capsys):
    assert main(["serve-export", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "ds")]) == 2
    assert "no paddyclf history" in capsys.readouterr().err
    store = Store(tmp_path / "data")
    store.add(new_diagnosis())
    store.close()
    assert main(["serve-export", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "ds")]) == 2
    assert "No reviewed" in capsys.readouterr().err and not (tmp_path / "ds").exists()


def test_reviewed_photos_export_to_a_dataset_that_trains(make_client, leaves, tiny_data, tmp_path, capsys):
    client = make_client()
    truth = {p.name: p.parent.name for p in leaves}
    picked = [p for label in sorted(set(truth.values())) for p in [q for q in leaves if truth[q.name] == label][:4]]
    records = diagnose(client, *picked)
    for record in records:
        reply = client.post(
            f"/api/v1/diagnoses/{record['id']}/review", json={"label": truth[record["original_name"]]}, headers=AUTH
        )
        assert reply.status_code == 200
    # a second review corrects the first: the latest label wins
    client.post(
        f"/api/v1/diagnoses/{records[0]['id']}/review",
        json={"label": truth[records[-1]["original_name"]]},
        headers=AUTH,
    )
    client.post(
        f"/api/v1/diagnoses/{records[0]['id']}/review", json={"label": truth[records[0]["original_name"]]}, headers=AUTH
    )
    diagnose(client, leaves[-1])  # not reviewed: not exported
    out = tmp_path / "dataset"
    assert main(["serve-export", "--data-dir", str(tmp_path / "data"), "--out", str(out)]) == 0
    assert "Wrote 16 reviewed photos" in capsys.readouterr().out
    rows = list(__import__("csv").DictReader((out / "metadata.csv").open()))
    assert len(rows) == 16 and {r["label"] for r in rows} == set(truth.values())
    by_sha = {r["photo_sha256"]: truth[r["original_name"]] for r in records}
    for row in rows:
        assert (out / row["path"]).is_file() and by_sha[Path(row["path"]).stem] == row["label"]
    label2id = json.loads((out / "label2id.json").read_text())
    assert list(label2id) == client.get("/api/v1/model").json()["classes"]
    assert main(["serve-export", "--data-dir", str(tmp_path / "data"), "--out", str(out)]) == 2  # never overwrites
    plain = tmp_path / "plain"  # the dataset gets the permissions of a plain mkdir and open(), not mkdtemp's 0o700
    plain.mkdir()
    (plain / "file").write_text("")
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in (out, out / "metadata.csv", out / rows[0]["path"])}
    assert modes == {p.name: oct((plain if p == out else plain / "file").stat().st_mode & 0o777) for p in
                     (out, out / "metadata.csv", out / rows[0]["path"])}  # fmt: skip
    assert main(["audit", "--metadata", str(out / "metadata.csv"), "--output-dir", str(tmp_path / "audit")]) == 0
    trained = tmp_path / "retrained"
    args = ["--metadata", str(out / "metadata.csv"), "--label2id", str(out / "label2id.json"), "--image-size", "64"]
    args += [
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--num-workers",
        "0",
        "--device",
        "cpu",
        "--output-dir",
        str(trained),
    ]
    assert main(["train", *args]) == 0
    assert (trained / "MobileNetV3_Small_BoT_Linear_best.pt").is_file()


def test_records_survive_a_new_service_on_the_same_folder(served_checkpoint, leaves, tmp_path):
    config = ServeConfig(model=str(served_checkpoint), data_dir=str(tmp_path / "data"))
    service = DiagnosisService(config)
    (record,) = service.diagnose([(leaves[0].name, leaves[0].read_bytes())])
    service.close()
    again = DiagnosisService(config)
    assert again.record(record["id"])["photo_sha256"] == record["photo_sha256"]
    again.close()


def test_training_refuses_a_class_without_train_photos(tiny_data, tmp_path, capsys):
    label2id = json.loads((tiny_data / "label2id.json").read_text())
    (tmp_path / "label2id.json").write_text(json.dumps(label2id | {"never_photographed": len(label2id)}))
    args = ["train", "--metadata", str(tiny_data / "metadata.csv"), "--label2id", str(tmp_path / "label2id.json")]
    assert main([*args, "--epochs", "1", "--output-dir", str(tmp_path / "out")]) == 2
    assert "never_photographed" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_checkpoint_is_exported_once_for_the_browser_and_gives_the_predictors_logits(make_client, leaves):
    import onnxruntime as ort

    from paddyclf.data import build_transform
    from paddyclf.data.images import load_image

    client = make_client()
    service = client.app.state.service
    assert client.get("/api/v1/model").json()["browser_model"] == "/browser/model.onnx"
    reply = client.get("/browser/model.onnx")
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/octet-stream"
    meta = client.get("/browser/model.json").json()
    assert meta["classes"] == service.classes and meta["trust"]["temperature"] == service.predictor.trust.temperature
    assert meta["sha256"] == hashlib.sha256(reply.content).hexdigest()
    session = ort.InferenceSession(reply.content, providers=["CPUExecutionProvider"])
    image = build_transform(service.predictor.image_size, service.predictor.norm, train=False)(load_image(leaves[0]))
    logits, _ = session.run(None, {session.get_inputs()[0].name: image[None].numpy()})
    expected = service.predictor.outputs(image[None])
    np.testing.assert_allclose(logits, expected["logits"], atol=1e-4)
    cached = service.browser_model().path
    exported_at = cached.stat().st_mtime_ns
    again = make_client()  # a restart with the same --data-dir: the cached export, not a new one
    assert again.get("/browser/model.onnx").content == reply.content and cached.stat().st_mtime_ns == exported_at


def test_an_openvino_or_torchscript_server_has_no_browser_model(make_client, served_checkpoint, tmp_path):
    script = tmp_path / "model.ts"
    args = ["--checkpoint", str(served_checkpoint), "--format", "torchscript", "--output", str(script)]
    assert main(["export", *args]) == 0
    client = make_client(model=script)
    assert client.get("/api/v1/model").json()["browser_model"] is None
    reply = client.get("/browser/model.onnx")
    assert reply.status_code == 404 and "through the API" in reply.json()["error"]


def test_a_browser_model_that_cannot_be_exported_is_a_404_and_is_not_retried(make_client, monkeypatch):
    from paddyclf.serve import service as service_module

    calls = []

    def failing_export(*args):
        calls.append(args)
        raise RuntimeError("the exporter broke")

    monkeypatch.setattr(service_module, "browser_model", failing_export)
    client = make_client()
    for _ in range(2):
        reply = client.get("/browser/model.onnx")
        assert reply.status_code == 404 and "the exporter broke" in reply.json()["error"]
    assert len(calls) == 1
    assert client.get("/api/v1/model").status_code == 200  # the API serves on


def test_a_second_store_of_one_device_upload_raises_already_synced(tmp_path):
    from paddyclf.serve.store import AlreadySyncedError, DeviceReport

    store = Store(tmp_path)
    device = DeviceReport("phone-12345678", "ab" * 32, "ok", [("blast", 0.9)])
    new = NewDiagnosis("cd" * 32, "leaf.jpg", 64, 64, [("blast", 0.8)], "ok", 1.0, "ef" * 32, device=device)
    assert store.add(new)["device"]["id"] == "phone-12345678"
    with pytest.raises(AlreadySyncedError):
        store.add(new)
    assert store.page(1, 10)[1] == 1
    store.close()
