"""Config dataclasses as command-line flags: the one source of truth for defaults.

A config (:class:`~paddyclf.training.config.TrainConfig`, :class:`~paddyclf.serve.config.ServeConfig`)
declares each field with :func:`option`: its default, its ``--help`` text and any argparse extras.
:func:`add_config_arguments` turns the fields into flags and :func:`config_from_args` turns the parsed
flags back into the config, so the CLI can never drift from the Python defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import field
from pathlib import Path


def option(default, help: str, **extra):  # noqa: A002 - mirrors argparse's own keyword
    """A config field with its ``--help`` text (and ``choices=``, ``required=`` for argparse)."""
    return field(default=default, metadata={"help": help, **extra})


def derived_option(help: str, derived: str | Callable[[str], str], **extra):  # noqa: A002
    """A field that stays None unless given, so that the config can derive it (in ``__post_init__``).
    ``derived`` says how, for ``--help``: a text, or a function of the field's name that gives one."""
    return field(default=None, metadata={"help": help, "derived": derived, **extra})


def _field_type(config_class: type, f: dataclasses.Field) -> type:
    """The non-None type of a dataclass field (``int | None`` -> int; ``tuple[str, ...]`` stays as it is)."""
    hint = typing.get_type_hints(config_class)[f.name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _value_type(kind) -> tuple[type, str | None]:
    """(argparse ``type``, ``nargs``) of a field: a ``tuple[X, ...]`` takes one or more X values."""
    if typing.get_origin(kind) is tuple:
        return typing.get_args(kind)[0], "+"
    return kind, None


def add_config_arguments(parser: argparse.ArgumentParser, defaults, skip: set[str] = frozenset()) -> None:
    """Add one ``--flag`` per field of a config dataclass such as :class:`TrainConfig` (booleans become
    switches; a field with ``required=True`` in its metadata becomes a required flag)."""
    for f in dataclasses.fields(defaults):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        # a derived field stays None unless given, so that the config can fill it in
        default = None if "derived" in f.metadata else getattr(defaults, f.name)
        kind = _field_type(type(defaults), f)
        if "derived" in f.metadata:
            derived = f.metadata["derived"]
            help_text = f"{f.metadata['help']} (default: {derived(f.name) if callable(derived) else derived})"
        else:
            help_text = f.metadata["help"] + ("" if kind is bool else f" (default: {default})")
        if kind is bool:
            # a switch that is on by default also needs its --no- form
            action = argparse.BooleanOptionalAction if default else "store_true"
            parser.add_argument(flag, action=action, default=default, help=help_text)
        else:
            required = f.metadata.get("required", False)
            value_type, nargs = _value_type(kind)
            if nargs and not required:
                choices = f" (choices: {', '.join(f.metadata['choices'])})" if "choices" in f.metadata else ""
                help_text = f.metadata["help"] + f"{choices} (default: {' '.join(map(str, default))})"
            parser.add_argument(
                flag,
                type=value_type,
                nargs=nargs,
                default=default,
                required=required,
                help=f.metadata["help"] if required else help_text,
                choices=f.metadata.get("choices"),
                metavar=None if "choices" in f.metadata and not nargs else f.name.upper(),
            )


def config_from_args(args: argparse.Namespace, defaults):
    """The config (of the type of ``defaults``) the parsed flags describe; fields without a flag keep ``defaults``."""
    values = {f.name: getattr(args, f.name, getattr(defaults, f.name)) for f in dataclasses.fields(defaults)}
    for f in dataclasses.fields(defaults):  # argparse gives nargs values as a list
        if isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    return type(defaults)(**values)


CONFIG_FILE_HELP = (
    "a YAML or JSON file of this command's flags ({epochs: 20, head_lr: 0.002, models: [A, B]}: keys are "
    "flag names, with - or _); flags given on the command line override it"
)


def read_config_file(path: str | Path) -> dict:
    """The mapping a ``--config`` file holds (YAML, of which JSON is a subset)."""
    import yaml

    from .errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"Config file {path} not found.")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"Config file {path} is not valid YAML or JSON: {' '.join(str(exc).split())}.") from None
    if values is None:
        return {}
    if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
        raise UserError(f"Config file {path} must hold a mapping of flag names to values.")
    return values


def config_file_flags(values: dict, default_of: Callable[[str], object], source: str) -> list[str]:
    """``values`` of a config file as command-line flags, for argparse to check and convert.

    ``default_of(dest)`` is the parser's default of a flag: a false boolean becomes ``--no-<flag>``
    only where the flag is on by default (a switch that is off by default is simply left out).
    The flags go before the command line's own, so that those override them (argparse keeps the last).
    """
    from .errors import UserError

    flags: list[str] = []
    for key, value in values.items():
        dest = key.strip().lstrip("-").replace("-", "_")
        flag = "--" + dest.replace("_", "-")
        if isinstance(value, bool):
            if value:
                flags.append(flag)
            elif default_of(dest) is True:
                flags.append("--no-" + flag[2:])
        elif isinstance(value, list | tuple):
            flags += [flag, *map(str, value)]
        elif isinstance(value, str | int | float):
            flags += [flag, str(value)]
        elif value is not None:
            raise UserError(f"{source}: {key} must be a number, a string, a boolean or a list (got {value!r}).")
    return flags
