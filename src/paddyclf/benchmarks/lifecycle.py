"""``paddyclf benchmark lifecycle``: the whole loop, from a champion to a better one served without downtime.

On a leak-free ``metadata.csv`` (``split`` column; ``group``, as ``prepare`` writes it):

1. The **base dataset** is ``--train-limit`` photos of the train split (the stratified subset
   ``--train-limit`` takes), the valid split and the test split. A champion is trained on it and
   registered (a local MLflow registry in the output folder).
2. ``paddyclf serve --registry`` serves it, and the **rest of the train split** (less copies of the
   champion's training photos) is posted to it as field photos.
3. An oracle expert reviews the first ``--review`` entries of the review queue (its default order)
   with their true labels.
4. ``retrain`` makes a candidate (the audit, the field test split, fine-tuning, the paired
   evaluation), ``registry promote`` gates it, and, while ``--clients`` clients post photos without
   pause, ``POST /api/v1/model/reload`` swaps it in.

Reported: accuracy of champion and candidate on the base test and field test splits (paired, the
gate's), the gate's decision, every request of the load round (before, during and after the swap),
the errors among them (target 0), which version answered each, and the time the swap took.
Writes PREFIX.json and PREFIX.md.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from ..data import load_label2id, read_metadata, resolve_samples
from ..data.metadata import split_samples, stratified_subset
from ..errors import UserError
from ..fileio import write_csv
from ..lifecycle import RetrainConfig, run_retrain
from ..registry import GateRefusedError, ModelRegistry, NewVersion, PromotionRequest, promote, register_checkpoint
from ..training.config import TrainConfig
from .common import PRINT, environment, write_results
from .review_queue import field_photos
from .serve import Poster, free_port, multipart, start_server
from .trust import train_quietly

NAME = "rice"
TOKEN = "lifecycle-benchmark-token"


def base_dataset(config: TrainConfig, out: Path) -> Path:
    """The champion's dataset: the ``train_limit`` subset of the train split, all of valid and test."""
    label2id = load_label2id(config.label2id)
    rows = read_metadata(config.metadata)
    tagged = resolve_samples(rows, Path(config.metadata).resolve().parent, label2id)
    kept = {
        s.path for s in stratified_subset(split_samples(tagged, config.seed)["train"], config.train_limit, config.seed)
    }
    names = {i: n for n, i in label2id.items()}
    base = [{"path": str(s.path.resolve()), "label": names[s.label], "split": split}
            for s, split in tagged if split in ("valid", "test") or s.path in kept]  # fmt: skip
    return write_csv(out / "base_metadata.csv", ["path", "label", "split"], base)


class Client:
    """JSON requests to the server, over one keep-alive connection."""

    def __init__(self, url: str) -> None:
        self.connection = http.client.HTTPConnection(urlsplit(url).netloc, timeout=300)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        self.connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        reply = self.connection.getresponse()
        return reply.status, json.loads(reply.read() or b"{}")


def post_field_photos(url: str, samples: list, names: dict[int, str], clients: int) -> dict[str, str]:
    """Post every photo (``clients`` at a time); photo sha256 as stored -> its true label."""
    truth: dict[str, str] = {}
    lock = threading.Lock()

    def worker(part: list) -> None:
        poster = Poster(url, timeout=300)
        for sample in part:
            status, body = poster.post(multipart(sample.path.name, sample.path.read_bytes()))
            if status != 200:
                raise UserError(f"Posting {sample.path} failed with HTTP {status}: {body[:200]!r}")
            with lock:
                truth[json.loads(body)["results"][0]["photo_sha256"]] = names[sample.label]
        poster.close()

    threads = [threading.Thread(target=worker, args=(samples[k::clients],)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return truth


def review_queue_head(url: str, truth: dict[str, str], count: int) -> dict:
    """The oracle reviews the first ``count`` entries of the default queue with the true labels."""
    client, reviewed, wrong = Client(url), 0, 0
    while reviewed < count:
        status, page = client.call("GET", f"/api/v1/review-queue?per_page={min(100, count - reviewed)}")
        if status != 200 or not page["items"]:
            break
        for item in page["items"]:
            label = truth[item["photo_sha256"]]
            wrong += label != item["predicted"]
            status, _ = client.call("POST", f"/api/v1/diagnoses/{item['id']}/review", {"label": label})
            if status != 200:
                raise UserError(f"Reviewing diagnosis {item['id']} failed with HTTP {status}.")
            reviewed += 1
    return {"reviewed": reviewed, "wrong_answers_found": wrong, "strategy": page.get("strategy")}


def swap_under_load(url: str, photos: list[bytes], clients: int, settle_s: float) -> dict:
    """``clients`` threads post without pause; after ``settle_s`` the swap; ``settle_s`` later they stop."""
    requests: list[tuple[float, float, int, str | None]] = []
    lock, stop = threading.Lock(), threading.Event()
    bodies = [multipart(f"load-{i}.jpg", p) for i, p in enumerate(photos)]

    def worker(k: int) -> None:
        poster, i = Poster(url, timeout=300), k
        while not stop.is_set():
            t0 = time.monotonic()
            status, body = poster.post(bodies[i % len(bodies)])
            version = json.loads(body)["results"][0]["model_version"] if status == 200 else None
            with lock:
                requests.append((t0, time.monotonic(), status, version))
            i += clients
        poster.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(settle_s)
    sent = time.monotonic()
    status, swap = Client(url).call("POST", "/api/v1/model/reload")
    answered = time.monotonic()
    time.sleep(settle_s)
    stop.set()
    for thread in threads:
        thread.join()
    during = [r for r in requests if r[0] < answered and r[1] > sent]
    versions: dict[str, int] = {}
    for r in requests:
        versions[str(r[3])] = versions.get(str(r[3]), 0) + 1
    return {
        "clients": clients,
        "reload_status": status,
        "reload": swap,
        "swap_wall_s": round(answered - sent, 3),
        "requests": len(requests),
        "requests_during_swap": len(during),
        "errors": sum(r[2] != 200 for r in requests),
        "errors_during_swap": sum(r[2] != 200 for r in during),
        "answered_by": versions,
        "new_version_after_swap": all(r[3] == swap.get("version") for r in requests if r[0] > answered),
    }


def run_lifecycle_benchmark(
    config: TrainConfig,
    review: int,
    clients: int,
    settle_s: float,
    output: str | Path,
    work_dir: str | Path | None = None,
    log=PRINT,
) -> dict:
    """The loop of the module docstring; its files (registry, history, retrain) go to ``work_dir``
    (default ``<output>_work``)."""
    if config.train_limit is None:
        raise UserError("--train-limit is needed (e.g. 150): the champion learns from that many train photos.")
    folder = Path(work_dir or f"{output}_work")
    folder.mkdir(parents=True, exist_ok=True)
    label2id = load_label2id(config.label2id)
    names = {i: n for n, i in label2id.items()}
    samples, _ = field_photos(config.metadata, label2id, config.train_limit, config.seed)
    base_csv = base_dataset(config, folder)
    based = dataclasses.replace(config, metadata=str(base_csv), train_limit=None, output_dir=str(folder / "champion"))
    started = time.perf_counter()
    champion = train_quietly(based)
    registry = ModelRegistry(folder / "registry")
    register_checkpoint(registry, champion, NAME, NewVersion(metadata=base_csv, base_test=base_csv))
    log(f"Champion trained and registered ({time.perf_counter() - started:.0f} s); serving it ...")
    port = free_port()
    serve_args = ["--registry", str(folder / "registry"), "--name", NAME, "--review-token", TOKEN]
    server = start_server(None, folder / "serve", port, serve_args, folder / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        truth = post_field_photos(url, samples, names, clients)
        posted_s = time.perf_counter() - t0
        log(
            f"Posted {len(samples)} field photos ({len(truth)} distinct files) in {posted_s:.0f} s; the oracle "
            f"reviews the queue's first {review} ..."
        )
        reviewed = review_queue_head(url, truth, review)
        t0 = time.perf_counter()
        retrain = RetrainConfig(
            str(folder / "registry"), NAME, str(folder / "serve"), output_dir=str(folder / "retrain")
        )
        report = run_retrain(retrain, dataclasses.replace(based, output_dir="."), log)
        retrain_s = time.perf_counter() - t0
        version = report["candidate"]["version"]
        try:
            gate = promote(registry, NAME, PromotionRequest(version, output_dir=folder / "gate"))["gate"]
            promoted = True
        except GateRefusedError as exc:
            gate, promoted = {"passed": False, "failures": [str(exc)]}, False
        log(f"Retrained in {retrain_s:.0f} s; the gate {'passed' if promoted else 'refused'} version {version}.")
        photos = [s.path.read_bytes() for s in samples[:64]]
        swap = swap_under_load(url, photos, clients, settle_s) if promoted else None
    finally:
        server.terminate()
        server.wait(timeout=60)
    result = {
        "setup": {"metadata": config.metadata, "train_limit": config.train_limit, "epochs": config.epochs,
                  "model": config.model, "image_size": config.image_size, "recipe": config.recipe,
                  "seed": config.seed, "field_photos_posted": len(samples), "distinct_photos_stored": len(truth),
                  "post_seconds": round(posted_s, 1)},
        "review": reviewed,
        "retrain": {"photos": report["photos"], "seconds": round(retrain_s, 1), "evaluation": report["gate_preview"]},
        "gate": gate,
        "promoted": promoted,
        "swap": swap,
        "environment": environment(__import__("torch").device("cpu")),
    }  # fmt: skip
    write_results(output, result, markdown(result))
    return result


def markdown(result: dict) -> str:
    setup, photos = result["setup"], result["retrain"]["photos"]
    splits = result["retrain"]["evaluation"]["splits"]
    lines = [
        f"# The lifecycle on {Path(setup['metadata']).name}: champion, field photos, review, retrain, gate, swap",
        "",
        f"Champion: {setup['model']} at {setup['image_size']} px, {setup['train_limit']} training photos, "
        f"{setup['epochs']} epochs, recipe {setup['recipe']}, seed {setup['seed']}. "
        f"{setup['field_photos_posted']} field photos posted ({setup['post_seconds']} s; "
        f"{setup['distinct_photos_stored']} distinct files, the rest exact copies); the oracle reviewed "
        f"{result['review']['reviewed']} queue entries ({result['review']['strategy']} order), "
        f"{result['review']['wrong_answers_found']} of them wrong answers.",
        "",
        f"Retrain ({result['retrain']['seconds']} s): {photos['train']} reviewed photos trained on, "
        f"{photos['field_test']} in the field test split, {photos['excluded']} excluded as copies of base "
        "valid or test photos.",
        "",
        "| split | photos | champion | candidate | difference (points) | McNemar p |",
        "|---|---|---|---|---|---|",
    ]
    for split, s in splits.items():
        lines.append(
            f"| {split.replace('_', ' ')} | {s['photos']} | {s['champion_accuracy']:.4f} | "
            f"{s['candidate_accuracy']:.4f} | {s['difference_points']:+.2f} | {s['mcnemar_p']:.3g} |"
        )
    gate = result["gate"]
    lines += ["", f"Gate: {'passed' if gate['passed'] else 'refused: ' + '; '.join(gate['failures'])}.", ""]
    swap = result["swap"]
    if swap:
        lines += [
            f"Swap under load ({swap['clients']} clients posting without pause):",
            "",
            "| requests | during the swap | errors | errors during it | swap (server) | swap (wall) | answered by |",
            "|---|---|---|---|---|---|---|",
            f"| {swap['requests']} | {swap['requests_during_swap']} | {swap['errors']} | {swap['errors_during_swap']} "
            f"| {swap['reload'].get('seconds')} s | {swap['swap_wall_s']} s | "
            + ", ".join(f"{v}: {n}" for v, n in sorted(swap["answered_by"].items()))
            + " |",
            "",
        ]
    return "\n".join(lines)
