"""What the HTTP channels share: rendering a message, size limits, and classifying answers.

Everything here is pure except `perform`, the one place a channel's request meets the network.
"""

from __future__ import annotations

import abc
import email.utils
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Annotated, Any, ClassVar
from urllib.parse import urlencode, urlsplit

from pydantic import AfterValidator

from messagepusher.actors.channels.base import (
    ChangeResult,
    Channel,
    ChannelConfig,
    OutboundMessage,
    SendContext,
    SendResult,
    mask_secret,
)
from messagepusher.actors.channels.transport import CallFailed, CallInvalid, CallTimeout
from messagepusher.outbound import netguard

RESPONSE_EXCERPT_CHARS = 1000  # what is kept in SendResult.response
DETAIL_EXCERPT_CHARS = 200  # what is quoted in SendResult.detail
MIN_REDACTED_CHARS = 4  # shorter "secrets" would mask ordinary words in error texts
FETCHED_EXCERPT_CHARS = 2000
AI_LABELS = {
    "summarize": "摘要/Summary",
    "translate": "翻译/Translation",
    "classify": "分类/Classification",
}


def check_http_url(value: str) -> str:
    """Accept an absolute http(s) URL, unchanged."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "must be an http:// or https:// URL with a host, e.g. https://example.com/hook"
        )
    return value


def check_base_url(value: str) -> str:
    """Accept an absolute http(s) URL and drop a trailing slash so paths can be appended."""
    return check_http_url(value).rstrip("/")


HttpUrl = Annotated[str, AfterValidator(check_http_url)]
BaseUrl = Annotated[str, AfterValidator(check_base_url)]


# --- requests and answers -----------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request a channel wants made, built by a pure function so tests can read it."""

    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def json_call(url: str, payload: Any, headers: Mapping[str, str] | None = None) -> Call:
    """A POST carrying `payload` as UTF-8 JSON (not \\u-escaped: byte limits are about UTF-8)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    content_type = {"Content-Type": "application/json; charset=utf-8"}
    return Call("POST", url, body, {**content_type, **(headers or {})})


def form_call(url: str, form: Mapping[str, str]) -> Call:
    """A POST carrying `form` as application/x-www-form-urlencoded."""
    return Call(
        "POST", url, urlencode(form).encode(), {"Content-Type": "application/x-www-form-urlencoded"}
    )


@dataclass(frozen=True)
class Answer:
    """What a service answered: status, headers and (at most MAX_RESPONSE_BYTES of) body text."""

    status: int
    text: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    @property
    def excerpt(self) -> str:
        return self.text[:RESPONSE_EXCERPT_CHARS]

    @property
    def short(self) -> str:
        return " ".join(self.text[:DETAIL_EXCERPT_CHARS].split())


def secret_values(config: ChannelConfig, fields: Iterable[str]) -> list[str]:
    """The secret strings in `config` (and a proxy's credentials), to keep out of error texts."""
    values: list[str] = []
    for name in fields:
        value = getattr(config, name, None)
        if isinstance(value, str):
            values.append(value)
        elif isinstance(value, list):
            values.extend(v for v in value if isinstance(v, str))
        elif isinstance(value, dict):
            values.extend(v for v in value.values() if isinstance(v, str))
    if config.proxy and urlsplit(config.proxy).password:
        values.append(config.proxy)
    return values


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret in `text` by its mask; a URL's path and query count as secret too.

    requests quotes only the path of a failed URL ("Max retries exceeded with url: /bot123:ABC/…"),
    so a secret URL is also redacted by its path.
    """
    needles: set[str] = set()
    for secret in secrets:
        if len(secret) < MIN_REDACTED_CHARS:
            continue
        needles.add(secret)
        parts = urlsplit(secret)
        if parts.scheme and parts.path not in ("", "/"):
            needles.add(parts.path + (f"?{parts.query}" if parts.query else ""))
            needles.add(parts.path)
    for needle in sorted(needles, key=len, reverse=True):
        text = text.replace(needle, mask_secret(needle))
    return text


def perform(
    ctx: SendContext, call: Call, proxy: str | None, secrets: Iterable[str] = ()
) -> Answer | SendResult:
    """Check the target against the private-network rule, then make `call` with ctx.transport.

    Blocking I/O in the caller's (channel-pool worker) thread. Never raises for network
    trouble: a refused target or a bad URL is a permanent result, a timeout, a connection
    error or a DNS failure a retryable one; texts have `secrets` masked.
    """
    try:
        ctx.check_target(call.url)
    except netguard.PrivateNetworkRefused as exc:
        return SendResult.permanent(str(exc))
    except ValueError as exc:
        return SendResult.permanent(f"{redact(str(exc), secrets)}: check the channel's URL")
    except OSError as exc:
        host = urlsplit(call.url).hostname
        return SendResult.retry(f"cannot resolve {host}: {exc}")
    try:
        raw = ctx.transport.request(
            call.method, call.url, call.body, call.headers, ctx.timeout_seconds, proxy
        )
    except CallTimeout as exc:
        return SendResult.retry(
            f"timed out after {ctx.timeout_seconds:g} s: {redact(str(exc), secrets)}"
        )
    except CallFailed as exc:
        return SendResult.retry(f"connection failed: {redact(str(exc), secrets)}")
    except CallInvalid as exc:
        return SendResult.permanent(f"request not possible: {redact(str(exc), secrets)}")
    text = redact(raw.body.decode("utf-8", errors="replace"), secrets)
    return Answer(raw.status, text, raw.headers)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def json_at(data: Any, *path: str) -> Any:
    """The value at `path` in decoded JSON (e.g. "data", "message_id"), or None where a step is missing."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def retry_after_from_json(data: Any, *path: str) -> float | None:
    """The number at `path` in a JSON answer (e.g. "parameters", "retry_after"), or None."""
    data = json_at(data, *path)
    if isinstance(data, int | float) and not isinstance(data, bool):
        return max(0.0, float(data))
    return None


def keep_remote_id(result: SendResult, remote_id: Any) -> SendResult:
    """`result`, holding the id the service gave the message when it was sent (for recall and edit)."""
    if result.status == "sent" and remote_id is not None and remote_id != "":
        result.remote_id = str(remote_id)
    return result


def change_answer(answer: Answer | SendResult, done: str, service: str) -> ChangeResult:
    """A recall or edit answer: 2xx is `done`, anything else failed with the service's words."""
    if isinstance(answer, SendResult):
        return ChangeResult("failed", answer.detail)
    if 200 <= answer.status < 300:
        return ChangeResult(done)  # type: ignore[arg-type]  # done is recalled or edited
    return ChangeResult("failed", f"{service} answered HTTP {answer.status}: {answer.short}")


def classify_status(
    answer: Answer, now: float, service: str, hints: Mapping[int, str] | None = None
) -> SendResult:
    """Classify by HTTP status alone: 2xx sent; 408, 429 and 5xx retry (Retry-After honoured);
    3xx and other 4xx permanent, with the status's hint appended."""
    status = answer.status
    if 200 <= status < 300:
        return SendResult.sent(status, answer.excerpt)
    detail = f"{service} answered HTTP {status}" + (f": {answer.short}" if answer.short else "")
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(answer.header("Retry-After"), now)
        return SendResult.retry(detail, status, answer.excerpt, retry_after)
    if 300 <= status < 400:
        location = answer.header("Location") or "elsewhere"
        detail = (
            f"{service} answered HTTP {status}, a redirect to {location}; redirects are not "
            "followed, set the channel's URL to the final address"
        )
    elif hints and status in hints:
        detail += f" ({hints[status]})"
    return SendResult.permanent(detail, status, answer.excerpt)


def classify_body_code(
    answer: Answer,
    now: float,
    service: str,
    *,
    code_key: str,
    message_key: str,
    ok: int,
    retry_codes: Mapping[int, float | None] | None = None,
    hints: Mapping[int, str] | None = None,
) -> SendResult:
    """Classify a service that answers HTTP 200 with a result code in a JSON body.

    The HTTP status decides first (see classify_status); a 2xx whose body has no
    `code_key` is permanent (wrong base_url); `ok` is sent; a code in `retry_codes` is
    retried after its delay; any other code is permanent, with its hint appended.
    """
    if not 200 <= answer.status < 300:
        return classify_status(answer, now, service)
    data = answer.json()
    if not isinstance(data, dict) or code_key not in data:
        return SendResult.permanent(
            f"{service} answered HTTP {answer.status} without a {code_key!r} field "
            f"({answer.short or 'empty body'}); check base_url",
            answer.status,
            answer.excerpt,
        )
    code = data[code_key]
    if code == ok:
        return SendResult.sent(answer.status, answer.excerpt)
    detail = f"{service} error {code_key}={code}: {data.get(message_key, '')}"
    if hints and code in hints:
        detail += f" ({hints[code]})"
    if retry_codes and code in retry_codes:
        return SendResult.retry(detail, answer.status, answer.excerpt, retry_codes[code])
    return SendResult.permanent(detail, answer.status, answer.excerpt)


# --- size limits --------------------------------------------------------------------------

Measure = Callable[[str], int]


def utf8_len(text: str) -> int:
    return len(text.encode())


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, how Telegram counts."""
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int, measure: Measure) -> int:
    """Length of the longest prefix of `text` whose measure is at most `limit`.

    Cutting between characters (never inside one) keeps multibyte UTF-8 intact.
    """
    window = text[: limit + 1]  # every character measures at least 1
    if measure(window) <= limit:
        return len(window)
    low, high = 0, len(window)  # measure(window[:low]) <= limit < measure(window[:high])
    while high - low > 1:
        middle = (low + high) // 2
        if measure(window[:middle]) <= limit:
            low = middle
        else:
            high = middle
    return low


def truncate(text: str, limit: int, measure: Measure = len, marker: str = "…") -> tuple[str, bool]:
    """`text` cut to `limit` (by `measure`: len for characters, utf8_len for bytes) with `marker`
    at the end when cut; the flag says whether it was."""
    if measure(text[: limit + 1]) <= limit:
        return text, False
    return text[: _fit(text, limit - measure(marker), measure)] + marker, True


def split(text: str, limit: int, measure: Measure = len) -> list[str]:
    """`text` in parts of at most `limit`, broken at a line break or a space when one is in the
    second half of the part, else between characters."""
    parts: list[str] = []
    rest = text
    while measure(rest[: limit + 1]) > limit:
        cut = _fit(rest, limit, measure)
        for separator in ("\n", " "):
            at = rest.rfind(separator, 0, cut)
            if at > cut // 2:
                parts.append(rest[:at])
                rest = rest[at + 1 :]
                break
        else:
            parts.append(rest[:cut])
            rest = rest[cut:]
    parts.append(rest)
    return parts


def truncation_note(what: str, original: int, limit: int, unit: str) -> str:
    return f"{what} truncated from {original} to {limit} {unit} (the service's limit)"


# --- rendering ----------------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset(
        {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCKS:
            self.pieces.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCKS:
            self.pieces.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.pieces.append(data)


def html_to_text(markup: str) -> str:
    """Readable text of an HTML fragment: tags dropped, blocks on their own lines."""
    parser = _TextExtractor()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.pieces).splitlines())
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()


def body_text(message: OutboundMessage) -> str:
    """The body as text or markdown source (an HTML body is reduced to its text)."""
    return html_to_text(message.body) if message.format == "html" else message.body


def message_title(message: OutboundMessage, limit: int = 100) -> str:
    """The title, or the first line of the body when there is none (services that need one)."""
    if message.title.strip():
        return message.title.strip()
    first = next((line.strip() for line in body_text(message).splitlines() if line.strip()), "")
    return truncate(first, limit)[0] or f"Message {message.id}"


def ai_result_text(ai: Mapping[str, Any] | None) -> str:
    """The AI result as one text: a string as is, a classification as "label; tags: a, b"."""
    if not ai or ai.get("result") in (None, ""):
        return ""
    result = ai["result"]
    if isinstance(result, str):
        return result.strip()
    if isinstance(result, Mapping):
        pieces = []
        if result.get("label"):
            pieces.append(str(result["label"]))
        if result.get("tags"):
            pieces.append("tags: " + ", ".join(str(tag) for tag in result["tags"]))
        rest = {k: v for k, v in result.items() if k not in ("label", "tags")}
        pieces.extend(f"{k}: {v}" for k, v in rest.items())
        return "; ".join(pieces)
    if isinstance(result, list):
        return ", ".join(str(item) for item in result)
    return str(result)


def ai_label(ai: Mapping[str, Any]) -> str:
    task = str(ai.get("task", ""))
    return AI_LABELS.get(task, task or "AI")


def render(message: OutboundMessage, *, markdown: bool, title: bool = True) -> str:
    """The whole message as one text: title, AI result first, body, then the link.

    `markdown` chooses markdown emphasis and a [fetched title](url) link; `title=False`
    leaves the title out for services that show it in a field of their own.
    """
    sections: list[str] = []
    if title and message.title.strip():
        sections.append(f"**{message.title.strip()}**" if markdown else message.title.strip())
    ai_text = ai_result_text(message.ai)
    if ai_text and message.ai:
        label = ai_label(message.ai)
        sections.append(f"**{label}:** {ai_text}" if markdown else f"{label}: {ai_text}")
    body = body_text(message).strip()
    if body:
        sections.append(body)
    if message.url:
        fetched_title = ((message.fetched or {}).get("title") or "").strip()
        if markdown:
            sections.append(f"[{fetched_title or message.url}]({message.url})")
        else:
            sections.append(f"{fetched_title}\n{message.url}" if fetched_title else message.url)
    return "\n\n".join(sections)


def fetched_excerpt(fetched: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """{title, text} of a fetched page with the text cut to FETCHED_EXCERPT_CHARS, or None."""
    if not fetched:
        return None
    text = fetched.get("text") or ""
    return {"title": fetched.get("title"), "text": text[:FETCHED_EXCERPT_CHARS]}


# --- the one-request channel --------------------------------------------------------------


Built = Call | tuple[Call | list[Call], list[str]]  # one or more requests, maybe with notes


def as_calls(built: Built) -> tuple[list[Call], list[str]]:
    """What a channel's build function gave, as `calls` answers it: requests and notes."""
    if isinstance(built, Call):
        return [built], []
    calls, notes = built
    return (calls if isinstance(calls, list) else [calls]), notes


class HttpChannel(Channel):
    """A channel that sends a message as HTTP requests in order and classifies each answer.

    A subclass names its module's pure `classify_answer(answer, now)` as a static method;
    `calls` comes from the subclasses below.
    """

    classify_answer: ClassVar[Callable[[Answer, float], SendResult]]

    @abc.abstractmethod
    def calls(self, message: OutboundMessage, ctx: SendContext) -> tuple[list[Call], list[str]]:
        """The requests for `message`, sent in order, and notes about them (what was cut or split)."""

    def classify(self, answer: Answer) -> SendResult:
        """Sent, retry or permanent, read from the service's answer (status and body)."""
        return self.classify_answer(answer, self.now())

    def targets(self) -> list[str]:
        """The URL the channel posts to (`url`, else `base_url`)."""
        return [getattr(self.config, "url", None) or self.config.base_url]

    def exchange(self, ctx: SendContext, call: Call) -> Answer | SendResult:
        """`perform` with this channel's proxy and its secrets masked in every text."""
        return perform(ctx, call, self.config.proxy, secret_values(self.config, self.secret_fields))

    def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        """Send `message`'s requests in order and classify each answer; stop at the first failure.

        Runs in a channel-pool worker thread and blocks on the network for at most about
        ctx.timeout_seconds per request. Does not raise for service or network errors: they
        come back as SendResult.retry (with the service's delay when it gives one) or
        .permanent. A failure after the first part says which parts were already sent; a
        retry sends them again.
        """
        calls, notes = self.calls(message, ctx)
        remote_ids: list[str] = []
        for number, call in enumerate(calls, start=1):
            answer = self.exchange(ctx, call)
            result = answer if isinstance(answer, SendResult) else self.classify(answer)
            if result.remote_id:
                remote_ids.append(result.remote_id)
            if result.status != "sent" and number > 1:
                result.notes.append(
                    f"part {number} of {len(calls)} failed; parts 1–{number - 1} were sent"
                )
                return result
            if result.status != "sent":
                break
        result.parts = len(calls)
        result.notes.extend(notes)
        # A message split into parts is recalled part by part: keep every part's id.
        result.remote_id = ",".join(remote_ids) or None
        return result


class OneRequestChannel(HttpChannel):
    """A channel whose message fits one request (every HTTP type but Telegram).

    A subclass names its module's pure functions as static methods: `build_call(message,
    config)` gives the request (or the request and notes on what was cut), and
    `classify_answer` as above. A request that needs more than the message and the config
    (the time for a signature, the delivery id) overrides `build` instead.
    """

    build_call: ClassVar[Callable[..., Built]]

    def build(self, message: OutboundMessage, ctx: SendContext) -> Built:
        """The request for `message` (pure; the pool's worker thread calls it)."""
        return self.build_call(message, self.config)

    def calls(self, message: OutboundMessage, ctx: SendContext) -> tuple[list[Call], list[str]]:
        return as_calls(self.build(message, ctx))
