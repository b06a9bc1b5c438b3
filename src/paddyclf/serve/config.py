"""Settings of ``paddyclf serve``: the one source of its defaults; ``paddyclf serve --help`` lists them as flags."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from ..errors import UserError
from ..options import option

TOKEN_ENVIRONMENT_VARIABLE = "PADDYCLF_REVIEW_TOKEN"
MIN_TOKEN_LENGTH = 8


@dataclass
class ServeConfig:
    model: str | None = option(
        None, "model to serve: a checkpoint (.pt) or an export (.onnx, .xml, .tflite, .ts); or --registry and --name"
    )
    registry: str | None = option(
        None,
        "serve the champion of --name from this MLflow model registry (a folder or a tracking URI); "
        "SIGHUP or POST /api/v1/model/reload swaps in a newly promoted champion without downtime",
    )
    name: str | None = option(None, "registered model name, with --registry")
    host: str = option("127.0.0.1", "address to bind; 0.0.0.0 opens the server to the network")
    port: int = option(8000, "TCP port")
    data_dir: str = option("serve_data", "folder of the SQLite database and the stored photos (created if missing)")
    review_token: str | None = option(
        None,
        f"token an expert gives to review labels (Authorization: Bearer TOKEN); default ${TOKEN_ENVIRONMENT_VARIABLE}, "
        "which keeps it out of the process list; without one, reviewing is off",
    )
    class_info: str | None = option(
        None, "JSON file: class name -> text (or {heading: text}) shown with that diagnosis, e.g. symptoms and advice"
    )
    max_upload_mb: float = option(20.0, "largest request body in MB (all photos of one upload), enforced while reading")
    max_megapixels: float = option(50.0, "largest photo in megapixels (decompression-bomb guard)")
    workers: int = option(1, "server processes; each loads the model once (SQLite in WAL mode serves them all)")
    max_batch: int = option(8, "dynamic batching: most photos of concurrent requests run through the model at once")
    max_wait_ms: float = option(2.0, "dynamic batching: how long the first photo waits for others to join its batch")
    threads: int | None = option(
        None,
        "CPU threads of the model runtime; default all cores but one, which is left to decoding and HTTP "
        "(measured in docs/BENCHMARKS.md section 8)",
    )
    top_k: int = option(3, "classes shown per photo")
    cross_origin_isolation: bool = option(
        False,
        "send COOP/COEP headers so that browsers may run the model with --browser-threads WASM threads "
        "(measured: docs/BENCHMARKS.md section 10)",
    )
    browser_threads: int = option(2, "WASM threads of the in-browser model when the page is cross-origin isolated")

    def with_environment(self) -> ServeConfig:
        """This config, the review token taken from ``$PADDYCLF_REVIEW_TOKEN`` when none was given."""
        token = self.review_token or os.environ.get(TOKEN_ENVIRONMENT_VARIABLE) or None
        return dataclasses.replace(self, review_token=token)

    @property
    def model_threads(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 2) - 1)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1_000_000)

    def validate(self) -> None:
        problems = []
        if bool(self.model) == bool(self.registry):
            problems.append("give either --model FILE or --registry URI|DIR with --name (one of them)")
        if bool(self.registry) != bool(self.name):
            problems.append("--registry and --name go together")
        if not 0 < self.port < 65536:
            problems.append(f"--port must be 1-65535 (got {self.port})")
        if self.max_upload_mb <= 0 or self.max_megapixels <= 0:
            problems.append("--max-upload-mb and --max-megapixels must be > 0")
        if self.workers < 1 or self.max_batch < 1 or self.top_k < 1 or self.max_wait_ms < 0:
            problems.append("--workers, --max-batch and --top-k must be >= 1 and --max-wait-ms >= 0")
        if self.browser_threads < 1:
            problems.append(f"--browser-threads must be >= 1 (got {self.browser_threads})")
        if self.threads is not None and self.threads < 1:
            problems.append(f"--threads must be >= 1 (got {self.threads})")
        if self.review_token is not None and len(self.review_token) < MIN_TOKEN_LENGTH:
            problems.append(
                f"the review token must be at least {MIN_TOKEN_LENGTH} characters (a short one is guessable)"
            )
        if problems:
            raise UserError("; ".join(problems) + ".")
