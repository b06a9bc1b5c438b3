"""`POST /api/v1/sync`: a diagnosis made offline on a phone reaches the history exactly once.

The key is (device_id, sha256 of the photo's bytes): replays, racing replays and retries after an
upload cut off mid-way each leave one row, with the phone's verdict beside the server's re-check.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from paddyclf.benchmarks.serve import free_port  # noqa: E402
from paddyclf.serve.app import create_app  # noqa: E402
from paddyclf.serve.config import ServeConfig  # noqa: E402
from paddyclf.serve.service import device_report  # noqa: E402

DEVICE = "phone-7f3a9c21"
TOP_K = json.dumps([{"label": "blast", "probability": 0.93}])
REPORT = {"device_id": DEVICE, "device_status": "ok", "device_top_k": TOP_K}


@pytest.fixture()
def client(served_checkpoint, tmp_path):
    config = ServeConfig(model=str(served_checkpoint), data_dir=str(tmp_path / "data"))
    with TestClient(create_app(config)) as client:
        yield client


@pytest.fixture()
def leaf(tiny_data) -> Path:
    return sorted((tiny_data / "images" / "blast").glob("*.jpg"))[0]


def sync(client, leaf: Path, **fields):
    files = {"file": (leaf.name, leaf.read_bytes(), "image/jpeg")}
    return client.post("/api/v1/sync", files=files, data=REPORT | fields)


def total(client) -> int:
    return client.get("/api/v1/diagnoses").json()["total"]


def test_an_offline_diagnosis_is_stored_once_beside_the_servers_recheck(client, leaf):
    first = sync(client, leaf, diagnosed_at="2026-12-03T06:15:00+07:00")
    assert first.status_code == 200, first.text
    record = first.json()
    assert record["replayed"] is False and record["status"] in ("ok", "unsure", "out_of_distribution")
    assert record["device"] == {
        "id": DEVICE,
        "upload_sha256": record["device"]["upload_sha256"],
        "status": "ok",
        "top_k": [{"label": "blast", "probability": 0.93}],
        "model_sha256": None,
        "diagnosed_at": "2026-12-03T06:15:00+07:00",
    }
    again = sync(client, leaf).json()  # the phone did not see the reply, and sends it again
    assert again["replayed"] is True and again["id"] == record["id"] and total(client) == 1
    assert client.get(f"/api/v1/diagnoses/{record['id']}").json()["device"]["status"] == "ok"
    other_phone = sync(client, leaf, device_id="phone-b0b0b0b0").json()
    assert other_phone["replayed"] is False and total(client) == 2
    uploaded = client.post("/api/v1/diagnose", files=[("files", (leaf.name, leaf.read_bytes(), "image/jpeg"))])
    assert uploaded.json()["results"][0]["device"] is None and total(client) == 3


def test_photos_of_a_visit_made_offline_join_one_server_visit(client, tiny_data):
    blast = sorted((tiny_data / "images" / "blast").glob("*.jpg"))[:3]
    records = [sync(client, leaf, device_visit="field-0001-aa").json() for leaf in blast[:2]]
    assert records[0]["visit_id"] is not None and records[0]["visit_id"] == records[1]["visit_id"]
    replay = sync(client, blast[0], device_visit="field-0001-aa").json()
    assert replay["replayed"] is True and replay["visit_id"] == records[0]["visit_id"]
    visit = client.get(f"/api/v1/visits/{records[0]['visit_id']}").json()
    assert visit["photos"] == 2 and visit["status"] in ("ok", "unsure", "out_of_distribution")
    # another phone's visit of the same name is another visit; a photo without one joins none
    other = sync(client, blast[2], device_id="phone-b0b0b0b0", device_visit="field-0001-aa").json()
    assert other["visit_id"] not in (None, records[0]["visit_id"])
    assert sync(client, blast[2]).json()["visit_id"] is None


def test_a_bad_visit_id_is_refused_and_stores_nothing(client, leaf):
    reply = sync(client, leaf, device_visit="../x")
    assert reply.status_code == 422 and "device_visit" in reply.json()["error"]
    assert total(client) == 0


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"device_id": "short"}, "device_id"),
        ({"device_id": "../../etc/passwd"}, "device_id"),
        ({"device_status": "sure"}, "device_status"),
        ({"device_top_k": "not json"}, "device_top_k"),
        ({"device_top_k": "[]"}, "device_top_k"),
        ({"device_top_k": '[{"label": "blast", "probability": 2}]'}, "device_top_k"),
        ({"device_top_k": '[{"label": "blast"}]'}, "device_top_k"),
        ({"device_top_k": "[" * 20_000}, "device_top_k"),  # nested past the parser's recursion limit
        ({"device_model_sha256": "abc"}, "device_model_sha256"),
        ({"diagnosed_at": "yesterday"}, "diagnosed_at"),
    ],
)
def test_a_bad_report_is_refused_and_stores_nothing(client, leaf, fields, words):
    reply = sync(client, leaf, **fields)
    assert reply.status_code == 422 and words in reply.json()["error"]
    assert total(client) == 0


def test_a_photo_that_is_not_an_image_is_refused_like_an_upload(client, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    assert sync(client, text).status_code == 415 and total(client) == 0


def test_racing_replays_of_one_upload_make_one_row(client, leaf):
    service = client.app.state.service
    report = device_report(DEVICE, "ok", REPORT["device_top_k"], leaf.read_bytes())
    results: list[dict] = []
    threads = [
        threading.Thread(target=lambda: results.append(service.sync((leaf.name, leaf.read_bytes()), report)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r["id"] for r in results}) == 1 and sorted(r["replayed"] for r in results) == [False, True, True, True]
    assert total(client) == 1


@pytest.fixture()
def server(served_checkpoint, tmp_path):
    """The app under uvicorn on loopback, in a thread: a real socket to cut an upload on."""
    config = ServeConfig(model=str(served_checkpoint), data_dir=str(tmp_path / "wire"), port=free_port())
    uv = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=config.port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield config.port
    uv.should_exit = True
    thread.join(timeout=30)


def test_a_sync_cut_off_mid_upload_stores_nothing_and_its_retry_stores_one_row(server, leaf):
    url = f"http://127.0.0.1:{server}"
    request = httpx.Request(
        "POST", url + "/api/v1/sync", files={"file": (leaf.name, leaf.read_bytes(), "image/jpeg")}, data=REPORT
    )
    body = request.read()
    head = f"POST /api/v1/sync HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    head += f"Content-Type: {request.headers['content-type']}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server)) as cut:  # the signal drops half-way through the photo
        cut.sendall(head.encode() + body[: len(body) // 2])
        cut.shutdown(socket.SHUT_WR)
        cut.settimeout(30)
        status_line = cut.recv(1024).split(b"\r\n")[0]  # the server closes it (or refuses it): no 200
        assert b" 200 " not in status_line, status_line
    assert httpx.get(url + "/api/v1/diagnoses").json()["total"] == 0
    files = {"file": (leaf.name, leaf.read_bytes(), "image/jpeg")}
    first = httpx.post(url + "/api/v1/sync", files=files, data=REPORT).json()
    again = httpx.post(url + "/api/v1/sync", files=files, data=REPORT).json()
    assert (first["replayed"], again["replayed"], first["id"]) == (False, True, again["id"])
    assert httpx.get(url + "/api/v1/diagnoses").json()["total"] == 1
