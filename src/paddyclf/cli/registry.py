"""``paddyclf registry add | list | show | promote | rollback`` (MLflow's model registry, gated) and
``paddyclf retrain`` (the reviewed field photos -> a registered candidate)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import Command, add_subcommands

REGISTRY_HELP = (
    "MLflow tracking URI of the registry (http://..., sqlite:///...), or a folder: a local store in it "
    "(mlflow.db and artifacts/), no server needed"
)


def add_registry_flags(parser: argparse.ArgumentParser, name_required: bool = True) -> None:
    parser.add_argument("--registry", required=True, metavar="URI|DIR", help=REGISTRY_HELP)
    parser.add_argument("--name", required=name_required, help="registered model name, e.g. rice-leaf")


def open_registry(args: argparse.Namespace):
    from ..registry import ModelRegistry

    return ModelRegistry(args.registry)


def add_add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="the <model_name>_best.pt to register")
    add_registry_flags(parser)
    parser.add_argument("--parent", type=int, default=None, help="the version it was fine-tuned from")
    parser.add_argument(
        "--metadata", type=Path, default=None,
        help="the dataset it was trained on (its photos are fingerprinted); default: its run's own",
    )  # fmt: skip
    parser.add_argument("--label2id", type=Path, default=None, help="label map of --metadata")
    parser.add_argument("--base-test", type=Path, default=None,
                        help="metadata CSV whose test rows the promotion gate judges it on")  # fmt: skip
    parser.add_argument("--field-test", type=Path, default=None, help="metadata CSV of the field test photos")
    parser.add_argument("--no-onnx", action="store_true", help="do not attach an ONNX export")


def run_add(args: argparse.Namespace) -> int:
    from ..registry import NewVersion, register_checkpoint

    new = NewVersion(args.parent, args.metadata, args.label2id, args.base_test, args.field_test, onnx=not args.no_onnx)
    version = register_checkpoint(open_registry(args), args.checkpoint, args.name, new)
    role = " (champion: the first version of the name)" if version.is_champion else ""
    print(f"Registered {args.checkpoint} as version {version.version} of {args.name!r}{role}.")
    return 0


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    add_registry_flags(parser, name_required=False)


def run_list(args: argparse.Namespace) -> int:
    registry = open_registry(args)
    for name in [args.name] if args.name else registry.names():
        print(name)
        for v in registry.versions(name):
            mark = "*" if v.is_champion else " "
            gate = v.tag("gate.passed", "-")
            print(f"  {mark} v{v.version}  {v.tag('model', '?')}  parent={v.tag('parent_version') or '-'}  "
                  f"photos={v.tag('photos', '?')}  gate_passed={gate}")  # fmt: skip
    return 0


def add_show_arguments(parser: argparse.ArgumentParser) -> None:
    add_registry_flags(parser)
    parser.add_argument("version", nargs="?", type=int, default=None, help="default: the champion")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run_show(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ..errors import UserError
    from ..registry import events

    registry = open_registry(args)
    version = registry.champion(args.name) if args.version is None else registry.version(args.name, args.version)
    if version is None:
        raise UserError(f"{args.name!r} has no champion: give a VERSION.")
    shown = {**asdict(version), "events": [asdict(e) for e in events(registry, args.name)]}
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    print(f"{version.name} v{version.version}{' (champion)' if version.is_champion else ''}  source {version.source}")
    for key, value in sorted(version.tags.items()):
        print(f"  {key} = {value if len(value) < 200 else value[:200] + '...'}")
    print("events:")
    for e in shown["events"]:
        forced = " FORCED" if e["forced"] else ""
        print(f"  #{e['number']} {e['at']} {e['action']} v{e['from_version'] or '-'} -> v{e['to_version']} "
              f"[{e['state']}{forced}] by {e['by']}: {e['reason'] or '-'}")  # fmt: skip
    return 0


def add_promote_arguments(parser: argparse.ArgumentParser) -> None:
    from ..registry import DEFAULT_MAX_DROP, DEFAULT_MAX_FIELD_DROP

    add_registry_flags(parser)
    parser.add_argument("version", type=int, help="the candidate version")
    parser.add_argument("--max-drop", type=float, default=DEFAULT_MAX_DROP,
                        help="points of base-test accuracy the candidate may lose against the champion")  # fmt: skip
    parser.add_argument("--max-field-drop", type=float, default=DEFAULT_MAX_FIELD_DROP,
                        help="points of field-test accuracy it may lose")  # fmt: skip
    parser.add_argument("--base-test", type=Path, default=None, help="default: the CSV recorded on the version")
    parser.add_argument("--field-test", type=Path, default=None, help="default: the CSV recorded on the version")
    parser.add_argument("--force", action="store_true", help="promote even if the gate refuses (needs --reason)")
    parser.add_argument("--reason", default="", help="why: kept on the version and in the record")
    parser.add_argument("--by", default=None, help="who (default: user@host)")
    parser.add_argument("--output-dir", type=Path, default=Path("promotion"), help="the gate's paired reports")


def run_promote(args: argparse.Namespace) -> int:
    from ..registry import PromotionRequest, promote

    request = PromotionRequest(args.version, args.max_drop, args.max_field_drop, args.base_test, args.field_test,
                               args.force, args.reason, args.by, args.output_dir)  # fmt: skip
    result = promote(open_registry(args), args.name, request)
    for split, s in ((result["gate"] or {}).get("splits") or {}).items():
        print(
            f"{split}: champion {s['champion_accuracy']:.4f}, candidate {s['candidate_accuracy']:.4f} "
            f"({s['difference_points']:+.2f} points, McNemar p = {s['mcnemar_p']:.3g}, {s['photos']} photos)"
        )
    event = result["event"]
    forced = " (forced: " + event["reason"] + ")" if event["forced"] else ""
    print(f"Version {event['to_version']} of {args.name!r} is the champion{forced}.")
    return 0


def add_rollback_arguments(parser: argparse.ArgumentParser) -> None:
    add_registry_flags(parser)
    parser.add_argument("--to", type=int, default=None, help="default: the version the champion replaced")
    parser.add_argument("--reason", required=True, help="why the served model is taken back")
    parser.add_argument("--by", default=None, help="who (default: user@host)")


def run_rollback(args: argparse.Namespace) -> int:
    from ..registry import rollback

    event = rollback(open_registry(args), args.name, args.to, args.reason, args.by)
    print(f"Rolled {args.name!r} back from version {event.from_version} to version {event.to_version}.")
    return 0


REGISTRY_COMMANDS = {
    "add": Command(
        "register a checkpoint as the next version (the first becomes champion)", add_add_arguments, run_add
    ),
    "list": Command("the registered models and their versions (* champion)", add_list_arguments, run_list),
    "show": Command("one version's tags, files and the name's promotion record", add_show_arguments, run_show),
    "promote": Command("make a version champion if the gate passes it", add_promote_arguments, run_promote),
    "rollback": Command("make an earlier version champion again", add_rollback_arguments, run_rollback),
}


def add_registry_arguments(parser: argparse.ArgumentParser) -> None:
    add_subcommands(parser, REGISTRY_COMMANDS, "registry_command")


def run_registry(args: argparse.Namespace) -> int:
    return REGISTRY_COMMANDS[args.registry_command].run(args)


# set by retrain (the candidate's data, folder and starting weights): not flags of `retrain`
TRAIN_FLAGS_SET_BY_RETRAIN = {"output_dir", "resume", "init_from", "model_name", "save_history", "plot"}


def add_retrain_arguments(parser: argparse.ArgumentParser) -> None:
    from ..lifecycle import RetrainConfig
    from ..options import add_config_arguments
    from ..training.config import TrainConfig

    add_config_arguments(parser, RetrainConfig())
    add_config_arguments(
        parser.add_argument_group("training the candidate (--metadata and --label2id: the BASE dataset)"),
        TrainConfig(),
        TRAIN_FLAGS_SET_BY_RETRAIN,
    )


def run_retrain(args: argparse.Namespace) -> int:
    from ..lifecycle import RetrainConfig, run_retrain
    from ..options import config_from_args
    from ..training.config import TrainConfig

    report = run_retrain(config_from_args(args, RetrainConfig()), config_from_args(args, TrainConfig()))
    for split, s in report["gate_preview"]["splits"].items():
        print(
            f"{split}: champion {s['champion_accuracy']:.4f}, candidate {s['candidate_accuracy']:.4f} "
            f"({s['difference_points']:+.2f} points, McNemar p = {s['mcnemar_p']:.3g}, {s['photos']} photos)"
        )
    version = report["candidate"]["version"]
    print(f"Registered the candidate as version {version}; report: {args.output_dir}/report/retrain.md")
    print(f"Next: paddyclf registry promote --registry {args.registry} --name {args.name} {version}")
    return 0


COMMANDS = {
    "retrain": Command(
        "the reviewed field photos -> a candidate fine-tuned from the champion, judged beside it and registered",
        add_retrain_arguments,
        run_retrain,
    ),
    "registry": Command(
        "MLflow model registry: add, list, show, promote (gated), rollback (see `paddyclf registry -h`)",
        add_registry_arguments,
        run_registry,
    ),
}
