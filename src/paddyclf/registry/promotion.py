"""Moving the champion: ``promote`` through the gate, ``rollback`` to an earlier version, each recorded.

Every move is an event, a JSON tag ``paddyclf.event.NNNNNN`` of the registered model: the action,
from and to which version, who, why, when, whether it was forced, the gate's figures. A move is
written in three steps, each one row of the registry's database::

    1. the event, state "pending"
    2. the champion alias, moved            <- the only step that changes what is served
    3. the event, state "done"

A crash before step 2 leaves the old champion, and its pending event reads as "interrupted"; a crash
between 2 and 3 leaves the new champion, and its event reads as done (the alias says so). The next
move settles pending events for good. A refusal by the gate is an event too (state "refused"), so
the record shows who tried to promote what.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..errors import UserError
from ..fileio import write_json
from .gate import DEFAULT_MAX_DROP, DEFAULT_MAX_FIELD_DROP, GateDecision, run_gate
from .store import ModelRegistry, Version

EVENT_TAG = "paddyclf.event."
PENDING, DONE, INTERRUPTED, REFUSED = "pending", "done", "interrupted", "refused"


class GateRefusedError(UserError):
    """The gate refused a candidate: the command did its job and said no (exit code 1, not 2)."""

    exit_code = 1


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class Event:
    action: str  # register | promote | rollback
    from_version: int | None
    to_version: int
    by: str = field(default_factory=who)
    reason: str = ""
    forced: bool = False
    state: str = DONE
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    gate: dict | None = None
    number: int = 0


def events(registry: ModelRegistry, name: str) -> list[Event]:
    """Every recorded move of ``name``, oldest first; a pending one is resolved against the alias."""
    tags = registry.model_tags(name)
    found = [Event(**{**json.loads(v), "number": int(k[len(EVENT_TAG) :])}) for k, v in tags.items()
             if k.startswith(EVENT_TAG)]  # fmt: skip
    found.sort(key=lambda e: e.number)
    champion = registry.aliases(name).get("champion")
    for i, event in enumerate(found):
        if event.state == PENDING:
            last = i == len(found) - 1
            event.state = DONE if last and champion == event.to_version else INTERRUPTED
    return found


def record_event(registry: ModelRegistry, name: str, event: Event) -> Event:
    if not event.number:
        event.number = max((e.number for e in events(registry, name)), default=0) + 1
    body = {k: v for k, v in asdict(event).items() if k != "number"}
    registry.set_model_tag(name, f"{EVENT_TAG}{event.number:06d}", json.dumps(body))
    return event


def settle_pending(registry: ModelRegistry, name: str) -> None:
    """Write down what a crashed move's pending events turned out to be."""
    tags = registry.model_tags(name)
    for event in events(registry, name):
        key = f"{EVENT_TAG}{event.number:06d}"
        if json.loads(tags[key])["state"] == PENDING:
            record_event(registry, name, event)


def move_champion(registry: ModelRegistry, name: str, event: Event) -> Event:
    """The three steps of a move (module docstring)."""
    settle_pending(registry, name)
    event.state = PENDING
    record_event(registry, name, event)
    registry.set_champion(name, event.to_version)
    event.state = DONE
    return record_event(registry, name, event)


@dataclass
class PromotionRequest:
    version: int
    max_drop: float = DEFAULT_MAX_DROP
    max_field_drop: float = DEFAULT_MAX_FIELD_DROP
    base_test: Path | None = None  # default: the CSV recorded on the candidate version
    field_test: Path | None = None
    force: bool = False
    reason: str = ""
    by: str | None = None
    output_dir: Path = Path("promotion")


def judging_sets(candidate: Version, request: PromotionRequest) -> dict[str, Path]:
    """Split -> CSV the gate runs both models on: the request's, else those recorded on the candidate."""
    tests = {}
    for split in ("base_test", "field_test"):
        given = getattr(request, split) or candidate.tag(split)
        if given:
            tests[split] = Path(given)
    return tests


def check_request(request: PromotionRequest) -> None:
    if request.max_drop < 0 or request.max_field_drop < 0:
        raise UserError("--max-drop and --max-field-drop are points of accuracy a candidate may lose: give >= 0.")
    if request.force and not request.reason.strip():
        raise UserError('--force needs --reason "...": the reason is kept on the version and in the record.')


def promote(registry: ModelRegistry, name: str, request: PromotionRequest) -> dict:
    """Make ``request.version`` the champion of ``name`` if the gate passes it (or it is forced)."""
    check_request(request)
    candidate = registry.version(name, request.version)
    champion = registry.champion(name)
    if champion is not None and champion.version == candidate.version:
        raise UserError(f"Version {candidate.version} is already the champion of {name!r}.")
    decision = None
    tests = judging_sets(candidate, request)
    if champion is not None and tests:
        drops = {"base_test": request.max_drop, "field_test": request.max_field_drop}
        folder = request.output_dir / f"v{champion.version}-vs-v{candidate.version}"
        decision = run_gate(registry.checkpoint(champion), registry.checkpoint(candidate), tests, drops, folder)
        write_json(folder / "gate.json", decision.as_dict())
        log_gate(registry, candidate, decision, folder)
    elif champion is not None and not request.force:
        raise UserError(
            f"Version {candidate.version} records no test split to judge it on: give --base-test CSV (and "
            '--field-test CSV), or register it with them; --force --reason "..." skips the gate.'
        )
    event = Event(
        "promote", champion and champion.version, candidate.version, by=request.by or who(),
        reason=request.reason, forced=request.force and not (decision and decision.passed),
        gate=decision.as_dict() if decision else None,
    )  # fmt: skip
    if decision is not None and not decision.passed and not request.force:
        event.state = REFUSED
        record_event(registry, name, event)
        raise GateRefusedError(
            f"The gate refused version {candidate.version} of {name!r}; version {champion.version} stays champion: "
            + "; ".join(decision.failures)
            + f'. The paired reports are in {request.output_dir}. --force --reason "..." overrides.'
        )
    if event.forced:
        registry.set_version_tag(candidate, "forced_reason", request.reason)
    move_champion(registry, name, event)
    return {"event": asdict(event), "gate": decision.as_dict() if decision else None}


def log_gate(registry: ModelRegistry, candidate: Version, decision: GateDecision, folder: Path) -> None:
    """The gate's figures on the candidate (tags) and its reports beside its files (artifacts)."""
    for split, s in decision.splits.items():
        registry.set_version_tag(candidate, f"gate.{split}.candidate_accuracy", f"{s['candidate_accuracy']:.6f}")
        registry.set_version_tag(candidate, f"gate.{split}.champion_accuracy", f"{s['champion_accuracy']:.6f}")
    registry.set_version_tag(candidate, "gate.passed", str(decision.passed).lower())
    if candidate.run_id:
        registry.call("uploading the gate's reports", registry.client.log_artifacts, candidate.run_id, str(folder),
                      f"gate/{int(time.time())}")  # fmt: skip


def rollback(registry: ModelRegistry, name: str, to: int | None, reason: str, by: str | None = None) -> Event:
    """Make an earlier version champion again: ``to``, or the one the current champion replaced."""
    if not reason.strip():
        raise UserError('rollback needs --reason "...": why the served model is being taken back.')
    champion = registry.champion(name)
    if champion is None:
        raise UserError(f"{name!r} has no champion to roll back from.")
    if to is None:
        replaced = [e.from_version for e in events(registry, name)
                    if e.state == DONE and e.to_version == champion.version and e.from_version is not None]  # fmt: skip
        if not replaced:
            raise UserError(f"Version {champion.version} of {name!r} replaced no earlier champion: give --to VERSION.")
        to = replaced[-1]
    if to == champion.version:
        raise UserError(f"Version {to} is already the champion of {name!r}.")
    target = registry.version(name, to)
    registry.checkpoint(target)  # its files are there and intact before it is served again
    return move_champion(registry, name, Event("rollback", champion.version, to, by=by or who(), reason=reason))
