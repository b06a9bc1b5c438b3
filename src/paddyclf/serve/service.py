"""What the web app does, as plain functions over the model, the batcher and the store (no HTTP here).

:class:`DiagnosisService` loads the model once, diagnoses uploads (decode -> batcher -> store),
pages through the history, records expert reviews (token checked in constant time) and draws
Grad-CAM for checkpoints. Every refusal is a :class:`~.errors.RequestError` with a 4xx status.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
import threading
import time
import unicodedata
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.dedupe import fingerprint_file
from ..errors import UserError
from ..trust import OUT_OF_DISTRIBUTION
from ..trust.visit import combine_log_probabilities
from .batching import DynamicBatcher
from .browser_model import CHECKPOINT_SUFFIXES, BrowserModel, browser_model
from .config import ServeConfig
from .errors import RequestError
from .photos import Photo, read_photo
from .review_queue import DEFAULT_STRATEGY, STRATEGIES, CopyKey, build_queue, copy_groups
from .served_model import ModelSource, ServedModel, check_version, load_served_model, registry_champion
from .store import STATUSES, AlreadySyncedError, DeviceReport, DiskFullError, Filters, NewDiagnosis, Store
from .wording import Wording

MAX_PER_PAGE = 100
SHA256_PATTERN = r"[0-9a-f]{64}"
MAX_NAME_LENGTH = 200


def load_class_info(path: str | None, classes: list[str]) -> dict[str, list[tuple[str, str]]]:
    """``--class-info``: JSON object class -> text, or class -> {heading: text}; as (heading, text) pairs."""
    if path is None:
        return {}
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--class-info file {path} not found.") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"--class-info file {path} is not valid JSON ({exc}).") from None
    if not isinstance(raw, dict):
        raise UserError(f"--class-info file {path} must hold a JSON object: class name -> text.")
    unknown = sorted(set(raw) - set(classes))
    if unknown:
        raise UserError(
            f"--class-info file {path} names classes the model does not have: {', '.join(unknown)} "
            f"(the model's classes: {', '.join(classes)})."
        )
    info = {}
    for name, value in raw.items():
        if isinstance(value, str):
            info[name] = [("", value)]
        elif isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            info[name] = [(str(k), v) for k, v in value.items()]
        else:
            raise UserError(f"--class-info file {path}: the entry of {name!r} must be a text or {{heading: text}}.")
    return info


def display_name(filename: str | None) -> str:
    """The client's filename, for display only: control characters dropped, length capped."""
    name = "".join(c for c in (filename or "") if unicodedata.category(c)[0] != "C").strip()
    return name[:MAX_NAME_LENGTH] or "upload"


DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{8,64}")
MAX_REPORTED_CLASSES = 50
MAX_REPORT_BYTES = 16_000  # 50 classes with long names fit; a megabyte of nested brackets does not


def device_report(
    device_id: str,
    status: str,
    top_k_json: str,
    data: bytes,
    model_sha256: str | None = None,
    diagnosed_at: str | None = None,
) -> DeviceReport:
    """A phone's report of an offline diagnosis, checked (422 naming what is wrong)."""
    if not DEVICE_ID_PATTERN.fullmatch(device_id):
        raise RequestError(422, "device_id must be 8 to 64 letters, digits, '-' or '_' (a random id the phone keeps).")
    if status not in STATUSES:
        raise RequestError(422, f"device_status must be one of {', '.join(STATUSES)} (got {status[:40]!r}).")
    try:
        if len(top_k_json) > MAX_REPORT_BYTES:
            raise ValueError("too long")
        raw = json.loads(top_k_json)
        top_k = [(str(item["label"])[:200], float(item["probability"])) for item in raw]
    except (ValueError, TypeError, KeyError, RecursionError):
        raise RequestError(422, 'device_top_k must be JSON [{"label": NAME, "probability": P}, ...].') from None
    if not 1 <= len(top_k) <= MAX_REPORTED_CLASSES or not all(0.0 <= p <= 1.0 for _, p in top_k):
        raise RequestError(422, f"device_top_k needs 1 to {MAX_REPORTED_CLASSES} classes, each probability in [0, 1].")
    if model_sha256 is not None and not re.fullmatch(SHA256_PATTERN, model_sha256):
        raise RequestError(422, "device_model_sha256 must be 64 lower-case hex digits.")
    if diagnosed_at is not None:
        try:
            diagnosed_at = datetime.fromisoformat(diagnosed_at).isoformat()
        except ValueError:
            raise RequestError(422, "diagnosed_at must be an ISO 8601 time.") from None
    upload_sha256 = hashlib.sha256(data).hexdigest()
    return DeviceReport(device_id, upload_sha256, status, top_k, model_sha256, diagnosed_at)


def check_token(expected: str | None, given: str | None) -> None:
    """Raise 403 when reviewing is off, 401 when the bearer token is missing or wrong (constant-time compare)."""
    if expected is None:
        raise RequestError(403, "Reviewing is off: the server was started without a review token.")
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise RequestError(401, "A valid review token is needed (header Authorization: Bearer TOKEN).")


class DiagnosisService:
    def __init__(self, config: ServeConfig) -> None:
        config.validate()
        self.config = config
        source = self._source()
        if config.registry:
            check_version(source, None)  # a registry's champion is checked before it serves, as after a swap
        self.served = self._load(source)
        self.classes = self.predictor.classes
        if config.top_k > len(self.classes):
            raise UserError(f"--top-k must be at most the number of classes ({len(self.classes)}).")
        self.wording = Wording(self.classes, load_class_info(config.class_info, self.classes))
        self.store = Store(config.data_dir)
        self.store.register_model(self.model_sha256, self.served.path.name, self.classes, self.served.version)
        self._swap_lock = threading.Lock()  # one reload at a time
        self._browser_model: BrowserModel | None = None
        self._browser_model_failure: str | None = None  # an export that failed is not retried per request
        self._explainer = None
        self._explain_lock = threading.Lock()

    def close(self) -> None:
        self.served.batcher.close()
        self.store.close()

    # ------------------------------------------------------------------ model

    def _source(self) -> ModelSource:
        if self.config.registry:
            return registry_champion(self.config.registry, self.config.name)
        return ModelSource(Path(self.config.model))

    def _load(self, source: ModelSource) -> ServedModel:
        config = self.config
        return load_served_model(source, config.model_threads, config.max_batch, config.max_wait_ms / 1000)

    @contextmanager
    def serving(self) -> Iterator[ServedModel]:
        """The model answering now, held for one request (:meth:`ServedModel.in_use`): a swap cannot retire it
        under the request, and a model retired just before it was held is passed over for the new one."""
        while True:
            with self.served.in_use() as served:
                if served is not None:
                    yield served
                    return

    # what the served model is now; a request that needs it more than once holds it (``self.serving()``)
    @property
    def predictor(self):
        return self.served.predictor

    @property
    def model_sha256(self) -> str:
        return self.served.sha256

    @property
    def batcher(self) -> DynamicBatcher:
        return self.served.batcher

    @property
    def explainable(self) -> bool:
        return self.predictor.backend == "torch"

    @property
    def has_browser_model(self) -> bool:
        return self.served.path.suffix.lower() in (".onnx", *CHECKPOINT_SUFFIXES)

    def reload(self) -> dict:
        """Serve the registry's champion now (after ``registry promote`` or ``rollback``), without downtime
        (:mod:`.served_model`): loaded beside the old model, checked, swapped; the old one retires once
        its last request is answered. A version that fails its check is refused (409): the old one serves on.
        """
        if not self.config.registry:
            raise RequestError(409, "This server serves a file, not a registry's champion: there is nothing to reload.")
        with self._swap_lock:
            started = time.perf_counter()
            old = self.served
            try:
                source = registry_champion(self.config.registry, self.config.name)
                if source.version == old.version:
                    return {"status": "unchanged", "version": old.version, "seconds": 0.0}
                check_version(source, self.classes)
                new = self._load(source)
            except Exception as exc:  # noqa: BLE001 - whatever breaks a candidate, the old model serves on
                said = " ".join(str(exc).split())[:300]  # e.g. torch's state-dict errors name the key a line down
                reason = said if isinstance(exc, UserError) else f"{type(exc).__name__}: {said}."
                raise RequestError(409, f"Refused: {reason} Version {old.version} keeps serving.") from None
            self.store.register_model(new.sha256, new.path.name, self.classes, new.version)
            self._browser_model, self._browser_model_failure, self._explainer = None, None, None
            self.served = new  # one reference: requests from here on start on the new model
            threading.Thread(target=old.retire, name="paddyclf-retire", daemon=True).start()
            seconds = time.perf_counter() - started
        return {"status": "swapped", "from": old.version, "version": new.version, "seconds": round(seconds, 3)}

    def model_info(self) -> dict:
        trust = self.predictor.trust
        return {
            "file": self.served.path.name,
            "version": self.served.version,
            "sha256": self.model_sha256,
            "backend": self.predictor.backend,
            "threads": self.config.model_threads,
            "classes": self.classes,
            "input_size": [3, self.predictor.image_size, self.predictor.image_size],
            "thresholds": {
                "temperature": trust.temperature,
                "unsure_below": trust.unsure_below,
                "ood_score": trust.ood_score,
                "ood_above": trust.ood_threshold,
            },
            "gradcam": self.explainable,
            "browser_model": "/browser/model.onnx" if self.has_browser_model else None,
            "max_upload_mb": self.config.max_upload_mb,
        }

    # ------------------------------------------------------------------ diagnose

    def diagnose(
        self, uploads: list[tuple[str | None, bytes]], language: str = "en", visit: str | None = None
    ) -> list[dict]:
        """Diagnose and store every upload; one bad file refuses the whole request (nothing is stored).

        Each record is committed before this returns, so a reply means the history has it. ``visit``:
        ``"new"`` starts a visit (one field) with these photos, a visit's id adds them to it.
        """
        if not uploads:
            raise RequestError(422, "No photo was sent (multipart field 'files').")
        visit_id = self._existing_visit(visit)
        names = [display_name(name) for name, _ in uploads]
        photos = [
            read_photo(data, name, self.config.max_pixels) for name, (_, data) in zip(names, uploads, strict=True)
        ]
        with self.serving() as served:
            futures: list[Future] = [served.batcher.submit(served.transform(photo.image)) for photo in photos]
            if visit == "new":  # only once every photo of the request has been read
                visit_id = self.store.new_visit(served.sha256)
            results = zip(names, photos, futures, strict=True)
            return [self._store(served, name, photo, f.result(), language, visit_id=visit_id)
                    for name, photo, f in results]  # fmt: skip

    def _existing_visit(self, visit: str | None) -> int | None:
        """None for no visit or a new one; the id of an existing visit of this model, else a 4xx."""
        if visit in (None, "", "new"):
            return None
        if not str(visit).isdigit():
            raise RequestError(422, f"visit must be new or a visit's id (got {str(visit)[:40]!r}).")
        found = self.store.visit(int(visit))
        if found is None:
            raise RequestError(404, f"There is no visit {visit}.")
        if found["model_sha256"] != self.model_sha256:
            raise RequestError(409, f"Visit {visit} was started with another model; start a new visit.")
        return found["id"]

    def visit_answer(self, visit_id: int, language: str = "en", with_items: bool = False) -> dict:
        """One answer for the photos of a visit (:func:`~paddyclf.trust.visit.combine_log_probabilities`).

        Each photo the OOD gate accepted votes with its calibrated log-probabilities; their mean,
        renormalised, gets the same ``unsure`` rule as one photo. ``with_items``: also the photos' records.
        """
        visit = self.store.visit(visit_id)
        if visit is None:
            raise RequestError(404, f"There is no visit {visit_id}.")
        records = [r for r in visit["records"] if r["probabilities"]]
        if not records:
            raise RequestError(404, f"Visit {visit_id} has no photo yet.")
        probabilities = np.array([r["probabilities"] for r in records])
        accepted = np.array([r["status"] != OUT_OF_DISTRIBUTION for r in records])
        log_p = np.log(np.clip(probabilities, 1e-12, 1.0))
        answer = combine_log_probabilities(log_p, accepted, self.predictor.trust.unsure_below)
        top_k = [{"label": label, "probability": p} for label, p in self._top_k(answer.probabilities)]
        summary = {"status": answer.status, "top_k": top_k}
        return (
            {
                "id": visit["id"],
                "created_at": visit["created_at"],
                "photos": len(records),
                "accepted": answer.accepted,
                "status": answer.status,
                "diagnosis_ids": [r["id"] for r in records],
            }
            | self.wording.describe(summary, language)
            | ({"items": [self.describe(r, language) for r in records]} if with_items else {})
        )

    def sync(
        self,
        upload: tuple[str | None, bytes],
        report: DeviceReport,
        language: str = "en",
        device_visit: str | None = None,
    ) -> dict:
        """Store a diagnosis a phone made offline, exactly once, beside the server's own re-check of the photo.

        ``(report.device_id, sha256 of the bytes)`` is the key: a replay (the phone did not see the
        first reply) returns the stored record with ``"replayed": true`` and stores nothing. The record
        is committed before this returns; an upload cut off on the way stores nothing, so the phone
        simply sends it again. ``device_visit``: the phone's id of the visit (one field) the photo
        belongs to; its photos join one server visit, created when the first of them arrives.
        """
        name, data = display_name(upload[0]), upload[1]
        if device_visit is not None and not DEVICE_ID_PATTERN.fullmatch(device_visit):
            raise RequestError(422, "device_visit must be 8 to 64 letters, digits, '-' or '_' (the phone's visit id).")
        existing = self.store.find_synced(report.device_id, report.upload_sha256)
        if existing is None:
            photo = read_photo(data, name, self.config.max_pixels)
            with self.serving() as served:
                result = served.batcher.submit(served.transform(photo.image)).result()
                visit_id = self._device_visit(report.device_id, device_visit, served.sha256)
                try:
                    return self._store(served, name, photo, result, language, report, visit_id) | {"replayed": False}
                except AlreadySyncedError:  # the same upload, racing this one, was stored first
                    existing = self.store.find_synced(report.device_id, report.upload_sha256)
        return self.describe(existing, language) | {"replayed": True}

    def _device_visit(self, device_id: str, device_visit: str | None, served_sha256: str) -> int | None:
        """The server's visit for a phone's visit id; None when there is none, or when that visit's
        photos were re-checked by another model (a visit's answer combines one model's probabilities)."""
        if device_visit is None:
            return None
        visit_id, model_sha256 = self.store.device_visit(device_id, device_visit, served_sha256)
        return visit_id if model_sha256 == served_sha256 else None

    def _top_k(self, probabilities: np.ndarray) -> list[tuple[str, float]]:
        """The ``--top-k`` most probable classes, best first, as (label, probability to 6 places)."""
        order = np.argsort(-probabilities)[: self.config.top_k]
        return [(self.classes[i], round(float(probabilities[i]), 6)) for i in order]

    def _store(
        self,
        served: ServedModel,
        name: str,
        photo: Photo,
        result: tuple[np.ndarray, float | None, str],
        language: str,
        device: DeviceReport | None = None,
        visit_id: int | None = None,
    ) -> dict:
        probabilities, ood_score, status = result
        every = [round(float(p), 6) for p in probabilities]
        new = NewDiagnosis(
            photo.sha256, name, *photo.image.size, self._top_k(probabilities), status, ood_score, served.sha256,
            photo.gps, device, every, visit_id, served.version,
        )  # fmt: skip
        try:
            self.store.save_photo(photo.sha256, photo.jpeg, photo.thumbnail)
            record = self.store.add(new)
        except DiskFullError as exc:
            message = f"The server's disk is full ({exc}); this photo was not stored. Free space in its --data-dir."
            raise RequestError(507, message, name) from None
        return self.describe(record, language)

    def describe(self, record: dict, language: str = "en") -> dict:
        """A stored record as the API and the pages show it: URLs, and in ``language`` the verdict in
        words, the class names and the disease card of an answer (:class:`~.wording.Wording`)."""
        sha = record["photo_sha256"]
        return (
            record
            | self.wording.describe(record, language)
            | {
                "photo_url": f"/photos/{sha}.jpg",
                "thumbnail_url": f"/thumbs/{sha}.jpg",
                "gradcam_url": f"/api/v1/diagnoses/{record['id']}/gradcam.png" if self.explainable else None,
            }
        )

    # ------------------------------------------------------------------ history and review

    def history(self, page: int = 1, per_page: int = 20, filters: Filters | None = None, language: str = "en") -> dict:
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            raise RequestError(422, f"page must be >= 1 and per_page between 1 and {MAX_PER_PAGE}.")
        if filters and filters.status and filters.status not in STATUSES:
            raise RequestError(422, f"status must be one of {', '.join(STATUSES)} (got {filters.status!r}).")
        items, total = self.store.page(page, per_page, filters)
        described = [self.describe(r, language) for r in items]
        return {"items": described, "total": total, "page": page, "per_page": per_page}

    def record(self, diagnosis_id: int, language: str = "en") -> dict:
        record = self.store.get(diagnosis_id)
        if record is None:
            raise RequestError(404, f"There is no diagnosis {diagnosis_id}.")
        return self.describe(record, language)

    def review(self, diagnosis_id: int, label: str, token: str | None, language: str = "en") -> dict:
        """An expert confirms or corrects the label of a stored photo (``label`` must be a model class)."""
        check_token(self.config.review_token, token)
        if label not in self.classes:
            raise RequestError(422, f"Unknown label {label!r}; use one of: {', '.join(self.classes)}.")
        record = self.store.review(diagnosis_id, label)
        if record is None:
            raise RequestError(404, f"There is no diagnosis {diagnosis_id}.")
        return self.describe(record, language)

    # ------------------------------------------------------------------ review queue

    def review_queue(
        self, strategy: str = DEFAULT_STRATEGY, page: int = 1, per_page: int = 20, language: str = "en"
    ) -> dict:
        """The unreviewed diagnoses, the likeliest wrong first (:mod:`.review_queue`), each photo once.

        Each item is a record as the history shows it plus its ``priority`` under ``strategy``
        (higher: sooner), ``copies`` (how many diagnoses of this photo or its near-copies it stands
        for, itself included) and their ``copy_ids``. ``total`` counts entries, not diagnoses.
        """
        if strategy not in STRATEGIES:
            raise RequestError(422, f"strategy must be one of {', '.join(STRATEGIES)} (got {strategy[:40]!r}).")
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            raise RequestError(422, f"page must be >= 1 and per_page between 1 and {MAX_PER_PAGE}.")
        records = self.store.all_records()
        groups = copy_groups(self._copy_keys([r["photo_sha256"] for r in records]))
        entries = build_queue(records, strategy, groups, len(self.classes))
        items = [
            self.describe(records[e.index], language)
            | {
                "priority": round(e.priority, 6) if np.isfinite(e.priority) else None,
                "copies": e.copies,
                "copy_ids": [records[m]["id"] for m in e.members],
            }
            for e in entries[(page - 1) * per_page : page * per_page]
        ]
        return {"items": items, "total": len(entries), "page": page, "per_page": per_page, "strategy": strategy}

    def _copy_keys(self, photo_sha256s: list[str]) -> list[CopyKey]:
        """What copy finding compares of each photo. Fingerprints (:func:`paddyclf.data.dedupe.fingerprint_file`
        of the stored 320 px thumbnail, about 10 ms each) are computed the first time a photo is queued and
        kept in the history's ``photo_fingerprints`` table: a photo is named by its hash, so its fingerprint
        never changes, survives restarts and serves every worker process; a queue of 1,000 photos then
        reads 1,000 small rows instead of decoding 1,000 thumbnails."""
        known = self.store.fingerprints()
        new = []
        for sha in dict.fromkeys(s for s in photo_sha256s if s not in known):
            path = self.store.photo_path(sha, "thumbs")
            if not path.is_file():
                continue  # not kept: fingerprinted once the thumbnail is there
            fp = fingerprint_file(path)
            hashes = None if fp.error else np.concatenate([fp.whole, fp.crops]).astype("<u8").tobytes()
            new.append((sha, fp.pixel_sha1, hashes))
            known[sha] = (fp.pixel_sha1, hashes)
        self.store.save_fingerprints(new)
        keys = []
        for sha in photo_sha256s:
            pixel_sha1, hashes = known.get(sha, ("", None))
            if hashes is None:
                keys.append(CopyKey(sha, pixel_sha1))
                continue
            table = np.frombuffer(hashes, dtype="<u8").astype(np.uint64)
            keys.append(CopyKey(sha, pixel_sha1, table[:8], table[8:]))
        return keys

    def browser_model(self) -> BrowserModel:
        """The ONNX model the page runs in the browser (a checkpoint is exported the first time); 404 if none."""
        if not self.has_browser_model:
            raise RequestError(
                404, f"This server runs a {self.predictor.backend} model; browsers diagnose through the API."
            )
        if self._browser_model is None and self._browser_model_failure is None:
            try:
                # a registry version's own checked ONNX export when it has one, else the checkpoint's, exported once
                source = self.served.source.onnx or self.served.path
                self._browser_model = browser_model(source, self.model_sha256, self.config.data_dir)
            except Exception as exc:  # noqa: BLE001 - the API still diagnoses; browsers fall back to it
                self._browser_model_failure = f"{type(exc).__name__}: {exc}"
        if self._browser_model is None:
            raise RequestError(
                404, f"No browser model: exporting it failed ({self._browser_model_failure}); use the API."
            )
        return self._browser_model

    def photo_file(self, sha256: str, kind: str) -> Path:
        """A stored photo by its hash; anything that is not a 64-hex-digit name is simply not found."""
        path = self.store.photo_path(sha256, kind) if re.fullmatch(SHA256_PATTERN, sha256) else None
        if path is None or not path.is_file():
            raise RequestError(404, "No such photo.")
        return path

    # ------------------------------------------------------------------ Grad-CAM

    def gradcam_png(self, diagnosis_id: int) -> bytes:
        """The Grad-CAM overlay of the predicted class on the stored photo's eval crop, as PNG (checkpoints only)."""
        if not self.explainable:
            raise RequestError(
                404, f"Grad-CAM needs a checkpoint (.pt); this server runs a {self.predictor.backend} export."
            )
        record = self.record(diagnosis_id)
        with Image.open(self.photo_file(record["photo_sha256"], "photos")) as img:
            photo = img.convert("RGB")
        with self._explain_lock:  # Grad-CAM hooks the model: one at a time
            if self._explainer is None:
                from ..inference.explain import GradCamExplainer

                self._explainer = GradCamExplainer(self.served.path)
            _, overlay, _, _ = self._explainer(photo)
        buffer = io.BytesIO()
        Image.fromarray(overlay).save(buffer, format="PNG")
        return buffer.getvalue()
