"""The provider for any OpenAI-compatible chat API (OpenAI, DeepSeek, Qwen, Ollama, vLLM …).

Building the request and reading the answer are pure functions; only `run` does I/O.
"""

from __future__ import annotations

import json
import os
import re
from typing import TYPE_CHECKING, Any

from messagepusher.actors.ai.base import AIError, AIRequest, AIResult, classification_text
from messagepusher.supervisor.config import AIProviderSettings

if TYPE_CHECKING:
    import requests

_TEMPERATURE = {"summarize": 0.2, "translate": 0.2, "classify": 0.0}
_FENCE = re.compile(r"^\s*```[\w-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_LABEL_FIELD = re.compile(r'"label"\s*:\s*"([^"]+)"')
_MAX_LABEL_CHARS = 64
_ERROR_EXCERPT_CHARS = 300


class OpenAIProvider:
    """One configured `kind: openai` provider, called over a shared keep-alive session."""

    def __init__(
        self,
        name: str,
        settings: AIProviderSettings,
        summary_sentences: int,
        session: requests.Session,
    ):
        self.name = name
        self.settings = settings
        self.summary_sentences = summary_sentences
        self.session = session

    def run(self, request: AIRequest) -> AIResult:
        """POST one chat completion and read the task's result from it.

        Runs in an ai_pool worker thread and blocks on the network; raises AIError only:
        retryable for timeouts, connection errors, 429, 408 and 5xx; not retryable for
        other answers (bad key, unknown model, malformed reply) and for a missing key.
        """
        import requests  # loaded already by the session; not at start-up

        payload = build_payload(request, self.settings.model, self.summary_sentences)
        try:
            response = self.session.post(
                self.settings.base_url.rstrip("/") + "/chat/completions",
                json=payload,
                headers=self._headers(),
                timeout=self.settings.timeout_seconds,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise AIError(
                f"provider {self.name!r} did not answer within {self.settings.timeout_seconds:g}s "
                f"(ai.providers.{self.name}.timeout_seconds)",
                retryable=True,
            ) from None
        except requests.RequestException as exc:
            raise AIError(f"provider {self.name!r} is unreachable: {exc}", retryable=True) from None
        with response:
            if response.status_code != 200:
                raise status_error(
                    self.name,
                    response.status_code,
                    response.text,
                    response.headers.get("Retry-After"),
                )
            try:
                body = response.json()
            except ValueError:
                raise AIError(
                    f"provider {self.name!r} answered 200 with a body that is not JSON: "
                    f"{response.text[:_ERROR_EXCERPT_CHARS]!r}",
                    retryable=True,
                ) from None
        content = reply_content(self.name, body)
        model = body.get("model") or self.settings.model
        if request.task == "classify":
            label, tags = parse_classification(content)
            return AIResult(
                "classify", self.name, classification_text(label, tags), label, tags, model
            )
        return AIResult(request.task, self.name, content.strip(), model=model)

    def _headers(self) -> dict[str, str]:
        key = self.settings.api_key
        if not key and self.settings.api_key_env:
            key = os.environ.get(self.settings.api_key_env, "")
            if not key:
                raise AIError(
                    f"environment variable {self.settings.api_key_env} "
                    f"(ai.providers.{self.name}.api_key_env) is not set: export the API key "
                    f"in it or set ai.providers.{self.name}.api_key",
                    retryable=False,
                )
        return {"Authorization": f"Bearer {key}"} if key else {}


def build_payload(request: AIRequest, model: str, summary_sentences: int) -> dict[str, Any]:
    """The chat-completions body for one task: a system prompt and the message as user text.

    Raises AIError (not retryable) for a translate without a target language.
    """
    if request.task == "summarize":
        language = request.language or "the same language as the text"
        system = (
            f"Summarise the message below for a notification in at most {summary_sentences} "
            f"sentences, written in {language}. Reply with the summary only."
        )
    elif request.task == "translate":
        if not request.language:
            raise AIError(
                "translate needs a target language: send ai.language with the message "
                "(for example en, zh-CN or German)",
                retryable=False,
            )
        system = (
            f"Translate the message below into {request.language}. Keep names, numbers, URLs "
            "and formatting. Reply with the translation only."
        )
    elif request.task == "classify":
        system = (
            "Classify the message below. Reply with JSON only, no prose: "
            '{"label": "<one short lower-case word such as alert, report or info>", '
            '"tags": ["<up to five short lower-case topic tags>"]}'
        )
    else:
        raise AIError(
            f"unknown AI task {request.task!r}; use summarize, translate or classify",
            retryable=False,
        )
    user = f"Title: {request.title}\n\n{request.text}" if request.title else request.text
    return {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "temperature": _TEMPERATURE[request.task],
    }


def status_error(name: str, status: int, body: str, retry_after: str | None = None) -> AIError:
    """The AIError for a non-200 answer, with the provider's own error message when it has one.

    A Retry-After in seconds is kept; the HTTP-date form is ignored (the back-off applies).
    """
    detail = _error_message(body)
    retryable = status in (408, 429) or status >= 500
    hint = ""
    if 300 <= status < 400:
        hint = f"; set ai.providers.{name}.base_url to the address it redirects to"
    elif status in (401, 403):
        hint = f"; check ai.providers.{name}.api_key or api_key_env"
    elif status == 404:
        hint = f"; check ai.providers.{name}.base_url (it should end before /chat/completions) and model"
    seconds = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
    return AIError(f"provider {name!r} answered HTTP {status}: {detail}{hint}", retryable, seconds)


def _error_message(body: str) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.strip()[:_ERROR_EXCERPT_CHARS] or "(empty body)"
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return body.strip()[:_ERROR_EXCERPT_CHARS]


def reply_content(name: str, body: Any) -> str:
    """The first choice's message text; AIError (not retryable) when the reply has none."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        content = None
    if not isinstance(content, str) or not content.strip():
        excerpt = json.dumps(body, ensure_ascii=False)[:_ERROR_EXCERPT_CHARS]
        raise AIError(
            f"provider {name!r} answered without choices[0].message.content: {excerpt}",
            retryable=False,
        )
    return content


def parse_classification(content: str) -> tuple[str, list[str]]:
    """Label and tags from a classify reply, leniently.

    Accepts bare JSON, JSON in a code fence or inside prose, tags as a list or a
    comma-separated string; from a reply that is not a JSON object the label is a
    `"label": "…"` pair if one is there, else the reply's first line.
    """
    fenced = _FENCE.match(content)
    text = fenced.group(1) if fenced else content
    found = _OBJECT.search(text)
    parsed: Any = None
    if found:
        try:
            parsed = json.loads(found.group(0))
        except ValueError:
            parsed = None
    if not isinstance(parsed, dict):
        field = _LABEL_FIELD.search(text)
        first_line = text.strip().splitlines()[0] if text.strip() else ""
        label = field.group(1) if field else first_line.strip(" .\"'")
        return label.strip().lower()[:_MAX_LABEL_CHARS] or "unknown", []
    label = str(parsed.get("label") or "unknown").strip().lower()[:_MAX_LABEL_CHARS]
    raw_tags = parsed.get("tags") or []
    if isinstance(raw_tags, str):
        raw_tags = raw_tags.split(",")
    if not isinstance(raw_tags, list):
        raw_tags = []
    tags = [str(t).strip() for t in raw_tags if str(t).strip()]
    return label, tags
