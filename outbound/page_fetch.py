"""Fetching the page behind a message's URL and extracting its readable text.

Owns the fetch policy (timeouts, byte cap, manual redirects with the SSRF guard on every hop,
content-type check, charset detection) and the extraction; every outcome is a FetchResult.
"""

from __future__ import annotations

import codecs
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urljoin, urlsplit

from messagepusher.outbound import netguard
from messagepusher.supervisor.config import FetcherSettings

# trafilatura, lxml, charset_normalizer and requests are imported where they are first
# used, not here: they were the largest share of every start (docs/benchmarks.md).
if TYPE_CHECKING:
    import lxml.html
    import requests

ACCEPTED_TYPES = ("text/html", "text/plain")
_ACCEPT = "text/html,text/plain;q=0.9,*/*;q=0.1"
CHUNK_BYTES = 16_384
# Where a page may declare its charset; browsers look at the first 1024 bytes, some pages
# put a long <head> before the meta tag.
_META_SCAN_BYTES = 4096
_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE
)
# GB18030 is a superset of GB2312 and GBK; pages that declare the smaller sets often use
# characters only the larger one has.
_CHARSET_ALIASES = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030"}
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_WHITESPACE_RUN = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


@dataclass(frozen=True)
class FetchResult:
    """One fetch's outcome; `error` is set exactly when status is "error".

    `bytes` counts body bytes read (after content decoding); `truncated` is true when the
    body was cut at `fetcher.max_bytes` and the text comes from the first part only.
    """

    status: Literal["ok", "error"]
    title: str | None = None
    text: str | None = None
    error: str | None = None
    final_url: str | None = None
    http_status: int | None = None
    content_type: str | None = None
    bytes: int = 0
    truncated: bool = False


def fetch_page(
    url: str,
    settings: FetcherSettings,
    allow_private_networks: bool,
    session: requests.Session,
    clock: Callable[[], float] = time.monotonic,
) -> FetchResult:
    """Fetch `url` and extract its title and readable text.

    Runs in a fetcher worker thread and blocks on the network; never raises: every failure
    is a FetchResult with status "error". Redirects are followed by hand so that the
    private-network guard sees every hop. Each connect and each socket read has its own
    timeout; the whole fetch must also finish within connect + read timeout, so a server
    that trickles bytes cannot hold a worker for long. A body over `max_bytes` is cut there
    and the text extracted from what was read (`truncated`). `clock` is only for the tests.
    """
    import requests
    from requests.utils import requote_uri

    deadline = clock() + settings.connect_timeout_seconds + settings.read_timeout_seconds
    current = url
    for _ in range(settings.max_redirects + 1):
        refusal = target_refusal(current, allow_private_networks)
        if refusal:
            return FetchResult("error", error=refusal, final_url=current)
        try:
            response = session.get(
                current,
                headers={"User-Agent": settings.user_agent, "Accept": _ACCEPT},
                timeout=(settings.connect_timeout_seconds, settings.read_timeout_seconds),
                stream=True,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return FetchResult(
                "error", error=_request_error(current, exc, settings), final_url=current
            )
        with response:
            if not response.is_redirect:
                return _read_page(current, response, settings, deadline, clock)
            try:
                location = session.get_redirect_target(response) or ""
                current = requote_uri(urljoin(current, location))
            except ValueError as exc:
                return FetchResult(
                    "error",
                    error=f"{current} redirected to an unusable Location header: {exc}",
                    final_url=current,
                    http_status=response.status_code,
                )
        if clock() > deadline:
            return FetchResult("error", error=_deadline_error(url, settings), final_url=current)
    return FetchResult(
        "error",
        error=(
            f"{url} redirected more than {settings.max_redirects} times "
            f"(fetcher.max_redirects); last hop {current}"
        ),
        final_url=current,
    )


def target_refusal(url: str, allow_private_networks: bool) -> str | None:
    """Why `url` may not be fetched (scheme, host, private address), or None when it may.

    Does a blocking DNS look-up in the caller's thread unless private networks are allowed.
    """
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return f"{url} has scheme {parts.scheme or '(none)'!r}; only http and https are fetched"
        if not parts.hostname:
            return f"{url} has no host"
        netguard.check_url(url, allow_private_networks)
    except netguard.PrivateNetworkRefused as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot resolve the host of {url}: {exc}"
    except ValueError as exc:
        return f"{url} is not a valid URL: {exc}"
    return None


def _read_page(
    url: str,
    response: requests.Response,
    settings: FetcherSettings,
    deadline: float,
    clock: Callable[[], float],
) -> FetchResult:
    import requests

    status = response.status_code
    mime, declared = parse_content_type(response.headers.get("Content-Type", ""))
    if status >= 400:
        return FetchResult(
            "error",
            error=f"{url} answered HTTP {status} {response.reason or ''}".rstrip(),
            final_url=url,
            http_status=status,
            content_type=mime or None,
        )
    if mime not in ACCEPTED_TYPES:
        return FetchResult(
            "error",
            error=(
                f"{url} has content type {mime or '(none)'}; "
                f"only {' and '.join(ACCEPTED_TYPES)} pages are fetched"
            ),
            final_url=url,
            http_status=status,
            content_type=mime or None,
        )
    body = bytearray()
    truncated = False
    try:
        for chunk in response.iter_content(CHUNK_BYTES):
            body += chunk
            if len(body) > settings.max_bytes:
                del body[settings.max_bytes :]
                truncated = True
                break
            if clock() > deadline:
                return FetchResult(
                    "error",
                    error=_deadline_error(url, settings),
                    final_url=url,
                    http_status=status,
                    content_type=mime,
                    bytes=len(body),
                )
    except requests.RequestException as exc:
        return FetchResult(
            "error",
            error=_request_error(url, exc, settings),
            final_url=url,
            http_status=status,
            content_type=mime,
            bytes=len(body),
        )
    text = decode_body(bytes(body), declared, sniff_meta=mime == "text/html")
    if mime == "text/html":
        title, readable = extract_html(text)
    else:
        title, readable = None, _tidy(text)
    return FetchResult(
        "ok",
        title=title,
        text=readable[: settings.text_limit_chars],
        final_url=url,
        http_status=status,
        content_type=mime,
        bytes=len(body),
        truncated=truncated,
    )


def parse_content_type(header: str) -> tuple[str, str | None]:
    """("text/html", "gbk") from 'text/html; charset="GBK"'; the charset is None when absent."""
    mime, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip("\"'"):
            charset = value.strip().strip("\"'").lower()
    return mime.strip().lower(), charset


def decode_body(body: bytes, declared: str | None, sniff_meta: bool) -> str:
    """Decode with the header's charset, else a BOM, else the page's <meta>, else detection.

    A charset nobody knows is skipped; bytes that do not fit the chosen charset are replaced.
    """
    candidates = [declared]
    candidates += [name for bom, name in _BOMS if body.startswith(bom)]
    if sniff_meta:
        match = _META_CHARSET.search(body[:_META_SCAN_BYTES])
        candidates.append(match.group(1).decode("ascii").lower() if match else None)
    for name in candidates:
        if not name:
            continue
        name = _CHARSET_ALIASES.get(name, name)
        try:
            return body.decode(name, errors="replace")
        except LookupError:
            continue
    import charset_normalizer

    best = charset_normalizer.from_bytes(body).best()
    if best is not None:
        return str(best)
    return body.decode("utf-8", errors="replace")


def extract_html(html: str) -> tuple[str | None, str]:
    """The title and readable text of an HTML page (trafilatura, falling back to all text).

    Pure CPU work; never raises. trafilatura favours recall and drops comments; when it
    finds no main content (short or unusual pages) every visible text node is used.
    """
    import trafilatura

    tree = trafilatura.load_html(html) if html.strip() else None
    if tree is None:
        return None, ""
    metadata = trafilatura.extract_metadata(tree, extensive=False)
    title = (metadata.title or "").strip() or _title_element(tree) or None
    text = trafilatura.extract(tree, favor_recall=True, include_comments=False)
    if not text:
        text = _all_text(html)
    return title, _tidy(text)


def _title_element(tree: lxml.html.HtmlElement) -> str:
    return " ".join((tree.findtext(".//title") or "").split())


def _all_text(html: str) -> str:
    import lxml.html
    from lxml.etree import ParserError

    try:
        root = lxml.html.fromstring(html)
    except (ParserError, ValueError):
        return ""
    for element in root.xpath("//script|//style|//noscript|//template"):
        element.drop_tree()
    return "\n".join(root.itertext())


def _tidy(text: str) -> str:
    lines = (_WHITESPACE_RUN.sub(" ", line).strip() for line in text.splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _deadline_error(url: str, settings: FetcherSettings) -> str:
    budget = settings.connect_timeout_seconds + settings.read_timeout_seconds
    return (
        f"fetching {url} took longer than {budget:g}s in total "
        f"(fetcher.connect_timeout_seconds + fetcher.read_timeout_seconds)"
    )


def _request_error(url: str, exc: requests.RequestException, settings: FetcherSettings) -> str:
    import requests
    from urllib3.exceptions import ReadTimeoutError

    host = urlsplit(url).hostname or url
    if isinstance(exc, requests.ConnectTimeout):
        return (
            f"connecting to {host} timed out after {settings.connect_timeout_seconds:g}s "
            f"(fetcher.connect_timeout_seconds)"
        )
    # A read timeout while streaming the body arrives as a ConnectionError wrapping urllib3's.
    if isinstance(exc, requests.ReadTimeout) or (
        exc.args and isinstance(exc.args[0], ReadTimeoutError)
    ):
        return (
            f"reading from {host} timed out after {settings.read_timeout_seconds:g}s "
            f"(fetcher.read_timeout_seconds)"
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error talking to {host}: {exc}"
    if isinstance(exc, requests.ConnectionError):
        return f"cannot connect to {host}: {exc}"
    return f"fetching {url} failed: {exc}"
