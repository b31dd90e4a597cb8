"""docker-compose.yml read the way Compose reads it, without Docker.

``docker compose config`` loads the YAML (merge keys ``<<`` included), interpolates ``${VAR}``,
``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``,
``${VAR+alt}``, ``$VAR`` and ``$$`` in every value from the environment (an unset required variable
is an error naming it), then validates the result against the Compose Specification's JSON schema.
:func:`load` does the same, against the vendored schema (``compose-spec.json``, see SOURCE.md).

:func:`parse_click` parses a command line against a click (or Typer) application the way its CLI
would, running nothing, so a service's ``command`` can be checked against the program it starts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import yaml

SCHEMA = Path(__file__).with_name("compose-spec.json")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ValueError):
    """A required variable is unset (or empty, for ``:?``), or a ``$`` that is not a valid reference."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` with every variable reference replaced as Compose does (nested defaults included)."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":  # $$: a literal $
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2)
            out.append(_braced(text[i + 2 : end], env))
            i = end + 1
        elif match := _NAME.match(text, i + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            raise InterpolationError(f"invalid interpolation format for {text!r}: a lone '$' at {i}")
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth, i = 1, start
    while i < len(text):
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise InterpolationError(f"invalid interpolation format for {text!r}: an unclosed '${{'")


def _braced(body: str, env: Mapping[str, str]) -> str:
    match = _NAME.match(body)
    if match is None:
        raise InterpolationError(f"invalid interpolation format: '${{{body}}}'")
    name, rest = match.group(), body[match.end() :]
    value = env.get(name)
    if not rest:
        return value or ""
    for op in (":-", "-", ":?", "?", ":+", "+"):
        if rest.startswith(op):
            arg = rest[len(op) :]
            unset_or_empty = value is None or (op.startswith(":") and value == "")
            if op in (":-", "-"):
                return interpolate(arg, env) if unset_or_empty else value
            if op in (":?", "?"):
                if unset_or_empty:
                    raise InterpolationError(f"required variable {name} is missing a value: {interpolate(arg, env)}")
                return value
            return "" if unset_or_empty else interpolate(arg, env)
    raise InterpolationError(f"invalid interpolation format: '${{{body}}}'")


def _interpolate_all(node, env: Mapping[str, str]):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, dict):
        return {k: _interpolate_all(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_all(v, env) for v in node]
    return node


def load(path: Path, env: Mapping[str, str]) -> dict:
    """The compose file as Compose sees it with environment ``env``: merged, interpolated, schema-valid.

    Raises :class:`InterpolationError` or ``jsonschema.ValidationError`` as ``docker compose config`` fails."""
    import jsonschema

    document = _interpolate_all(yaml.safe_load(path.read_text()), env)
    schema = json.loads(SCHEMA.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(document)
    return document


class CommandLineError(ValueError):
    """The command line does not parse: an unknown command or option, a missing or malformed value."""


def parse_click(group, prog: str, argv: list[str], obj=None) -> list:
    """Parse ``argv`` against the click ``group`` down to the command it names, as the CLI would before
    running it; raises :class:`CommandLineError` with the CLI's own message where the CLI would refuse it.
    Returns the contexts, outermost first: ``[-1].info_name`` is the command, ``[-1].params`` its parsed
    options. ``obj`` is the group's context object where its option callbacks need one (Celery's).

    Works for click and for Typer, which carries its own copy of click (hence no isinstance checks)."""
    try:
        contexts = [group.make_context(prog, list(argv), obj=obj)]
        args = list(argv)
        while hasattr(contexts[-1].command, "resolve_command"):  # a group: the next word is a command
            ctx = contexts[-1]
            rest = list(ctx.args)  # what follows the subcommand's name (group options come first)
            if len(args) == len(rest):
                raise CommandLineError(f"{' '.join(argv)!r} names no command of {prog!r}")
            name = args[len(args) - len(rest) - 1]
            _, command, _ = ctx.command.resolve_command(ctx, [name])
            contexts.append(command.make_context(name, rest, parent=ctx))
            args = rest
    except CommandLineError:
        raise
    except Exception as exc:
        if not hasattr(exc, "format_message"):  # not a click usage error: a bug, let it show as one
            raise
        raise CommandLineError(f"{prog} {' '.join(argv)}: {exc.format_message()}") from exc
    return contexts
