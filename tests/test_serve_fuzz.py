"""The JSON API fuzzed from its own OpenAPI schema (Schemathesis): no 5xx, every answer as documented.

Per operation, 100 generated requests that follow the schema and 100 that break it (wrong types,
out-of-range numbers, missing fields), in process (ASGI). Hypothesis is derandomized, so a run is
reproducible. The review token is sent, so reviews get past authentication and reach their own checks.
"""

from __future__ import annotations

from collections import Counter

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from paddyclf.serve.app import create_app  # noqa: E402
from paddyclf.serve.config import ServeConfig  # noqa: E402

pytestmark = pytest.mark.slow  # 1,300 generated requests: `make test`, not `make test-fast`
TOKEN = "fuzz-review-token"
EXAMPLES = 100
CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]  # fmt: skip
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True,
    phases=[Phase.explicit, Phase.generate],
)  # fmt: skip


@pytest.fixture()
def api_schema(served_checkpoint, tmp_path):  # one app per run: the ASGI client's exit runs its shutdown
    app = create_app(ServeConfig(model=str(served_checkpoint), data_dir=str(tmp_path / "data"), review_token=TOKEN))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def fuzz(operation, mode: GenerationMode, counts: Counter) -> None:
    """Hypothesis over one operation (schemathesis.pytest.from_fixture does not run under pytest 9)."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @FUZZ
    def answers_as_documented(case):
        counts[operation.label] += 1
        case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)

    answers_as_documented()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_api_operation_answers_as_documented_and_never_with_a_server_error(api_schema, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    with_inputs = {op.label for op in operations if op.path_parameters or op.query or op.body}
    assert len(with_inputs) >= 5
    counts: Counter = Counter()
    for operation in operations:
        if mode == GenerationMode.POSITIVE or operation.label in with_inputs:  # nothing to break without inputs
            fuzz(operation, mode, counts)
    assert all(counts[label] >= EXAMPLES for label in with_inputs), counts  # not cut short
