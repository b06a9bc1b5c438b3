"""`paddyclf cv` and `compare --test`: grouped folds, resumable runs, reproducible intervals and tests."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from paddyclf.cli import main
from paddyclf.selection.folds import fold_roles, grouped_folds, groups_crossing
from paddyclf.selection.summary import summarise
from paddyclf.stats import corrected_resampled_ttest, mcnemar_exact

MODELS = ("MobileNetV3_Small", "MobileNetV3_Small_BoT_Linear")


def test_grouped_folds_keep_every_group_in_one_fold_and_balance_the_classes():
    rng = np.random.default_rng(0)
    groups = [str(g) for g in rng.integers(0, 60, 300)]  # 60 groups of about 5 photos
    labels = [["a", "b", "c"][int(g) % 3] for g in groups]  # a group has one label
    folds = grouped_folds(labels, groups, n_folds=5, repeats=2, seed=7)
    assert folds.shape == (2, 300)
    for repeat in folds:
        for group in set(groups):
            assert len({repeat[k] for k, g in enumerate(groups) if g == group}) == 1
        for fold in range(5):
            share = Counter(lab for lab, f in zip(labels, repeat, strict=True) if f == fold)
            assert all(abs(n / sum(share.values()) - 1 / 3) < 0.12 for n in share.values())
            roles = fold_roles(repeat, fold, 5)
            assert groups_crossing(list(roles), groups) == []
            assert set(np.flatnonzero(roles == "valid")) == set(np.flatnonzero(repeat == (fold + 1) % 5))
    assert (folds[0] != folds[1]).any()  # another shuffle per repeat
    assert (grouped_folds(labels, groups, 5, 2, seed=7) == folds).all()  # and the same one for the same seed


def test_too_few_folds_or_groups_are_refused_in_words():
    from paddyclf.errors import UserError

    with pytest.raises(UserError, match="one fold tests, one validates"):
        grouped_folds(["a", "b"], ["1", "2"], n_folds=2, repeats=1, seed=0)
    with pytest.raises(UserError, match="distinct photo groups"):
        grouped_folds(["a"] * 4, ["1", "1", "2", "2"], n_folds=3, repeats=1, seed=0)


@pytest.fixture(scope="module")
def planted(tiny_data, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """tiny_data's metadata with no group column, plus an exact copy and a mirrored copy of 4 train
    photos: returns the CSV and {copy path: source path}."""
    root = tmp_path_factory.mktemp("planted")
    rows = list(csv.DictReader((tiny_data / "metadata.csv").open()))
    sources = [r for r in rows if r["split"] == "train"][::6][:4]
    copies = {}
    for k, row in enumerate(sources):
        source = (tiny_data / row["path"]).resolve()
        exact, mirrored = root / f"copy_{k}.jpg", root / f"mirror_{k}.png"
        shutil.copy(source, exact)
        ImageOps.mirror(Image.open(source)).save(mirrored)
        for path in (exact, mirrored):
            rows.append({"path": str(path), "label": row["label"], "split": "train"})
            copies[str(path)] = str(source)
    for row in rows:
        row["path"] = str((tiny_data / row["path"]).resolve())
    with (root / "metadata.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    shutil.copy(tiny_data / "label2id.json", root / "label2id.json")
    return root / "metadata.csv", copies


def cv_args(metadata: Path, out: Path, *extra: str) -> list[str]:
    return [
        "cv", "--metadata", str(metadata), "--label2id", str(metadata.parent / "label2id.json"),
        "--folds", "3", "--models", *MODELS, "--output-dir", str(out), "--epochs", "1", "--image-size", "64",
        "--batch-size", "8", "--num-workers", "0", "--device", "cpu", "--head-lr", "2e-3", "--base-lr", "1e-3", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cv_run(planted, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cv")
    assert main(cv_args(planted[0], out)) == 0
    return out


@pytest.mark.slow
def test_cv_keeps_planted_copies_in_their_sources_fold_and_the_test_split_out(planted, cv_run):
    metadata, copies = planted
    with (cv_run / "folds.csv").open() as fh:
        rows = {r["path"]: r for r in csv.DictReader(fh)}
    for copy, source in copies.items():
        assert rows[copy]["fold_r0"] == rows[source]["fold_r0"] and rows[copy]["group"] == rows[source]["group"]
    given = list(csv.DictReader(metadata.open()))
    tested = {r["path"] for r in given if r["split"] == "test"}
    assert tested and not tested & set(rows)  # the given test split is in no fold
    assert len(rows) == len(given) - len(tested)
    for fold in range(3):  # each run's metadata: fold k tests, fold k+1 validates, no group in two roles
        with (cv_run / "folds" / f"r0-f{fold}.csv").open() as fh:
            run_rows = list(csv.DictReader(fh))
        assert {r["path"] for r in run_rows if r["split"] == "test"} == {
            p for p, r in rows.items() if r["fold_r0"] == str(fold)
        }
        assert groups_crossing([r["split"] for r in run_rows], [r["group"] for r in run_rows]) == []


@pytest.mark.slow
def test_every_interval_and_test_is_reproduced_from_cv_json(cv_run):
    result = json.loads((cv_run / "cv.json").read_text())
    runs = result["runs"]
    assert len(runs) == 6 and {r["model"] for r in runs} == set(MODELS)
    assert json.loads(json.dumps(summarise(runs, list(MODELS), result["classes"]))) == result["summary"]
    pair = {(r["model"], r["fold"]): r for r in runs}
    diffs = [pair[(MODELS[0], k)]["accuracy"] - pair[(MODELS[1], k)]["accuracy"] for k in range(3)]
    n_train = np.mean([pair[(MODELS[0], k)]["n_train"] for k in range(3)])
    n_test = np.mean([pair[(MODELS[0], k)]["n_test"] for k in range(3)])
    stored = next(c for c in result["summary"]["comparisons"] if c["metric"] == "accuracy")
    assert stored["p_value"] == pytest.approx(corrected_resampled_ttest(diffs, n_train, n_test).p_value)
    for r in runs:  # each run's numbers are those of its evaluation
        evaluation = json.loads(
            (cv_run / "runs" / r["model"] / f"r0-f{r['fold']}" / "evaluation" / "evaluation.json").read_text()
        )
        assert (r["accuracy"], r["n_test"]) == (evaluation["accuracy"], evaluation["num_images"])
        assert r["nll"] == evaluation["trust"]["after"]["nll"] and set(r["per_class_f1"]) == set(result["classes"])
    report = (cv_run / "cv.md").read_text()
    assert "Nadeau-Bengio" in report and f"{stored['p_value']:.3g}" in report
    assert (cv_run / "cv_scores.png").stat().st_size > 10_000


@pytest.mark.slow
def test_an_interrupted_cv_resumes_and_refuses_other_settings(planted, cv_run, capsys):
    before = json.loads((cv_run / "cv.json").read_text())["runs"]
    (cv_run / "runs" / MODELS[1] / "r0-f2" / "fold.json").unlink()  # as if stopped during that run
    capsys.readouterr()
    assert main(cv_args(planted[0], cv_run, "--tensorboard", str(cv_run / "tb"))) == 0  # logging elsewhere is allowed
    out = capsys.readouterr().out
    assert (cv_run / "tb" / f"cv-{cv_run.name}" / "r0-f2" / MODELS[1]).is_dir()  # the retrained run, grouped
    assert out.count("finished earlier, read back") == 5 and out.count(": training ...") == 1
    after = json.loads((cv_run / "cv.json").read_text())["runs"]
    assert after[:5] == before[:5] and after[5]["accuracy"] == before[5]["accuracy"]  # same seed, same run
    assert main(cv_args(planted[0], cv_run, "--epochs", "2")) == 2
    assert "other settings (train, --epochs)" in capsys.readouterr().err
    original = planted[0].read_text()
    try:  # the same file with one photo fewer: other folds, so nothing may be read back
        planted[0].write_text("".join(original.splitlines(keepends=True)[:-1]))
        assert main(cv_args(planted[0], cv_run)) == 2
        assert "other settings (folds_sha256)" in capsys.readouterr().err
    finally:
        planted[0].write_text(original)


@pytest.mark.slow
def test_compare_test_gives_mcnemars_exact_test_on_the_shared_test_split(tiny_data, cv_run, tmp_path, capsys):
    a, b = (cv_run / "runs" / m / "r0-f0" / f"{m}_best.pt" for m in MODELS)
    assert main(["compare", "--test", str(tiny_data / "metadata.csv"), str(a), str(b), "--output", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "paired_test.json").read_text())
    table = report["mcnemar"]["table"]
    assert report["num_images"] == 8 == sum(map(sum, table))  # tiny_data's 8 test photos, each paired
    assert report["a"]["accuracy"] == (table[0][0] + table[0][1]) / 8
    assert report["b"]["accuracy"] == (table[0][0] + table[1][0]) / 8
    assert report["mcnemar"]["p_value"] == mcnemar_exact(tuple(map(tuple, table))).p_value
    with (tmp_path / "disagreements.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) >= table[0][1] + table[1][0]
    printed = capsys.readouterr().out
    assert report["verdict"] in printed and "McNemar exact p" in printed
    assert main(["compare", "--test", str(tiny_data / "metadata.csv"), str(a)]) == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--metadata", "missing.csv"], "missing.csv not found"),
        (["--folds", "2"], "--folds must be >= 3"),
        (["--repeats", "0"], "--repeats must be >= 1"),
        (["--epochs", "0"], "--epochs must be >= 1"),
    ],
)
def test_cv_refuses_bad_input_in_one_paragraph_before_training(tiny_data, tmp_path, capsys, args, needle):
    base = ["cv", "--metadata", str(tiny_data / "metadata.csv"), "--label2id", str(tiny_data / "label2id.json")]
    assert main([*base, "--output-dir", str(tmp_path / "cv"), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "cv" / "runs").exists()


def test_cv_refuses_a_metadata_whose_files_are_missing(tiny_data, tmp_path, capsys):
    metadata = tmp_path / "metadata.csv"
    metadata.write_text("path,label\nnowhere/a.jpg,healthy\n")
    assert main(["cv", "--metadata", str(metadata), "--label2id", str(tiny_data / "label2id.json")]) == 2
    assert "do not exist" in capsys.readouterr().err
