"""``paddyclf benchmark serve``: the web app under concurrent load vs the bare predictor, in one run.

The server is started as its own process on loopback (``paddyclf serve``, fresh data folder). The
baseline is the bare predictor in this process, one photo at a time on the same photos: decode,
preprocess, model. The load is ``--concurrency`` client threads, each posting one photo per request
to ``/api/v1/diagnose`` until ``--requests`` are done; every reply must be a 200 (a served photo is
stored and committed before its reply). With ``--malformed F`` a fraction F of the requests carry a
bad file instead (empty, not an image, SVG, truncated JPEG): each must get a 4xx, never a 5xx.
Baseline and load alternate over ``--rounds``; the ratio is the median of the per-round ratios.
The client threads run on the same cores as the server, so the ratio is a lower bound; they post
ready-made bodies over keep-alive ``http.client`` connections to keep their share small.
Then (unless ``--no-kill-check``) a kill round: a second server on a fresh history is killed with
SIGKILL mid-load, restarted on the same folder, and every diagnosis it had acknowledged is looked up
(record and photo), with SQLite's ``PRAGMA integrity_check``. Writes PREFIX.json and PREFIX.md.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import itertools
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import torch

from ..data import build_transform, collect_images, load_image
from ..errors import UserError
from ..fileio import atomic_write, write_json
from ..inference import load_predictor
from ..serve.store import DATABASE_NAME
from .common import PRINT, environment

TARGET_RATIO = 0.7
STARTUP_TIMEOUT_S = 180


def malformed_payloads(photo: bytes) -> list[tuple[str, bytes]]:
    """Bad uploads the server must refuse with a 4xx: (filename, bytes)."""
    return [
        ("empty.jpg", b""),
        ("notes.txt", b"this is not a photo\n" * 20),
        ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        ("truncated.jpg", photo[: max(len(photo) // 3, 200)]),
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: str | None, data_dir: Path, port: int, extra: list[str], log_path: Path) -> subprocess.Popen:
    """``paddyclf serve`` in its own process (``model`` None: ``extra`` says what to serve, e.g. ``--registry``);
    returns once /healthz answers (or raises with its log)."""
    import httpx

    command = [sys.executable, "-m", "paddyclf", "serve", *(["--model", model] if model else []), "--port", str(port)]
    command += ["--data-dir", str(data_dir), *extra]
    log = log_path.open("w")
    # its own session (process group): a SIGKILL to the group also reaches uvicorn's worker processes
    environment_ = os.environ | {"PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment_, start_new_session=True)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UserError(f"The server exited with code {process.returncode}:\n{log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    process.kill()
    raise UserError(f"The server did not answer /healthz within {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()[-2000:]}")


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in (50, 95, 99)} if len(ms) else {}


def bare_round(predictor, photos: list[bytes], requests: int) -> dict:
    """The baseline: one photo at a time through decode, preprocessing and the model."""
    transform = build_transform(predictor.image_size, predictor.norm, train=False)
    latencies = []
    start = time.perf_counter()
    for i in range(requests):
        t0 = time.perf_counter()
        predictor.diagnose(transform(load_image(io.BytesIO(photos[i % len(photos)]))).unsqueeze(0))
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    return {"images_per_s": round(requests / elapsed, 2), **percentiles(latencies)}


BOUNDARY = "paddyclf-benchmark-boundary"


def multipart(name: str, data: bytes) -> bytes:
    """A ``multipart/form-data`` body with one file in the field ``files`` (encoded once, posted many times)."""
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
    return head.encode() + b"Content-Type: image/jpeg\r\n\r\n" + data + f"\r\n--{BOUNDARY}--\r\n".encode()


class Poster:
    """One keep-alive HTTP/1.1 connection that posts ready-made bodies to ``/api/v1/diagnose``.

    The standard library's ``http.client``, not httpx: the load generator shares the cores with the
    server it measures, and httpx spent about 2 ms of CPU a request here (building the multipart
    body included), a fifth of what the server spends on a photo.
    """

    def __init__(self, url: str, timeout: float) -> None:
        self.connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=timeout)

    def post(self, body: bytes) -> tuple[int, bytes]:
        """(status, reply body); status -1 when the connection failed (the next post reconnects)."""
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        try:
            self.connection.request("POST", "/api/v1/diagnose", body=body, headers=headers)
            reply = self.connection.getresponse()
            return reply.status, reply.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            return -1, b""

    def close(self) -> None:
        self.connection.close()


def load_round(url: str, photos: list[bytes], requests: int, concurrency: int, malformed: float) -> dict:
    """``requests`` POSTs from ``concurrency`` threads; good photos must get 200, bad files a 4xx."""
    every = round(1 / malformed) if malformed > 0 else 0
    good_bodies = [multipart(f"photo-{i}.jpg", photo) for i, photo in enumerate(photos)]
    bad_bodies = [multipart(name, data) for name, data in malformed_payloads(photos[0])]

    def payload(i: int) -> tuple[bool, bytes]:
        if every and i % every == every - 1:
            return False, bad_bodies[(i // every) % len(bad_bodies)]
        return True, good_bodies[i % len(good_bodies)]

    def worker(indices: range) -> list[tuple[bool, int, float]]:
        out, poster = [], Poster(url, timeout=120)
        try:
            for i in indices:
                good, body = payload(i)
                t0 = time.perf_counter()
                status, _ = poster.post(body)
                out.append((good, status, time.perf_counter() - t0))
        finally:
            poster.close()
        return out

    chunks = [range(k, requests, concurrency) for k in range(concurrency)]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        replies = [r for chunk in pool.map(worker, chunks) for r in chunk]
    elapsed = time.perf_counter() - start
    good = [(s, t) for g, s, t in replies if g]
    bad_replies = [s for g, s, _ in replies if not g]
    return {
        "images_per_s": round(len(good) / elapsed, 2),
        **percentiles([t for s, t in good if s == 200]),
        "requests": len(replies),
        "errors": sum(s != 200 for s, _ in good),
        "malformed": len(bad_replies),
        "malformed_refused_4xx": sum(400 <= s < 500 for s in bad_replies),
        "malformed_5xx_or_failed": sum(not 400 <= s < 500 for s in bad_replies),
    }


def describe_round(run: dict) -> str:
    bare, served = run["bare"], run["served"]
    return (
        f"bare {bare['images_per_s']:.1f} img/s, served {served['images_per_s']:.1f} img/s "
        f"(p50 {served.get('p50_ms')} ms, p99 {served.get('p99_ms')} ms), ratio {run['ratio']:.2f}, "
        f"errors {served['errors']}, malformed refused {served['malformed_refused_4xx']}/{served['malformed']}"
    )


def post_until_gone(url: str, photos: list[bytes], acknowledged: dict, stop: threading.Event, lock: threading.Lock):
    """Post photos until the server dies or ``stop`` is set; record every acknowledged (200) diagnosis."""
    bodies = [multipart(f"p{i}.jpg", photo) for i, photo in enumerate(photos)]
    poster = Poster(url, timeout=30)
    try:
        for i in itertools.count():
            if stop.is_set():
                return
            status, reply = poster.post(bodies[i % len(bodies)])
            if status == -1:
                return  # the server is gone
            if status == 200:
                with lock:
                    acknowledged.update({r["id"]: r["photo_sha256"] for r in json.loads(reply)["results"]})
    finally:
        poster.close()


def stored_diagnoses(url: str) -> tuple[dict[int, str], int]:
    """Every stored diagnosis (id -> photo sha256) through the API, and how many of their photos do not load."""
    import httpx

    stored, page = {}, 1
    with httpx.Client(base_url=url, timeout=30) as client:
        while items := client.get(f"/api/v1/diagnoses?per_page=100&page={page}").json()["items"]:
            stored.update({r["id"]: r["photo_sha256"] for r in items})
            page += 1
        missing_photos = sum(client.get(f"/photos/{sha}.jpg").status_code != 200 for sha in set(stored.values()))
    return stored, missing_photos


def kill_round(
    model: str, folder: Path, photos: list[bytes], concurrency: int, serve_args: list[str], kill_after: int = 50
) -> dict:
    """SIGKILL a server mid-load, restart it on the same history, look up every acknowledged diagnosis."""
    import httpx

    data, port = folder / "killed", free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(model, data, port, serve_args, folder / "killed.log")
    acknowledged: dict[int, str] = {}
    stop, lock = threading.Event(), threading.Lock()
    clients = [
        threading.Thread(target=post_until_gone, args=(url, photos, acknowledged, stop, lock), daemon=True)
        for _ in range(concurrency)
    ]
    try:
        for client in clients:
            client.start()
        deadline = time.monotonic() + 120
        while len(acknowledged) < kill_after and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(server.pid, signal.SIGKILL)  # mid-load: requests are in flight
        server.wait(timeout=30)
    finally:
        stop.set()
        if server.poll() is None:
            server.kill()
        for client in clients:
            client.join(timeout=60)
    with contextlib.closing(sqlite3.connect(data / DATABASE_NAME)) as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    restarted = start_server(model, data, port, serve_args, folder / "restarted.log")
    try:
        stored, missing_photos = stored_diagnoses(url)
        after = httpx.post(f"{url}/api/v1/diagnose", files=[("files", ("after.jpg", photos[0]))], timeout=60)
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)
    lost = sorted(i for i, sha in acknowledged.items() if stored.get(i) != sha)
    return {
        "acknowledged_before_kill": len(acknowledged),
        "stored_after_restart": len(stored),
        "acknowledged_lost": len(lost),
        "photos_missing": missing_photos,
        "integrity_check": integrity,
        "serves_after_restart": after.status_code == 200,
        "ok": not lost and missing_photos == 0 and integrity == "ok" and len(acknowledged) > 0 and after.is_success,
    }


def run_serve_benchmark(
    model: str,
    images: list[str],
    concurrency: int = 8,
    requests: int = 400,
    rounds: int = 2,
    malformed: float = 0.0,
    serve_args: list[str] | None = None,
    output: str = "results/serve_benchmark",
    kill_check: bool = True,
    log=PRINT,
) -> dict:
    import httpx

    files = collect_images(images)
    photos = [Path(f).read_bytes() for f in files[:requests]]
    predictor = load_predictor(model)
    bare_round(predictor, photos, min(10, requests))  # warm-up
    with tempfile.TemporaryDirectory(prefix="paddyclf-serve-bench-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(model, Path(tmp) / "data", port, serve_args or [], Path(tmp) / "server.log")
        try:
            load_round(url, photos, min(2 * concurrency, requests), concurrency, 0.0)  # warm-up
            runs = []
            for r in range(rounds):
                bare = bare_round(predictor, photos, requests)
                served = load_round(url, photos, requests, concurrency, malformed)
                ratio = served["images_per_s"] / bare["images_per_s"]
                runs.append({"bare": bare, "served": served, "ratio": round(ratio, 3)})
                log(f"round {r + 1}/{rounds}: " + describe_round(runs[-1]))
            batching = httpx.get(f"{url}/healthz", timeout=10).json().get("batching", {})
        finally:
            server.terminate()
            server.wait(timeout=30)
        killed = kill_round(model, Path(tmp), photos, concurrency, serve_args or []) if kill_check else None
        if killed:
            log(
                f"kill -9 under load: {killed['acknowledged_before_kill']} acknowledged, "
                f"{killed['acknowledged_lost']} lost, {killed['photos_missing']} photos missing, "
                f"integrity_check {killed['integrity_check']}"
            )
    ratio = statistics.median(r["ratio"] for r in runs)
    errors = sum(r["served"]["errors"] + r["served"]["malformed_5xx_or_failed"] for r in runs)
    survives = killed is None or killed["ok"]
    result = {
        "model": str(model),
        "backend": predictor.backend,
        "photos": len(photos),
        "concurrency": concurrency,
        "requests_per_round": requests,
        "rounds": runs,
        "ratio_median": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "errors": errors,
        "meets_target": bool(ratio >= TARGET_RATIO and errors == 0 and survives),
        "server_batching": batching,
        "kill_check": killed,
        "serve_args": serve_args or [],
        "environment": environment(torch.device("cpu")),
    }
    write_json(Path(f"{output}.json"), result)
    atomic_write(Path(f"{output}.md"), lambda p: p.write_text(markdown(result)))
    log(f"served / bare = {ratio:.2f} (target {TARGET_RATIO}), errors {errors}; wrote {output}.json and {output}.md")
    return result


def markdown(result: dict) -> str:
    lines = [
        f"# `paddyclf benchmark serve`: {Path(result['model']).name} ({result['backend']})",
        "",
        f"{result['photos']} photos, {result['requests_per_round']} requests per round at concurrency "
        f"{result['concurrency']}, one photo per request. Bare = the predictor in-process, one photo at a time.",
        "",
        "| round | bare img/s | bare p50 ms | served img/s | served p50 ms | p95 ms | p99 ms | ratio | errors "
        "| malformed 4xx |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, run in enumerate(result["rounds"], 1):
        b, s = run["bare"], run["served"]
        lines.append(
            f"| {i} | {b['images_per_s']} | {b.get('p50_ms')} | {s['images_per_s']} | {s.get('p50_ms')} | "
            f"{s.get('p95_ms')} | {s.get('p99_ms')} | {run['ratio']} | {s['errors']} | "
            f"{s['malformed_refused_4xx']}/{s['malformed']} |"
        )
    batching = result["server_batching"]
    lines += [
        "",
        f"Median ratio served/bare: **{result['ratio_median']}** (target >= {result['target_ratio']}), "
        f"errors: **{result['errors']}**. Server batches: {batching.get('batches')} for {batching.get('images')} "
        f"photos, largest {batching.get('largest_batch')}.",
        "",
    ]
    killed = result["kill_check"]
    if killed:
        lines += [
            f"kill -9 under load, then restart: {killed['acknowledged_before_kill']} diagnoses acknowledged before "
            f"the kill, **{killed['acknowledged_lost']} lost**, {killed['photos_missing']} photos missing, "
            f"`PRAGMA integrity_check` **{killed['integrity_check']}** ({killed['stored_after_restart']} stored).",
            "",
        ]
    return "\n".join(lines)
