"""The AI provider interface: what a provider is asked, what it answers, how it fails.

Every provider (local, openai) takes an AIRequest and returns an AIResult or raises AIError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Task = Literal["summarize", "translate", "classify"]


@dataclass(frozen=True)
class AIRequest:
    """One AI step on a message: the text is the fetched page's, or the message body."""

    task: Task
    text: str
    title: str = ""
    language: str | None = None  # translate: the target; summarize: the summary's language


@dataclass(frozen=True)
class AIResult:
    """A provider's answer; classify also fills `label` and `tags`."""

    task: Task
    provider: str
    result: str
    label: str | None = None
    tags: list[str] = field(default_factory=list)
    model: str | None = None


class AIError(Exception):
    """An AI step failed; `retryable` says whether trying again later may help.

    `retry_after` (seconds) is the provider's own Retry-After, to override the back-off.
    """

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type[AIError], tuple[str, bool, float | None]]:
        # Exceptions are rebuilt from args on copy or pickle; args hold only the message.
        return AIError, (self.message, self.retryable, self.retry_after)


class Provider(Protocol):
    def run(self, request: AIRequest) -> AIResult:
        """Run one task. Runs in an ai_pool worker thread; raises AIError only."""
        ...


def classification_text(label: str, tags: list[str]) -> str:
    """The human-readable `result` of a classify task: `alert [disk, database]`."""
    return f"{label} [{', '.join(tags)}]" if tags else label
