"""The FastAPI app of ``paddyclf serve``: routes and pages, a thin layer over :class:`~.service.DiagnosisService`.

Pages (server-rendered, Jinja2 with autoescaping; a little plain JS in ``static/app.js``):
``/`` diagnose, ``/history`` history and review, ``/review`` the review queue. JSON API under
``/api/v1`` (OpenAPI at ``/docs``), ``/healthz``. Every refusal is a 4xx JSON body
``{"error": ..., "file": ...}`` (the diagnose page shows it as a card instead); anything unexpected
is a 500 JSON body and the server keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import mimetypes
import os
import signal
import threading
from contextlib import asynccontextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from babel.numbers import format_decimal
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__, i18n
from ..data.transforms import pillow_vertical_first
from ..i18n import translations
from .config import ServeConfig
from .errors import RequestError
from .offline import MANIFEST_URL, SERVICE_WORKER_URL, OfflineApp, manifest, runtime_available
from .review_queue import DEFAULT_STRATEGY, STRATEGIES
from .service import DiagnosisService, check_token, device_report
from .store import STATUSES, DiskFullError, Filters

HERE = Path(__file__).parent
SETTINGS_ENVIRONMENT_VARIABLE = "PADDYCLF_SERVE_SETTINGS"  # how uvicorn's worker processes get the settings
# no inline script, nothing from elsewhere; 'wasm-unsafe-eval' lets ONNX Runtime Web compile its WASM
# (and nothing else: eval() stays refused); blob: shows a photo diagnosed on the phone
PAGE_POLICY = (
    b"default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data: blob:; "
    b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# cross-origin isolation (--cross-origin-isolation): SharedArrayBuffer, so the WASM runtime may use threads
ISOLATION_HEADERS = [
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
]
# Swagger UI and ReDoc (served from the package, offline) start with an inline script
DOCS_POLICY = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; worker-src 'self' blob:; object-src 'none'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]

LANGUAGE_COOKIE = "paddyclf_language"
LANGUAGE_COOKIE_SECONDS = 365 * 24 * 3600


def breakable(text: str) -> Markup:
    """``text`` escaped, with a line-break opportunity after each underscore: a class name such as
    bacterial_leaf_blight wraps between its words on a phone, not in the middle of one."""
    return escape(text).replace("_", Markup("_<wbr>"))


@lru_cache(maxsize=16)  # one per language with a catalogue
def templates(language: str) -> Environment:
    """The page templates in ``language``: Jinja2's i18n extension over that language's catalogue."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True),
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations(language), newstyle=True)
    env.filters["breakable"] = breakable
    env.globals |= {
        "lang": language,
        "percent": lambda p: i18n.percent(p, language),
        "number": lambda n: format_decimal(n, locale=language),
        "date_time": lambda iso: i18n.date_time(datetime.fromisoformat(iso), language),
        "languages": [(code, i18n.native_name(code)) for code in i18n.languages()],
        "script_messages": i18n.script_messages(language),
    }
    return env


def request_language(request: Request) -> str:
    """The visitor's language: ``?lang=``, else the remembered choice (a cookie), else ``Accept-Language``."""
    chosen = request.query_params.get("lang") or request.cookies.get(LANGUAGE_COOKIE)
    return i18n.negotiate(request.headers.get("accept-language"), chosen)


Language = Annotated[str, Depends(request_language)]
bearer = HTTPBearer(auto_error=False, description="the server's review token")


class SecurityHeaders:
    """Pure ASGI middleware: a strict Content-Security-Policy (no inline script, nothing from elsewhere) and friends."""

    def __init__(self, app, isolated: bool = False) -> None:
        self.app = app
        self.extra = [*SECURITY_HEADERS, *(ISOLATION_HEADERS if isolated else [])]

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        policy = DOCS_POLICY if path.startswith(DOCS_PATHS) else PAGE_POLICY
        # the API's words follow Accept-Language (and the language cookie), like the pages'
        vary = [(b"vary", b"accept-language, cookie")] if path.startswith("/api/") else []

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"content-security-policy", policy),
                    *self.extra,
                    *vary,
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


def revalidated(response: Response) -> Response:
    """Browsers ask again (a 304 when unchanged) rather than guess a file is fresh from its age: a new
    paddyclf's scripts reach the page, and its service worker never keeps an old one."""
    response.headers["cache-control"] = "no-cache"
    return response


class PrecompressedStaticFiles(StaticFiles):
    """Static files, sent from a ``NAME.gz`` copy beside ``NAME`` when the browser accepts gzip (ONNX
    Runtime Web's 14 MB WASM file goes as 3.7 MB); ETag and If-None-Match work as for any static file."""

    async def get_response(self, path: str, scope) -> Response:
        accepts = b"gzip" in dict(scope.get("headers", [])).get(b"accept-encoding", b"")
        compressed = Path(self.directory) / (path + ".gz")
        if not (accepts and scope["method"] in ("GET", "HEAD") and compressed.is_file()):
            return revalidated(await super().get_response(path, scope))
        response = revalidated(await super().get_response(path + ".gz", scope))
        media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        response.headers["content-type"] = media_type
        response.headers["content-encoding"] = "gzip"
        response.headers["vary"] = "accept-encoding"
        return response


class BodyTooLarge(StarletteHTTPException):
    def __init__(self) -> None:
        super().__init__(413, "Content Too Large")


class BodyLimit:
    """Pure ASGI middleware: refuse a request body over ``max_bytes`` while it streams in.

    A declared Content-Length over the limit is refused before a byte is read; a chunked body is
    counted as it arrives and refused as soon as it passes the limit (the route's form parser sees
    an HTTP 413, which the app's handler turns into the JSON error). Starlette's own limiter
    answers in plain text, which would break the JSON contract.
    """

    def __init__(self, app, max_bytes: int, body: dict) -> None:
        self.app, self.max_bytes, self.body = app, max_bytes, body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse(self.body, status_code=413, headers={"connection": "close"})
            return await response(scope, receive, send)
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        await self.app(scope, counted_receive, send)


class Review(BaseModel):
    label: str


class ErrorBody(BaseModel):
    """Every refusal (4xx) and every unexpected failure (500): what went wrong, and which file when one did."""

    error: str
    file: str | None = None


# documented on every API route, so that clients (and the schema fuzz test) know every answer's shape
ERROR_RESPONSES: dict[int | str, dict] = {
    "4XX": {"model": ErrorBody, "description": "refused: the request, a photo or the token"},
    "5XX": {
        "model": ErrorBody,
        "description": "an unexpected failure (500) or a full disk (507); the server keeps serving",
    },
}


async def read_uploads(files: list[UploadFile]) -> list[tuple[str | None, bytes]]:
    return [(f.filename, await f.read()) for f in files]


def too_large(config: ServeConfig) -> dict:
    return {"error": f"The upload is larger than this server's limit of {config.max_upload_mb:g} MB (--max-upload-mb)."}


def error_body(exc: StarletteHTTPException, config: ServeConfig) -> dict:
    return too_large(config) if exc.status_code == 413 else {"error": str(exc.detail)}


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":  # its loc is ("body", character offset), not a field
            parts.append(f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'invalid')})")
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    return "Invalid request: " + "; ".join(parts) + "."


def parse_reviewed(value: str | None) -> bool | None:
    if value in (None, ""):
        return None
    if value.lower() in ("yes", "true", "1"):
        return True
    if value.lower() in ("no", "false", "0"):
        return False
    raise RequestError(422, f"reviewed must be yes or no (got {value!r}).")


def create_app(config: ServeConfig, service: DiagnosisService | None = None) -> FastAPI:
    """The app; it loads the model (once) unless given a ``service``."""
    service = service or DiagnosisService(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        reload_on_hangup(config, service)
        yield
        service.close()

    app = FastAPIOffline(  # a FastAPI whose /docs and /redoc need no CDN
        title="paddyclf",
        version=__version__,
        description="Rice leaf-disease diagnosis: photos in, verdicts out, with history and expert review.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=config.max_upload_bytes, body=too_large(config))
    app.add_middleware(SecurityHeaders, isolated=config.cross_origin_isolation)
    app.mount("/static", PrecompressedStaticFiles(directory=HERE / "static"), name="static")
    offline = OfflineApp()
    in_browser = service.has_browser_model and runtime_available()

    @app.exception_handler(RequestError)
    async def request_error(_: Request, exc: RequestError) -> JSONResponse:
        headers = {"www-authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)

    @app.exception_handler(DiskFullError)
    async def disk_full(_: Request, exc: DiskFullError) -> JSONResponse:  # a review, say; a photo names its file
        return JSONResponse({"error": f"The server's disk is full ({exc}); nothing was changed."}, status_code=507)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc, config), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": validation_message(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"Internal error ({type(exc).__name__}); the server keeps running."}, 500)

    def render(request: Request, language: str, name: str, status: int = 200, **context) -> HTMLResponse:
        """A page in ``language``; a language chosen with ``?lang=`` is remembered in a cookie."""
        wording = service.wording

        def language_url(code: str) -> str:
            kept = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
            return request.url.path + "?" + urlencode([*kept, ("lang", code)])

        html = (
            templates(language)
            .get_template(name)
            .render(
                model=service.model_info(),
                class_name=lambda label: wording.class_name(label, language),
                class_names=[wording.class_name(label, language) for label in service.classes],
                status_name=lambda status: wording.status_name(status, language),
                language_url=language_url,
                browser_wording=wording.for_browser(language, config.top_k),
                in_browser=in_browser,
                service_worker=SERVICE_WORKER_URL,
                manifest_url=MANIFEST_URL,
                threads=config.browser_threads,
                **context,
            )
        )
        response = HTMLResponse(html, status_code=status, headers={"vary": "accept-language, cookie"})
        if request.query_params.get("lang") == language:
            response.set_cookie(LANGUAGE_COOKIE, language, max_age=LANGUAGE_COOKIE_SECONDS, samesite="lax")
        return response

    # ------------------------------------------------------------------ pages

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def diagnose_page(request: Request, language: Language) -> HTMLResponse:
        return render(request, language, "index.html", page="diagnose", results=[])

    @app.post("/", response_class=HTMLResponse, include_in_schema=False)
    async def diagnose_form(
        request: Request,
        language: Language,
        files: Annotated[list[UploadFile], File()] = None,  # noqa: B008
        visit: Annotated[str | None, Form()] = None,
    ) -> HTMLResponse:
        try:
            results = await run_in_threadpool(service.diagnose, await read_uploads(files or []), language, visit)
            answer = None
            if visit:
                answer = await run_in_threadpool(service.visit_answer, results[0]["visit_id"], language)
        except RequestError as exc:
            error = exc.to_json()
            return render(request, language, "index.html", exc.status, page="diagnose", results=[], error=error)
        return render(request, language, "index.html", page="diagnose", results=results, visit=answer)

    @app.get("/history", response_class=HTMLResponse, include_in_schema=False)
    def history_page(
        request: Request,
        language: Language,
        predicted: str | None = None,
        status: str | None = None,
        reviewed: str | None = None,
        model_version: str | None = None,
        page: int = 1,
    ) -> HTMLResponse:
        filters = Filters(predicted or None, status or None, parse_reviewed(reviewed), model_version or None)
        history = service.history(page, 20, filters, language)
        query = {"predicted": predicted or "", "status": status or "", "reviewed": reviewed or "",
                 "model_version": model_version or ""}  # fmt: skip

        def page_url(number: int) -> str:
            return "/history?" + urlencode({k: v for k, v in query.items() if v} | {"page": number})

        pages = max(1, math.ceil(history["total"] / history["per_page"]))
        reviewing = config.review_token is not None
        return render(
            request, language, "history.html", page="history", history=history, filters=filters,
            statuses=STATUSES, pages=pages, page_url=page_url, reviewing=reviewing,
            versions=service.store.model_versions(),
        )  # fmt: skip

    @app.get("/review", response_class=HTMLResponse, include_in_schema=False)
    def review_page(
        request: Request, language: Language, strategy: str = DEFAULT_STRATEGY, page: int = 1
    ) -> HTMLResponse:
        queue = service.review_queue(strategy, page, 20, language)
        pages = max(1, math.ceil(queue["total"] / queue["per_page"]))
        _ = i18n.translations(language).gettext
        strategy_names = {
            "least_confidence": _("least confident answer first"),
            "margin": _("closest runner-up first"),
            "entropy": _("most spread-out answer first"),
            "ood": _("most unusual photo first"),
            "random": _("random order"),
        }

        def page_url(number: int) -> str:
            return "/review?" + urlencode({"strategy": strategy, "page": number})

        return render(
            request, language, "review.html", page="review", queue=queue, strategies=STRATEGIES,
            strategy_names=strategy_names, default_strategy=DEFAULT_STRATEGY, pages=pages, page_url=page_url,
            reviewing=config.review_token is not None,
        )  # fmt: skip

    @app.get("/photos/{sha256}.jpg", include_in_schema=False)
    def photo(sha256: str) -> FileResponse:
        return FileResponse(service.photo_file(sha256, "photos"), media_type="image/jpeg")

    @app.get("/thumbs/{sha256}.jpg", include_in_schema=False)
    def thumbnail(sha256: str) -> FileResponse:
        return FileResponse(service.photo_file(sha256, "thumbs"), media_type="image/jpeg")

    @app.get(SERVICE_WORKER_URL, include_in_schema=False)
    def service_worker() -> Response:
        """The service worker that keeps the page, its scripts, ONNX Runtime Web and the model (offline use)."""
        headers = {"cache-control": "no-cache"}
        return Response(offline.service_worker(in_browser), media_type="text/javascript", headers=headers)

    @app.get(MANIFEST_URL, include_in_schema=False)
    def web_manifest(language: Language) -> Response:
        _ = i18n.translations(language).gettext
        body = manifest(_("paddyclf: rice leaf diagnosis"), "paddyclf", _("Diagnose a rice leaf"), language)
        headers = {"vary": "accept-language, cookie"}
        return Response(json.dumps(body, ensure_ascii=False), media_type="application/manifest+json", headers=headers)

    @app.get("/browser/model.onnx", include_in_schema=False)
    async def browser_onnx(sha256: str | None = None) -> FileResponse:
        """The served model as ONNX, for ONNX Runtime Web (exported from a checkpoint the first time).

        ``?sha256=`` names the file's hash (from /browser/model.json): that URL never changes its
        content, so browsers keep it; another hash is a 404 (the server now serves another model)."""
        model = await run_in_threadpool(service.browser_model)
        if sha256 is not None and sha256 != model.sha256:
            raise RequestError(404, "The server now serves another model; reload the page.")
        cache = "public, max-age=31536000, immutable" if sha256 else "no-cache"
        return FileResponse(model.path, media_type="application/octet-stream", headers={"cache-control": cache})

    @app.get("/browser/model.json", include_in_schema=False)
    async def browser_metadata() -> dict:
        """Its sidecar: classes, preprocessing, temperature and thresholds, and the model's sha256."""
        model = await run_in_threadpool(service.browser_model)
        return model.metadata | model.describe() | {"pillow_vertical_first": pillow_vertical_first()}

    # ------------------------------------------------------------------ JSON API

    @app.post("/api/v1/diagnose", tags=["diagnose"], responses=ERROR_RESPONSES)
    async def diagnose(
        files: Annotated[list[UploadFile], File(description="one or more photos")],
        language: Language,
        visit: Annotated[
            str | None, Query(description="new: these photos start a visit (one field); ID: add them to that visit")
        ] = None,
    ) -> dict:
        """Diagnose photos; each is stored (and committed) before the reply. One bad file refuses the request.

        The verdict's words, the class names and the disease card are in the ``Accept-Language`` language.
        With ``visit``, the reply's ``visit`` is the visit's one answer from all its photos so far."""
        results = await run_in_threadpool(service.diagnose, await read_uploads(files), language, visit)
        answer = None
        if visit:
            answer = await run_in_threadpool(service.visit_answer, results[0]["visit_id"], language)
        return {"results": results, "visit": answer}

    @app.get("/api/v1/visits/{visit_id}", tags=["history"], responses=ERROR_RESPONSES)
    def visit_answer(visit_id: int, language: Language) -> dict:
        """A visit's one answer (each photo the OOD gate accepted votes), and its photos' records."""
        return service.visit_answer(visit_id, language, with_items=True)

    @app.post("/api/v1/sync", tags=["diagnose"], responses=ERROR_RESPONSES)
    async def sync(
        file: Annotated[UploadFile, File(description="the photo, as the phone diagnosed it")],
        device_id: Annotated[str, Form(description="a random id the phone keeps (8-64 of A-Z a-z 0-9 - _)")],
        device_status: Annotated[str, Form(description="the phone's verdict: ok, unsure or out_of_distribution")],
        device_top_k: Annotated[str, Form(description='JSON [{"label": NAME, "probability": P}, ...]')],
        language: Language,
        device_model_sha256: Annotated[str | None, Form(description="the model the phone ran")] = None,
        diagnosed_at: Annotated[str | None, Form(description="when, by the phone's clock (ISO 8601)")] = None,
        device_visit: Annotated[
            str | None, Form(description="the phone's id of the visit (one field) the photo belongs to")
        ] = None,
    ) -> dict:
        """A diagnosis made offline on a phone, stored exactly once with the server's own re-check.

        ``(device_id, sha256 of the photo's bytes)`` makes it idempotent: sending it again returns the
        stored record with ``"replayed": true``. The record is committed before the reply."""
        data = await file.read()
        report = device_report(device_id, device_status, device_top_k, data, device_model_sha256, diagnosed_at)
        return await run_in_threadpool(service.sync, (file.filename, data), report, language, device_visit)

    @app.get("/api/v1/model", tags=["model"], responses=ERROR_RESPONSES)
    def model_info() -> dict:
        """Classes, input size, calibration thresholds, the sha256 of the served model file and its registry
        version (``name/vN``, or null for a file)."""
        return service.model_info()

    @app.post("/api/v1/model/reload", tags=["model"], responses=ERROR_RESPONSES)
    def reload_model(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
    ) -> dict:
        """Serve the registry's champion now, without downtime (``serve --registry``; the review token).

        With one process: loaded beside the old model, checked, swapped between batches; the reply says
        ``swapped`` (with the seconds it took) or ``unchanged``, and a version that fails its check is
        refused (409) while the old one serves on. With ``--workers N``: uvicorn replaces the workers one
        by one, each loading and checking the champion before the old one stops (``restarting``)."""
        check_token(config.review_token, credentials.credentials if credentials else None)
        if config.workers > 1 and config.registry:
            os.kill(os.getppid(), signal.SIGHUP)  # uvicorn's supervisor: a rolling restart of the workers
            return {"status": "restarting", "version": service.served.version}
        return service.reload()

    @app.get("/api/v1/diagnoses", tags=["history"], responses=ERROR_RESPONSES)
    def diagnoses(
        page: Annotated[int, Query(ge=1)] = 1,
        per_page: Annotated[int, Query(ge=1, le=100)] = 20,
        predicted: str | None = None,
        status: str | None = None,
        reviewed: Annotated[str | None, Query(description="yes or no")] = None,
        model_version: Annotated[str | None, Query(description="the registry version that answered: rice/v2")] = None,
        language: Language = "en",
    ) -> dict:
        """Stored diagnoses, newest first: ``{"items": [...], "total": T, "page": N, "per_page": M}``."""
        filters = Filters(predicted or None, status or None, parse_reviewed(reviewed), model_version or None)
        return service.history(page, per_page, filters, language)

    @app.get("/api/v1/review-queue", tags=["history"], responses=ERROR_RESPONSES)
    def review_queue(
        strategy: Annotated[
            str, Query(description=f"the order: {', '.join(STRATEGIES)} (default: {DEFAULT_STRATEGY})")
        ] = DEFAULT_STRATEGY,
        page: Annotated[int, Query(ge=1)] = 1,
        per_page: Annotated[int, Query(ge=1, le=100)] = 20,
        language: Language = "en",
    ) -> dict:
        """The unreviewed diagnoses, the likeliest wrong first, copies of one photo once: ``{"items": [...],
        "total": T, "page": N, "per_page": M, "strategy": S}``; each item is a record as in the history plus
        ``priority`` (higher: sooner), ``copies`` (diagnoses it stands for, itself included) and ``copy_ids``."""
        return service.review_queue(strategy, page, per_page, language)

    @app.get("/api/v1/diagnoses/{diagnosis_id}", tags=["history"], responses=ERROR_RESPONSES)
    def diagnosis(diagnosis_id: int, language: Language) -> dict:
        return service.record(diagnosis_id, language)

    @app.post("/api/v1/diagnoses/{diagnosis_id}/review", tags=["history"], responses=ERROR_RESPONSES)
    def review(
        diagnosis_id: int,
        body: Review,
        language: Language,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
    ) -> dict:
        """An expert confirms or corrects the label (one of the model's classes); needs the review token."""
        token = credentials.credentials if credentials else None
        return service.review(diagnosis_id, body.label, token, language)

    @app.get(
        "/api/v1/diagnoses/{diagnosis_id}/gradcam.png",
        tags=["history"],
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "the overlay"}, **ERROR_RESPONSES},
    )
    async def gradcam(diagnosis_id: int) -> Response:
        """Grad-CAM of the predicted class over the stored photo (checkpoints only)."""
        return Response(await run_in_threadpool(service.gradcam_png, diagnosis_id), media_type="image/png")

    @app.get("/healthz", tags=["model"], responses=ERROR_RESPONSES)
    def healthz() -> dict:
        """Liveness, the served model, and how the dynamic batcher has batched so far (this process)."""
        served = service.served
        return {"status": "ok", "model_sha256": served.sha256, "model_version": served.version,
                "batching": served.batcher.stats()}  # fmt: skip

    return app


def reload_on_hangup(config: ServeConfig, service: DiagnosisService) -> None:
    """One server process serving a registry: SIGHUP swaps in the champion (``--workers N``: uvicorn's own
    SIGHUP replaces the workers instead). Only the main thread's event loop can take a signal."""
    if not config.registry or config.workers > 1 or threading.current_thread() is not threading.main_thread():
        return
    log = logging.getLogger("uvicorn.error")

    def reload() -> None:
        try:
            log.info("SIGHUP: %s", service.reload())
        except RequestError as exc:
            log.error("SIGHUP: %s", exc.message)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, reload))


def app_from_environment() -> FastAPI:
    """uvicorn's factory for ``--workers N``: each worker process builds its app from the settings JSON."""
    return create_app(ServeConfig(**json.loads(os.environ[SETTINGS_ENVIRONMENT_VARIABLE])))
