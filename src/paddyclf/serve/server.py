"""Run the app under uvicorn: one process, or ``--workers N`` processes that each load the model once."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

from ..errors import UserError
from .config import ServeConfig
from .errors import RequestError
from .offline import MISSING_RUNTIME, RUNTIME, runtime_available

WORKER_READY_TIMEOUT_S = 120


def require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UserError(
            f"`paddyclf serve` needs the web extra ({exc.name} is missing): pip install 'paddyclf[serve]'."
        ) from None


def startup_report(config: ServeConfig, service) -> list[str]:
    """What ``serve`` says as it starts: where, the browser model (exported now for a checkpoint, so that
    the first phone does not wait), and what is off: the in-browser diagnosis without ONNX Runtime Web,
    reviewing without a token."""
    where = f"http://{config.host}:{config.port}"
    lines = [f"paddyclf serve: {config.model} ({service.predictor.backend}) at {where}, history in {config.data_dir}"]
    if service.has_browser_model:
        try:
            browser = service.browser_model()
            lines.append(f"  browser model: {browser.path} ({browser.size_bytes / 1e6:.1f} MB)")
        except RequestError as exc:
            lines.append(f"  warning: {exc.message} Pages diagnose through the API.")
    if not runtime_available():
        lines.append("  warning: " + MISSING_RUNTIME.format(folder=RUNTIME))
    if config.review_token is None:
        lines.append("  reviewing is off (give --review-token or $PADDYCLF_REVIEW_TOKEN to turn it on)")
    return lines


def serve(config: ServeConfig) -> None:
    """Serve until Ctrl-C. Bad settings, a bad model or class-info file fail here, before binding the port."""
    require_serve_extra()
    import uvicorn

    from .app import SETTINGS_ENVIRONMENT_VARIABLE, create_app
    from .service import DiagnosisService

    config = config.with_environment()
    config.validate()
    service = DiagnosisService(config)
    for line in startup_report(config, service):
        print(line)
    options = {"host": config.host, "port": config.port, "log_level": "info", "timeout_graceful_shutdown": 5}
    if config.workers == 1:
        uvicorn.run(create_app(config, service), **options)
        return
    service.close()  # it was the pre-flight check; every worker process loads its own
    os.environ[SETTINGS_ENVIRONMENT_VARIABLE] = json.dumps(asdict(config))
    uvicorn.run(
        "paddyclf.serve.app:app_from_environment",
        factory=True,
        workers=config.workers,
        # a new worker imports torch and loads (and, from a registry, checks) the model: 5-15 s on 2 cores,
        # past uvicorn's default of 5 s, after which a SIGHUP's rolling restart gives up on it
        timeout_worker_healthcheck=WORKER_READY_TIMEOUT_S,
        **options,
    )
