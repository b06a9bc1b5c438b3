"""The accuracy-aware INT8 search's policy, on fake evaluators: no quantizer, no model, milliseconds."""

from __future__ import annotations

import pytest

from paddyclf.cli import main
from paddyclf.errors import UserError
from paddyclf.export import ExportOptions, export_checkpoint
from paddyclf.export.int8_search import search_failure, search_kept_layers, search_record


class FakeModel:
    """Drop (points) as a function of how many of the most sensitive layers stay out of INT8; counts calls."""

    def __init__(self, drops: dict[int, float] | None = None, threshold: int | None = None, layers: int = 40):
        self.drops, self.threshold, self.layers, self.calls = drops or {}, threshold, layers, []

    def __call__(self, kept: int) -> float:
        assert 1 <= kept <= self.layers and kept not in self.calls  # never k = 0 (known), never twice
        self.calls.append(kept)
        if kept in self.drops:
            return self.drops[kept]
        return 0.5 if self.threshold is not None and kept >= self.threshold else 3.0


def test_a_plain_recipe_within_budget_costs_no_evaluation():
    fake = FakeModel(threshold=1)
    result = search_kept_layers(40, fake, max_drop=1.0, budget=8, plain_drop=0.4)
    assert fake.calls == [] and result.evaluations == 0 and result.chosen.kept == 0


def test_doubling_then_bisection_finds_the_smallest_passing_count():
    fake = FakeModel(threshold=11)  # 11 layers out of INT8 are needed
    result = search_kept_layers(40, fake, max_drop=1.0, budget=10, plain_drop=3.4)
    assert fake.calls == [1, 2, 4, 8, 16, 12, 10, 11]  # doubling to 16, bisection in (8, 16]
    assert result.best.kept == 11 and result.chosen.drop == 0.5 and result.evaluations == 8


def test_the_budget_caps_evaluations_and_the_answer_is_the_fewest_layers_measured_to_pass():
    fake = FakeModel(threshold=11)
    result = search_kept_layers(40, fake, max_drop=1.0, budget=6, plain_drop=3.4)
    assert fake.calls == [1, 2, 4, 8, 16, 12] and result.best.kept == 12


def test_doubling_stops_at_the_number_of_layers_and_a_failure_keeps_the_closest():
    fake = FakeModel({1: 2.9, 2: 2.5, 4: 1.7, 5: 1.2, 3: 2.2}, layers=5)  # not even all 5 layers suffice
    result = search_kept_layers(5, fake, max_drop=1.0, budget=8, plain_drop=3.4)
    assert fake.calls == [1, 2, 4, 5] and result.best is None
    assert result.closest.kept == 5 and result.closest.drop == 1.2 and result.chosen == result.closest


def test_a_non_monotone_drop_still_returns_a_measured_pass():
    fake = FakeModel({1: 3.0, 2: 0.8, 4: 2.0, 8: 0.2})  # keeping 2 passes; 4 does not
    result = search_kept_layers(40, fake, max_drop=1.0, budget=8, plain_drop=3.4)
    assert fake.calls == [1, 2] and result.best.kept == 2


def test_a_zero_budget_searches_nothing_and_a_negative_one_is_refused():
    fake = FakeModel(threshold=1)
    assert search_kept_layers(40, fake, 1.0, 0, 3.4).chosen.kept == 0 and fake.calls == []
    with pytest.raises(ValueError, match="budget"):
        search_kept_layers(40, fake, 1.0, -1, 3.4)


def test_the_failure_message_names_the_closest_model_and_the_record_its_layers():
    fake = FakeModel({1: 2.9, 2: 1.6}, layers=2)
    result = search_kept_layers(2, fake, max_drop=1.0, budget=8, plain_drop=3.4)
    record = search_record(result, ["conv_a", "conv_b"], "in float", 1.5, 8, "fake")
    assert record["kept_layers"] == ["conv_a", "conv_b"] and record["evaluations"] == 2
    assert [t["kept"] for t in record["trials"]] == [0, 1, 2] and record["plain_recipe_drop_points"] == 3.4
    message = search_failure(record, 1.6)
    assert "2 evaluation(s)" in message and "2 of 2 layers kept in float: 1.60 points below float" in message


def test_a_negative_search_budget_is_a_user_error(tmp_path, capsys):
    with pytest.raises(UserError, match="--search-evaluations must be >= 0"):
        export_checkpoint({"config": {}}, tmp_path / "m.onnx", "onnx-int8", ExportOptions(search_evaluations=-1))
    args = ["export", "--checkpoint", str(tmp_path / "none.pt"), "--format", "onnx-int8"]
    assert main([*args, "--output", str(tmp_path / "m.onnx"), "--search-evaluations", "-2"]) == 2
    assert "--search-evaluations" in capsys.readouterr().err and list(tmp_path.iterdir()) == []
