"""One answer from several leaves of a field: the combination rule and `paddyclf benchmark visit`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from paddyclf.cli import main
from paddyclf.trust import OK, OUT_OF_DISTRIBUTION, UNSURE, Trust, verdicts
from paddyclf.trust.calibration import calibrated_probabilities
from paddyclf.trust.visit import RULES, combine_visit

TRUST = Trust(temperature=2.0, unsure_below=0.7, ood_score="mahalanobis", ood_threshold=10.0, fit={"n": 1})


@pytest.mark.parametrize("rule", RULES)
def test_one_photo_gets_exactly_its_own_verdict(rule):
    rng = np.random.default_rng(0)
    logits, scores = rng.normal(0, 4, size=(50, 5)), rng.uniform(0, 20, size=50)
    probs = calibrated_probabilities(logits, TRUST.temperature)
    singles = verdicts(probs, scores, TRUST)
    for k in range(50):
        answer = combine_visit(logits[k : k + 1], scores[k : k + 1], TRUST, rule)
        assert answer.status == singles[k]
        np.testing.assert_allclose(answer.probabilities, probs[k], atol=1e-12)


def test_agreeing_unsure_photos_stay_unsure_by_the_mean_and_become_sure_by_the_product():
    leaning = np.array([[1.6, 0.0, 0.0], [2.0, 0.4, 0.0], [1.8, 0.0, 0.4]])  # each alone: p(0) < 0.7 at T=2
    assert set(verdicts(calibrated_probabilities(leaning, 2.0), np.zeros(3), TRUST)) == {UNSURE}
    assert combine_visit(leaning, np.zeros(3), TRUST, "mean").status == UNSURE
    product = combine_visit(leaning, np.zeros(3), TRUST, "product")
    assert product.status == OK and product.probabilities.argmax() == 0


@pytest.mark.parametrize("rule", RULES)
def test_rejected_photos_do_not_vote(rule):
    distinct = np.array([[1.6, 0.0, 0.0], [2.0, 0.4, 0.0], [1.8, 0.0, 0.4]])
    gated = np.vstack([distinct, [[-9.0, 9.0, 0.0]]])  # a fourth photo, strongly "class 1", but rejected
    answer = combine_visit(gated, np.array([1.0, 1.0, 1.0, 99.0]), TRUST, rule)
    assert answer.accepted == 3 and answer.probabilities.argmax() == 0
    np.testing.assert_allclose(answer.probabilities, combine_visit(distinct, np.zeros(3), TRUST, rule).probabilities)


def test_a_visit_with_no_accepted_photo_is_out_of_distribution():
    answer = combine_visit(np.array([[5.0, 0.0], [4.0, 0.0]]), np.array([11.0, 50.0]), TRUST)
    assert (answer.status, answer.accepted) == (OUT_OF_DISTRIBUTION, 0)


@pytest.mark.parametrize("rule", RULES)
def test_photos_that_disagree_give_an_unsure_visit(rule):
    answer = combine_visit(np.array([[6.0, 0.0, 0.0], [0.0, 6.0, 0.0]]), np.zeros(2), TRUST, rule)
    assert answer.status == UNSURE and answer.probabilities[0] == pytest.approx(answer.probabilities[1])


def test_an_uncalibrated_model_answers_every_visit():
    answer = combine_visit(np.array([[0.1, 0.0]]), None, Trust())
    assert answer.status == OK and answer.accepted == 1


def with_groups(tiny_data, tmp_path, groups_of) -> str:
    rows = list(csv.DictReader((tiny_data / "metadata.csv").open()))
    out = tmp_path / "metadata.csv"
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["path", "label", "split", "group"])
        writer.writeheader()
        for k, row in enumerate(rows):
            path = Path(row["path"])
            writer.writerow(row | {"path": path if path.is_absolute() else tiny_data / path, "group": groups_of(k)})
    return str(out)


def test_benchmark_visit_reports_each_size_and_rule_from_distinct_groups(served_checkpoint, tiny_data, tmp_path):
    metadata = with_groups(tiny_data, tmp_path, lambda k: f"g{k}")
    prefix = tmp_path / "visit"
    args = ["--checkpoint", str(served_checkpoint), "--metadata", metadata, "--split", "test"]
    assert main(["benchmark", "visit", *args, "--sizes", "1", "2", "--visits", "40", "--output", str(prefix)]) == 0
    result = json.loads(prefix.with_suffix(".json").read_text())
    assert [(r["size"], r["rule"]) for r in result["rows"]] == [
        (1, "mean"),
        (1, "product"),
        (2, "mean"),
        (2, "product"),
    ]
    assert result["photos"] == 8 and all(0 <= r["answered"] <= 1 and r["visits"] == 40 for r in result["rows"])
    one = result["rows"][:2]
    assert one[0] | {"rule": ""} == one[1] | {"rule": ""}  # for one photo both rules are that photo's verdict
    assert "| 2 | product |" in prefix.with_suffix(".md").read_text()


def test_benchmark_visit_needs_duplicate_groups_to_draw_distinct_leaves(served_checkpoint, tiny_data, tmp_path, capsys):
    args = ["benchmark", "visit", "--checkpoint", str(served_checkpoint), "--output", str(tmp_path / "v")]
    assert main([*args, "--metadata", str(tiny_data / "metadata.csv")]) == 2
    assert "no group column" in capsys.readouterr().err
    one_group = with_groups(tiny_data, tmp_path, lambda k: "same")  # every photo a copy of one leaf
    assert main([*args, "--metadata", one_group, "--sizes", "2"]) == 2
    assert "2 distinct duplicate groups" in capsys.readouterr().err


# --------------------------------------------------------------------------- visits in the web app


@pytest.fixture()
def client(served_checkpoint, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from paddyclf.serve.app import create_app
    from paddyclf.serve.config import ServeConfig

    with TestClient(create_app(ServeConfig(model=str(served_checkpoint), data_dir=str(tmp_path / "d")))) as client:
        yield client


def post_photos(client, paths, **params):
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    return client.post("/api/v1/diagnose", files=files, params=params)


def test_photos_of_one_field_get_one_answer_from_the_mean_of_their_log_probabilities(client, tiny_data):
    from paddyclf.trust.visit import combine_log_probabilities

    leaves = sorted((tiny_data / "images" / "blast").glob("*.jpg"))
    first = post_photos(client, leaves[:2], visit="new").json()
    visit = first["visit"]
    assert visit["photos"] == 2 and {r["visit_id"] for r in first["results"]} == {visit["id"]}
    more = post_photos(client, leaves[2:3], visit=str(visit["id"])).json()["visit"]
    assert more["id"] == visit["id"] and more["photos"] == 3
    stored = client.get(f"/api/v1/visits/{visit['id']}").json()
    assert [item["id"] for item in stored["items"]] == stored["diagnosis_ids"]
    probabilities = np.array([item["probabilities"] for item in stored["items"]])
    accepted = np.array([item["status"] != OUT_OF_DISTRIBUTION for item in stored["items"]])
    expected = combine_log_probabilities(np.log(np.clip(probabilities, 1e-12, 1)), accepted, 0.0)
    assert stored["top_k"][0]["probability"] == pytest.approx(expected.probabilities.max(), abs=1e-5)
    assert stored["accepted"] == int(accepted.sum()) and stored["verdict"]["headline"]
    assert post_photos(client, leaves[:1]).json()["visit"] is None  # no visit asked: as before


def test_a_bad_visit_or_a_bad_photo_starts_no_visit(client, tiny_data, tmp_path):
    leaf = sorted((tiny_data / "images" / "blast").glob("*.jpg"))[0]
    assert post_photos(client, [leaf], visit="999").status_code == 404
    assert post_photos(client, [leaf], visit="next").status_code == 422
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a photo")
    assert post_photos(client, [leaf, junk], visit="new").status_code == 415
    assert client.get("/api/v1/visits/1").status_code == 404
