"""``touchstone config docs``: docs/configuration.md, generated from the settings classes.

Every ``TOUCHSTONE_*`` variable a process reads is a field of one pydantic settings class (and
the CLI's few options with an ``envvar``), so the reference is rendered from them, never
written by hand: each class lists the fields it adds or whose default it changes, with the
default and the field's own description. ``tests/test_configuration_doc.py`` fails when the
committed file differs from what this renders.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

DOC = Path("docs") / "configuration.md"
REGENERATE = "touchstone config docs --output docs/configuration.md"


@dataclass(frozen=True)
class Section:
    title: str
    who: str
    settings: type[BaseSettings]


def sections() -> list[Section]:
    """The settings classes, shared ones first (imported here: the CLI does not need them)."""
    from touchstone.agent.config import AgentSettings
    from touchstone.onprem_provider.config import ProviderSettings
    from touchstone.results.config import ResultsSettings
    from touchstone.runpod_provider.config import RunpodProviderSettings
    from touchstone.scheduler.config import SchedulerSettings
    from touchstone.shared.settings import GitFetchSettings, Settings
    from touchstone.submission.config import SubmissionSettings

    return [
        Section("Every process", "every service, the agent and the operator commands", Settings),
        Section("Fetching feature sets", "the agent and the RunPod provider (where git runs)", GitFetchSettings),
        Section("Submission service", "`python -m touchstone.submission` (the HTTP API and UI)", SubmissionSettings),
        Section("Scheduler", "`python -m touchstone.scheduler`", SchedulerSettings),
        Section("On-prem provider", "`python -m touchstone.onprem_provider`", ProviderSettings),
        Section("RunPod provider", "`python -m touchstone.runpod_provider`", RunpodProviderSettings),
        Section("Results service", "`python -m touchstone.results`", ResultsSettings),
        Section("Agent", "`touchstone-agent` on each GPU server", AgentSettings),
    ]


def own_fields(settings: type[BaseSettings]) -> dict[str, FieldInfo]:
    """The fields a class adds, or whose default or meaning it changes, over its base."""
    base = next((b for b in settings.__mro__[1:] if issubclass(b, BaseSettings) and b is not BaseSettings), None)
    inherited: dict[str, FieldInfo] = dict(base.model_fields) if base is not None else {}
    return {
        name: field for name, field in settings.model_fields.items()
        if name not in inherited or (_default(field), field.description) != (
            _default(inherited[name]), inherited[name].description)
    }


def env_name(settings: type[BaseSettings], name: str) -> str:
    return f"{settings.model_config.get('env_prefix', '')}{name}".upper()


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        factory: Any = field.default_factory
        if getattr(factory, "__name__", "<lambda>") not in ("<lambda>", "list", "dict", "tuple", "set"):
            doc = (factory.__doc__ or factory.__name__).strip().splitlines()[0].rstrip(".")
            return f"({doc[0].lower()}{doc[1:]})"  # computed where it runs, e.g. the hostname
        value = factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    return _shown(value)


def _shown(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, SecretStr):
        return "(secret; empty)" if not value.get_secret_value() else "(secret)"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, list | tuple | set):
        return f"`{json.dumps([_plain(v) for v in value])}`"
    if value == "":
        return "(empty)"
    return f"`{value}`"


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value if isinstance(value, int | float) else str(value)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _choices(field: FieldInfo) -> str:
    args = getattr(field.annotation, "__args__", ())
    if getattr(field.annotation, "__origin__", None) is not None and str(field.annotation).startswith(
        "typing.Literal"
    ):
        return " One of " + ", ".join(f"`{a}`" for a in args) + "."
    if isinstance(field.annotation, type) and issubclass(field.annotation, enum.Enum):
        return " One of " + ", ".join(f"`{m.value}`" for m in field.annotation) + "."
    return ""


def cli_variables(root: Any) -> list[tuple[str, str, str]]:
    """(variable, option, help) of the options read from the environment, in the command tree
    under ``root`` (the ``touchstone`` command as click sees it)."""
    found: dict[str, tuple[str, str, str]] = {}

    def walk(command: Any) -> None:  # click's command tree (typer may bring its own click)
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            for var in [envvar] if isinstance(envvar, str) else (envvar or []):
                if var not in found and getattr(param, "param_type_name", "") == "option":
                    found[var] = (var, param.opts[0], getattr(param, "help", None) or "")
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(root)
    found.setdefault("TOUCHSTONE_CONFIG", ("TOUCHSTONE_CONFIG", "", "The CLI's profiles file "
                                           "(default `~/.config/touchstone/cli.toml`, written by `touchstone login`)."))
    return sorted(found.values())


def render(root: Any) -> str:
    """The reference, with the options of the command tree under ``root``."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated by `" + REGENERATE + "` from the settings classes; do not edit by hand. -->",
        "",
        "Every process reads its settings from the environment: a field `name` is the variable",
        "`TOUCHSTONE_NAME` (nested fields with `__`). Lists are JSON (`[\"a\", \"b\"]`); booleans",
        "`true`/`false`; durations are seconds (`_s`). A service reads the shared settings and its",
        "own; a setting it does not know is ignored. The deploy kit sets them in environment files",
        "(systemd), a ConfigMap and Secrets (Kubernetes) or `environment:` (compose): see",
        "[deploy/README.md](../deploy/README.md).",
        "",
    ]
    for section in sections():
        fields = own_fields(section.settings)
        lines += [f"## {section.title}", "", f"Read by {section.who} (`{section.settings.__module__}."
                  f"{section.settings.__qualname__}`).", "", "| Variable | Default | Meaning |", "|---|---|---|"]
        for name, field in fields.items():
            meaning = _cell((field.description or "").strip()) + _choices(field)
            lines.append(f"| `{env_name(section.settings, name)}` | {_cell(_default(field))} | {meaning} |")
        lines.append("")
    lines += ["## The `touchstone` command", "", "Options of the CLI that also come from the environment.", "",
              "| Variable | Option | Meaning |", "|---|---|---|"]
    for var, option, help_text in cli_variables(root):
        lines.append(f"| `{var}` | {f'`{option}`' if option else ''} | {_cell(help_text)} |")
    return "\n".join(lines) + "\n"


def docs(
    ctx: typer.Context,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here (default: print).")] = None,
    check: Annotated[bool, typer.Option(help="Exit 1 when OUTPUT differs from what would be written.")] = False,
) -> None:
    """Render the reference of every TOUCHSTONE_* setting (docs/configuration.md)."""
    text = render(ctx.find_root().command)
    if output is None:
        typer.echo(text, nl=False)
        return
    if check:
        if not output.exists() or output.read_text() != text:
            typer.echo(f"{output} is stale: run `{REGENERATE}`", err=True)
            raise typer.Exit(1)
        return
    output.write_text(text)


config_app = typer.Typer(help="Touchstone's settings.", no_args_is_help=True)
config_app.command("docs")(docs)
