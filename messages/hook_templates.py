"""Incoming-webhook templates: Jinja2 in its sandbox, checked at save time, bounded when rendered.

A render turns one payload into message fields or raises RenderError; it never runs past
its output or time budget, and it cannot reach Python internals.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import SandboxedEnvironment

FIELDS = ("title", "body", "format", "priority", "url", "channels")
LIMITS = {"title": 256, "body": 65_536, "format": 16, "priority": 8, "url": 2048, "channels": 2048}
MAX_CHANNELS = 50
MAX_TEMPLATE_CHARS = 20_000
RENDER_SECONDS = 1.0
FORMATS = ("text", "markdown", "html")
# How many trace events pass between two looks at the clock: cheap enough, and a loop
# body is a handful of events, so the deadline is overshot by microseconds.
CLOCK_EVERY = 256


class TemplateProblem(ValueError):
    """A template that cannot be saved: names the field, the line and what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class RenderError(Exception):
    """A render that failed on one payload: an error in the template, or past a budget."""


class _Sandbox(SandboxedEnvironment):
    # The sandbox's own range cap (100 000) still holds; nested loops are stopped by the clock.
    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return not attr.startswith("_") and super().is_safe_attribute(obj, attr, value)


def _environment() -> SandboxedEnvironment:
    env = _Sandbox(undefined=ChainableUndefined, autoescape=False)
    env.filters["tojson"] = lambda value, indent=None: json.dumps(
        value, ensure_ascii=False, indent=indent, default=str
    )
    return env


ENV = _environment()


def check(template: dict[str, str]) -> None:
    """Raise TemplateProblem for a field that does not compile or reaches for internals.

    A syntax error names its line; attribute names starting with "_" are refused here
    (the sandbox refuses them at render time too).
    """
    for field, source in template.items():
        if field not in FIELDS:
            raise TemplateProblem(f"template.{field}", f"unknown field; use {', '.join(FIELDS)}")
        if len(source) > MAX_TEMPLATE_CHARS:
            raise TemplateProblem(f"template.{field}", f"is over {MAX_TEMPLATE_CHARS} characters")
        try:
            tree = ENV.parse(source)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(
                f"template.{field}", f"line {exc.lineno}: {exc.message}"
            ) from None
        for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
            name = _reached_name(node)
            if isinstance(name, str) and name.startswith("_"):
                raise TemplateProblem(
                    f"template.{field}",
                    f"line {node.lineno}: {name!r} is not allowed: names starting with _ "
                    "reach Python internals",
                )


def _reached_name(node: nodes.Node) -> Any:
    """The attribute or key a node reaches for, when the template spells it out."""
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem):
        return node.arg.value if isinstance(node.arg, nodes.Const) else None
    if node.name == "attr" and node.args and isinstance(node.args[0], nodes.Const):
        return node.args[0].value
    return None


@dataclass(frozen=True)
class Rendered:
    """Message fields made from one payload; only what the template set."""

    fields: dict[str, Any]


def render(
    template: dict[str, str],
    payload: Any,
    seconds: float = RENDER_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Rendered:
    """Render every field of `template` with `payload`; raises RenderError.

    Runs in the caller's thread, under a trace function that stops the render once
    `seconds` have passed; each field's output stops at its size limit.
    """
    deadline = clock() + seconds
    out: dict[str, Any] = {}
    for field, source in template.items():
        text = _bounded(field, source, payload, deadline, clock).strip()
        if text:
            out[field] = text
    return Rendered(_typed(out))


def _bounded(
    field: str, source: str, payload: Any, deadline: float, clock: Callable[[], float]
) -> str:
    limit = LIMITS[field]
    parts: list[str] = []
    size = 0
    with _Deadline(deadline, clock, field):
        try:
            for chunk in ENV.from_string(source).generate(payload=payload):
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise RenderError(
                        f"template.{field}: the output passed {limit} characters and was "
                        "cut off; make the template produce less"
                    )
        except SecurityError as exc:
            raise RenderError(f"template.{field}: refused by the sandbox: {exc}") from None
        except TemplateError as exc:
            raise RenderError(f"template.{field}: {type(exc).__name__}: {exc}") from None
        except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as exc:
            raise RenderError(f"template.{field}: {type(exc).__name__}: {exc}") from None
    return "".join(parts)


def _typed(fields: dict[str, Any]) -> dict[str, Any]:
    if "format" in fields and fields["format"] not in FORMATS:
        raise RenderError(
            f"template.format: rendered {fields['format']!r}; must be one of {', '.join(FORMATS)}"
        )
    if "priority" in fields:
        raw = fields["priority"]
        if not raw.isdigit() or not 1 <= int(raw) <= 5:
            raise RenderError(f"template.priority: rendered {raw!r}; must be a number 1 to 5")
        fields["priority"] = int(raw)
    if "channels" in fields:
        # Rendered as "ops, oncall": channel names (or ids) separated by commas.
        names = [name.strip() for name in fields["channels"].split(",") if name.strip()]
        if len(names) > MAX_CHANNELS:
            raise RenderError(
                f"template.channels: rendered {len(names)} channels; at most {MAX_CHANNELS}"
            )
        fields["channels"] = names or None
    if "url" in fields and not fields["url"].startswith(("http://", "https://")):
        raise RenderError(f"template.url: rendered {fields['url'][:80]!r}; must be http(s)")
    return fields


class _Deadline:
    """A trace function on this thread that raises RenderError once the deadline passes.

    Compiled templates are Python code, so every loop turn is a trace event; a loop that
    prints nothing is stopped as surely as one that prints too much.
    """

    def __init__(self, deadline: float, clock: Callable[[], float], field: str):
        self.deadline, self.clock, self.field = deadline, clock, field
        self.events = 0
        self.previous = None

    def __enter__(self) -> _Deadline:
        self.previous = sys.gettrace()
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(self.previous)

    def _global(self, frame, event, arg):
        return self._local

    def _local(self, frame, event, arg):
        self.events += 1
        if self.events % CLOCK_EVERY == 0 and self.clock() > self.deadline:
            raise RenderError(
                f"template.{self.field}: rendering took longer than the budget and was stopped"
            )
        return self._local


def message_for(
    template: dict[str, str], hook_name: str, payload: Any
) -> tuple[dict[str, Any], str | None]:
    """The message fields of one payload and the render error, if any (then the fallback)."""
    try:
        fields = render(template, payload).fields
    except RenderError as exc:
        return fallback(hook_name, payload, str(exc)), str(exc)
    if not (fields.get("title") or fields.get("body")):
        error = "the template rendered neither a title nor a body for this payload"
        return fallback(hook_name, payload, error), error
    return fields, None


def fallback(hook_name: str, payload: Any, error: str) -> dict[str, Any]:
    """The message sent when the template fails: the error and the raw payload, so nothing is lost."""
    raw = json.dumps(payload, ensure_ascii=False, indent=2, default=str)
    budget = LIMITS["body"] - len(error) - 100
    if len(raw) > budget:
        raw = raw[:budget] + "\n… (payload cut)"
    return {
        "title": f"{hook_name}: template failed"[: LIMITS["title"]],
        "body": f"{error}\n\nRaw payload:\n{raw}",
        "format": "text",
    }
