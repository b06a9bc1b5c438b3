"""The review queue: its orders on known probabilities, copies counted once, the API and the page."""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pytest
from conftest import REVIEW_TOKEN, china_jpg
from PIL import Image
from test_i18n import VisibleText, catalogue

from paddyclf.benchmarks.review_queue import best_possible, mistake_recall
from paddyclf.cli import main
from paddyclf.data.dedupe import fingerprint_image
from paddyclf.serve import service as service_module
from paddyclf.serve.review_queue import (
    COPY_BITS,
    DEFAULT_STRATEGY,
    STRATEGIES,
    CopyKey,
    build_queue,
    copy_groups,
    sorted_probabilities,
)

AUTH = {"Authorization": f"Bearer {REVIEW_TOKEN}"}


def record(id_: int, probabilities: list[float], ood: float | None = 0.0, status: str = "ok", **extra) -> dict:
    top = sorted(probabilities, reverse=True)[:3]
    return {
        "id": id_,
        "probabilities": probabilities,
        "top_k": [{"label": f"c{i}", "probability": p} for i, p in enumerate(top)],
        "ood_score": ood,
        "status": status,
        "reviewed_label": None,
    } | extra


def order(records: list[dict], strategy: str, groups: np.ndarray | None = None, seed: int = 0) -> list[int]:
    groups = np.arange(len(records)) if groups is None else groups
    return [records[e.index]["id"] for e in build_queue(records, strategy, groups, 4, seed)]


# Four answers over 4 classes where the strategies disagree:
#   id  sorted p               1 - p1   1 - (p1 - p2)   entropy (nats)
#   1   .50 .48 .01 .01        .50      .98             .79
#   2   .40 .20 .20 .20        .60      .80             1.33
#   3   .97 .01 .01 .01        .03      .04             .17
#   4   .55 .15 .15 .15        .45      .60             1.25
KNOWN = [
    record(1, [0.50, 0.48, 0.01, 0.01], ood=2.0),
    record(2, [0.20, 0.40, 0.20, 0.20], ood=9.0, status="out_of_distribution"),
    record(3, [0.01, 0.97, 0.01, 0.01], ood=5.0),
    record(4, [0.15, 0.15, 0.55, 0.15], ood=7.0, status="out_of_distribution"),
]


def test_least_confidence_puts_the_lowest_top_probability_first():
    assert order(KNOWN, "least_confidence") == [2, 1, 4, 3]


def test_margin_puts_the_closest_two_classes_first():
    assert order(KNOWN, "margin") == [1, 2, 4, 3]


def test_entropy_puts_the_most_spread_out_answer_first():
    entries = build_queue(KNOWN, "entropy", np.arange(4), 4)
    assert [KNOWN[e.index]["id"] for e in entries] == [2, 4, 1, 3]
    assert entries[0].priority == pytest.approx(-(0.4 * math.log(0.4) + 3 * 0.2 * math.log(0.2)))


def test_ood_puts_answered_photos_first_most_unusual_first_then_refused_ones_nearest_the_threshold():
    # answered (ok): 3 (score 5) before 1 (score 2); refused: 4 (score 7) before 2 (score 9)
    assert order(KNOWN, "ood") == [3, 1, 4, 2]
    no_score = record(5, [0.9, 0.1, 0.0, 0.0], ood=None)
    assert order([no_score, *KNOWN], "ood")[-1] == 5


def test_ties_go_to_the_older_diagnosis():
    same = [record(i, [0.6, 0.4, 0.0, 0.0]) for i in (7, 3, 5)]
    assert order(same, "least_confidence") == [3, 5, 7]


def test_random_order_is_seeded_reproducible_and_keeps_its_order_when_rows_are_added():
    rows = [record(i, [0.7, 0.1, 0.1, 0.1]) for i in range(1, 41)]
    first = order(rows, "random", seed=0)
    assert first == order(rows, "random", seed=0)
    assert first != order(rows, "random", seed=1)
    assert first != sorted(first)  # not the id order
    more = order([*rows, *(record(i, [0.7, 0.1, 0.1, 0.1]) for i in range(41, 61))], "random", seed=0)
    assert [i for i in more if i <= 40] == first


def test_an_older_row_with_only_top_k_is_completed_with_its_missing_mass_spread_evenly():
    top_k = [{"label": "a", "probability": 0.6}, {"label": "b", "probability": 0.2}]
    old = {"id": 1, "probabilities": None, "top_k": top_k, "ood_score": None, "status": "ok"}
    assert sorted_probabilities([old], 4)[0] == pytest.approx([0.6, 0.2, 0.1, 0.1])
    assert order([record(2, [0.7, 0.1, 0.1, 0.1]), old], "least_confidence") == [1, 2]


def test_every_strategy_orders_every_row_once_and_the_default_is_one_of_them():
    assert DEFAULT_STRATEGY in STRATEGIES
    for strategy in STRATEGIES:
        assert sorted(order(KNOWN, strategy)) == [1, 2, 3, 4]


# --------------------------------------------------------------------------- copies


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def copy_key(name: str, image: Image.Image) -> CopyKey:
    fp = fingerprint_image(image)
    return CopyKey(name, fp.pixel_sha1, fp.whole, fp.crops)


def test_a_resized_reencoded_copy_joins_its_photo_and_a_distinct_photo_does_not():
    photo = Image.open(china_jpg()).convert("RGB")
    resized = Image.open(io.BytesIO(jpeg(photo.resize((384, 256)), quality=70))).convert("RGB")
    other = photo.transpose(Image.Transpose.FLIP_TOP_BOTTOM).crop((0, 0, 320, 213)).resize((640, 427))
    keys = [copy_key("a", photo), copy_key("a", photo), copy_key("b", resized), copy_key("c", other)]
    groups = copy_groups(keys)
    assert groups[0] == groups[1] == groups[2] != groups[3]
    assert copy_groups([CopyKey("x"), CopyKey("x"), CopyKey("y")]).tolist() == [0, 0, 1]  # unreadable: file hash
    assert COPY_BITS < 12


def test_a_copy_group_is_one_entry_its_highest_priority_member_listing_the_others():
    rows = [record(1, [0.9, 0.1, 0, 0]), record(2, [0.5, 0.5, 0, 0]), record(3, [0.7, 0.3, 0, 0])]
    entries = build_queue(rows, "least_confidence", np.array([0, 0, 1]), 4)
    assert [(rows[e.index]["id"], e.copies) for e in entries] == [(2, 2), (3, 1)]
    assert [rows[m]["id"] for m in entries[0].members] == [2, 1]


def test_a_reviewed_photo_and_its_unreviewed_copies_leave_the_queue():
    rows = [record(1, [0.5, 0.5, 0, 0], reviewed_label="c0"), record(2, [0.6, 0.4, 0, 0]), record(3, [0.8, 0.2, 0, 0])]
    assert order(rows, "least_confidence", np.array([0, 0, 1])) == [3]
    assert order(rows, "least_confidence") == [2, 3]


# --------------------------------------------------------------------------- the benchmark's measure


def test_mistake_recall_counts_the_wrong_entries_in_the_head_of_the_queue():
    wrong = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1], dtype=bool)
    assert mistake_recall(wrong, 0.1) == pytest.approx(1 / 3)
    assert mistake_recall(wrong, 0.2) == pytest.approx(1 / 3)
    assert mistake_recall(wrong, 0.3) == pytest.approx(2 / 3)
    assert math.isnan(mistake_recall(np.zeros(5, dtype=bool), 0.1))
    assert best_possible(10, 3, 0.2) == pytest.approx(2 / 3) and best_possible(10, 1, 0.2) == 1.0


def test_the_benchmark_writes_every_strategy_s_mistake_recall_on_a_tiny_dataset(tiny_data, tmp_path):
    out = tmp_path / "rq"
    data = ["--metadata", str(tiny_data / "metadata.csv"), "--label2id", str(tiny_data / "label2id.json")]
    small = ["--image-size", "64", "--batch-size", "8", "--num-workers", "0", "--device", "cpu", "--epochs", "1"]
    queue = ["--train-limit", "12", "--seeds", "0", "--random-seeds", "3", "--output", str(out)]
    assert main(["benchmark", "review-queue", *data, *small, *queue]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    summary = result["summary"]
    assert set(STRATEGIES) <= set(summary) and result["best_strategy"] in STRATEGIES
    for strategy in STRATEGIES:
        for level in ("entries", "photos"):
            cell = summary[strategy][level]["recall_at_10"]
            assert cell["n"] == 0 or 0.0 <= cell["mean"] <= 1.0
    assert summary["random"]["entries"]["recall_at_10"]["n"] in (0, 3)
    assert "mistake recall at 10%" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").stat().st_size > 0


def test_the_benchmark_without_train_limit_is_a_user_error(tiny_data, capsys):
    flags = ["--metadata", str(tiny_data / "metadata.csv"), "--label2id", str(tiny_data / "label2id.json")]
    assert main(["benchmark", "review-queue", *flags]) == 2
    assert "--train-limit" in capsys.readouterr().err
    assert main(["benchmark", "review-queue", *flags, "--train-limit", "999"]) == 2  # not below the train split
    assert "must be below" in capsys.readouterr().err


# --------------------------------------------------------------------------- the API and the page


def upload(name: str, data: bytes) -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (name, data, "image/jpeg"))


def test_the_queue_api_shows_each_photo_once_and_reviewed_ones_leave_it(client, tiny_data, monkeypatch):
    photo = Image.open(china_jpg()).convert("RGB")
    leaf = sorted((tiny_data / "images").rglob("*.jpg"))[0].read_bytes()
    files = [
        upload("a.jpg", china_jpg().read_bytes()),
        upload("a-again.jpg", china_jpg().read_bytes()),
        upload("a-small.jpg", jpeg(photo.resize((384, 256)), quality=70)),
        upload("leaf.jpg", leaf),
    ]
    ids = [r["id"] for r in client.post("/api/v1/diagnose", files=files).json()["results"]]
    calls = []
    fingerprint = service_module.fingerprint_file
    monkeypatch.setattr(service_module, "fingerprint_file", lambda path: calls.append(path) or fingerprint(path))

    queue = client.get("/api/v1/review-queue", params={"strategy": "least_confidence"}).json()
    assert queue["total"] == 2 and queue["strategy"] == "least_confidence"
    by_copies = {item["copies"]: item for item in queue["items"]}
    assert sorted(by_copies[3]["copy_ids"]) == ids[:3] and by_copies[1]["copy_ids"] == [ids[3]]
    priorities = [item["priority"] for item in queue["items"]]
    assert priorities == sorted(priorities, reverse=True)
    assert {"photo_url", "thumbnail_url", "verdict", "top_k", "status"} <= set(queue["items"][0])
    assert len(calls) == 3  # three distinct files, fingerprinted once each ...
    client.get("/api/v1/review-queue", params={"strategy": "entropy"})
    assert len(calls) == 3  # ... and kept

    label = by_copies[1]["predicted"]
    assert client.post(f"/api/v1/diagnoses/{ids[3]}/review", json={"label": label}, headers=AUTH).is_success
    after = client.get("/api/v1/review-queue").json()
    assert after["total"] == 1 and after["items"][0]["copies"] == 3
    paged = client.get("/api/v1/review-queue", params={"page": 2, "per_page": 1}).json()
    assert paged["items"] == [] and paged["total"] == 1


def test_an_unknown_strategy_is_a_422_json_error(client):
    reply = client.get("/api/v1/review-queue", params={"strategy": "loudest"})
    assert reply.status_code == 422
    assert set(reply.json()) <= {"error", "file"} and "least_confidence" in reply.json()["error"]
    assert client.get("/api/v1/review-queue", params={"per_page": 0}).status_code == 422


def test_the_review_page_lists_the_queue_in_vietnamese_and_the_history_links_to_it(client, tiny_data):
    leaf = sorted((tiny_data / "images").rglob("*.jpg"))[0]
    client.post("/api/v1/diagnose", files=[upload(leaf.name, leaf.read_bytes())])
    page = client.get("/review", params={"lang": "vi", "strategy": "margin"})
    assert page.status_code == 200
    assert "Hàng chờ duyệt" in page.text and "1 ảnh cần duyệt" in page.text
    assert "Số 1 trong hàng chờ" in page.text and 'class="review"' in page.text  # the expert's form
    assert 'value="margin" selected' in page.text and "/thumbs/" in page.text
    assert 'href="/review"' in client.get("/history", params={"lang": "vi"}).text
    text = VisibleText.of(page.text)
    for message in (m for m in catalogue("vi") if m.id and m.id != m.string):
        english = message.id if isinstance(message.id, str) else message.id[0]
        for fragment in re.split(r"%\(\w+\)s", english):
            if len(re.findall(r"[A-Za-z]{2,}", fragment)) >= 2:  # a phrase left in English
                assert fragment.strip() not in text, fragment
