"""`paddyclf serve` as a real server process: kill -9 under load, oversize uploads on the wire, workers,
and `paddyclf benchmark serve` end to end."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from serve_helpers import upload  # noqa: E402

from paddyclf.benchmarks.serve import free_port, kill_round, start_server  # noqa: E402
from paddyclf.cli import main  # noqa: E402
from paddyclf.serve.store import DATABASE_NAME  # noqa: E402

pytestmark = pytest.mark.slow  # real server processes: `make test`, not `make test-fast`


@pytest.fixture(scope="module")
def leaves(tiny_data) -> list[Path]:
    return sorted((tiny_data / "images").rglob("*.jpg"))


def test_kill_9_under_load_loses_no_acknowledged_diagnosis(served_checkpoint, leaves, tmp_path):
    """4 clients posting; SIGKILL after 25 acknowledged diagnoses; restart on the same folder."""
    photos = [p.read_bytes() for p in leaves]
    killed = kill_round(str(served_checkpoint), tmp_path, photos, concurrency=4, serve_args=[], kill_after=25)
    assert killed["acknowledged_before_kill"] >= 25
    assert killed["acknowledged_lost"] == 0  # every acknowledged id is stored, with the same photo hash
    assert killed["photos_missing"] == 0 and killed["integrity_check"] == "ok"
    assert killed["stored_after_restart"] >= killed["acknowledged_before_kill"]
    assert killed["serves_after_restart"] and killed["ok"]
    connection = sqlite3.connect(tmp_path / "killed" / DATABASE_NAME)  # and directly, not through the server
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = connection.execute("SELECT COUNT(*) FROM diagnoses").fetchone()[0]
    connection.close()
    assert stored == killed["stored_after_restart"] + 1  # + the photo posted after the restart


def raw_request(port: int, head: bytes, body: bytes = b"") -> bytes:
    """Send a hand-made request (while reading: the server may answer before the body is all sent); the reply."""

    def send() -> None:
        with contextlib.suppress(OSError):  # the server may close the connection mid-body
            sock.sendall(head + body)

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sender = threading.Thread(target=send)
        sender.start()
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        sender.join(timeout=30)
    return b"".join(chunks)


def test_oversize_uploads_are_refused_on_the_wire_and_multiple_workers_serve(served_checkpoint, leaves, tmp_path):
    port = free_port()
    server = start_server(
        str(served_checkpoint), tmp_path / "data", port, ["--workers", "2", "--max-upload-mb", "1"], tmp_path / "s.log"
    )
    try:
        # a declared 500 MB body: refused from the headers, before the client has sent any of it
        head = (
            b"POST /api/v1/diagnose HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 500000000\r\nConnection: close\r\n\r\n"
        )
        reply = raw_request(port, head)
        assert reply.startswith(b"HTTP/1.1 413") and b"1 MB" in reply
        # an unsized (chunked) body is cut off as it passes the limit
        chunked = b"POST /api/v1/diagnose HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        chunked += b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        part = b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.jpg"\r\n\r\n' + b"x" * 65536
        piece = b"%x\r\n%s\r\n" % (len(part), part)
        reply = raw_request(port, chunked, piece + (b"%x\r\n%s\r\n" % (65536, b"x" * 65536)) * 40)  # 2.6 MB
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            for path in leaves[:6]:
                assert client.post("/api/v1/diagnose", files=[upload(path.name, path.read_bytes())]).status_code == 200
            assert client.get("/api/v1/diagnoses").json()["total"] == 6  # both workers write one history
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_benchmark_serve_reports_throughput_latency_and_refuses_malformed(served_checkpoint, tiny_data, tmp_path):
    output = tmp_path / "serve_benchmark"
    args = ["benchmark", "serve", "--model", str(served_checkpoint), "--images", str(tiny_data / "images")]
    args += ["--concurrency", "4", "--requests", "24", "--rounds", "1", "--malformed", "0.25", "--output", str(output)]
    args += ["--no-kill-check"]  # the kill round has its own test above
    assert main(args) == 0
    result = json.loads(output.with_suffix(".json").read_text())
    (run,) = result["rounds"]
    assert run["served"]["requests"] == 24 and run["served"]["malformed"] == 6
    assert run["served"]["malformed_refused_4xx"] == 6 and run["served"]["errors"] == 0 and result["errors"] == 0
    assert run["bare"]["images_per_s"] > 0 and run["served"]["p99_ms"] >= run["served"]["p50_ms"] > 0
    assert result["ratio_median"] == pytest.approx(
        run["served"]["images_per_s"] / run["bare"]["images_per_s"], rel=0.01
    )
    assert "| 1 |" in output.with_suffix(".md").read_text()
    assert result["kill_check"] is None
