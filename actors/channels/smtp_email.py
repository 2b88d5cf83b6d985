"""The e-mail channel (type "email"): one SMTP submission with a text and an HTML part.

Sends whole. SMTP 4xx and connection trouble retry; 5xx (bad recipient, auth failed) are permanent.
"""

from __future__ import annotations

import email.utils
import html
import smtplib
import ssl
from email.message import EmailMessage
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from messagepusher.actors.channels.base import (
    Channel,
    ChannelConfig,
    OutboundMessage,
    SendContext,
    SendResult,
    register,
)
from messagepusher.actors.channels.http_common import (
    ai_label,
    ai_result_text,
    body_text,
    message_title,
    render,
)
from messagepusher.outbound import netguard

DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
SUBJECT_LIMIT_CHARS = 200
SMTP_HINTS = {
    530: "the server wants authentication: set username and password",
    535: "authentication failed: check username and password",
    550: "a recipient or the sender was refused: check to and from",
    553: "the sender address is not allowed: check from",
}


class EmailConfig(ChannelConfig):
    host: str = Field(min_length=1, description="The SMTP server's host name.")
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="The SMTP port; default 587 for starttls, 465 for ssl, 25 for none.",
    )
    security: Literal["starttls", "ssl", "none"] = Field(
        "starttls", description="starttls (submission, 587), ssl (implicit TLS, 465) or none."
    )
    username: str | None = Field(None, description="Log in with this user; leave out for no AUTH.")
    password: str | None = Field(None, description="The password for username.")
    from_: str = Field(
        alias="from", description='The sender, "a@example.com" or "Name <a@example.com>".'
    )
    to: list[str] = Field(min_length=1, description="The recipients' addresses.")
    verify_tls: bool = Field(
        True, description="Verify the server's certificate; false accepts a self-signed one."
    )

    @field_validator("from_")
    @classmethod
    def _sender_is_an_address(cls, value: str) -> str:
        if "@" not in email.utils.parseaddr(value)[1]:
            raise ValueError('must be an e-mail address such as "alerts@example.com"')
        return value

    @field_validator("to")
    @classmethod
    def _recipients_are_addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if "@" not in email.utils.parseaddr(address)[1]:
                raise ValueError(f'{address!r} is not an e-mail address such as "me@example.com"')
        return value

    @field_validator("proxy")
    @classmethod
    def _no_proxy(cls, value: str | None) -> str | None:
        if value:
            raise ValueError(
                "is not supported for e-mail (SMTP does not go through HTTP proxies); remove it"
            )
        return value

    @field_validator("password")
    @classmethod
    def _password_needs_username(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and not info.data.get("username"):
            raise ValueError("is set without username: set username too")
        return value

    @property
    def smtp_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]


def render_html(message: OutboundMessage) -> str:
    """The HTML part: title, AI result first, the body (markdown rendered), then the link."""
    sections = []
    if message.title.strip():
        sections.append(f"<h2>{html.escape(message.title.strip())}</h2>")
    ai_text = ai_result_text(message.ai)
    if ai_text and message.ai:
        sections.append(
            f"<p><strong>{html.escape(ai_label(message.ai))}:</strong> {html.escape(ai_text)}</p>"
        )
    if message.format == "markdown":
        import markdown as markdown_lib  # only markdown mail needs it: not imported at start-up

        sections.append(markdown_lib.markdown(message.body, extensions=["extra", "sane_lists"]))
    elif message.format == "html":
        sections.append(message.body)
    else:
        paragraphs = (p for p in body_text(message).split("\n\n") if p.strip())
        sections.extend(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
    if message.url:
        label = ((message.fetched or {}).get("title") or "").strip() or message.url
        sections.append(f'<p><a href="{html.escape(message.url)}">{html.escape(label)}</a></p>')
    body = "\n".join(sections)
    return f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n{body}\n</body></html>\n'


def build_message(
    message: OutboundMessage, config: EmailConfig, delivery_id: int, now: float
) -> EmailMessage:
    """The MIME message: multipart/alternative of text and HTML, with a Message-ID that stays
    the same across retries so mail clients can drop duplicates."""
    mime = EmailMessage()
    mime["Subject"] = message_title(message, SUBJECT_LIMIT_CHARS)
    mime["From"] = config.from_
    mime["To"] = ", ".join(config.to)
    mime["Date"] = email.utils.formatdate(now)
    domain = email.utils.parseaddr(config.from_)[1].rpartition("@")[2]
    mime["Message-ID"] = f"<messagepusher.{message.id}.{delivery_id}@{domain}>"
    mime["X-MessagePusher-Delivery"] = str(delivery_id)
    mime.set_content(render(message, markdown=False))
    mime.add_alternative(render_html(message), subtype="html")
    return mime


def classify_smtp_code(code: int, text: str, what: str) -> SendResult:
    """4xx is transient (retry), anything else (5xx) permanent, with a hint for the usual codes."""
    detail = f"SMTP {what} {code}: {text}"
    if 400 <= code < 500:
        return SendResult.retry(detail, code, text)
    if code in SMTP_HINTS:
        detail += f" ({SMTP_HINTS[code]})"
    return SendResult.permanent(detail, code, text)


def _text(raw: bytes | str) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


@register
class EmailChannel(Channel):
    type_name = "email"
    Config = EmailConfig
    secret_fields = ("password",)
    config: EmailConfig

    def targets(self) -> list[str]:
        return [f"smtp://{self.config.host}:{self.config.smtp_port}"]

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.config.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self, ctx: SendContext) -> smtplib.SMTP:
        config = self.config
        if config.security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                config.host,
                config.smtp_port,
                timeout=ctx.timeout_seconds,
                context=self._tls_context(),
            )
        else:
            smtp = smtplib.SMTP(config.host, config.smtp_port, timeout=ctx.timeout_seconds)
        try:
            if config.security == "starttls":
                smtp.starttls(context=self._tls_context())
            if config.username:
                smtp.login(config.username, config.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def send(self, message: OutboundMessage, ctx: SendContext) -> SendResult:
        """Submit the message over SMTP to every address in `to`.

        Runs in a channel-pool worker thread; blocks for at most about ctx.timeout_seconds per
        SMTP step. Does not raise for server or network errors: they come back as results.
        Recipients refused while others were accepted are listed in the result's notes.
        """
        try:
            ctx.check_target(self.targets()[0])
        except netguard.PrivateNetworkRefused as exc:
            return SendResult.permanent(str(exc))
        except OSError as exc:
            return SendResult.retry(f"cannot resolve {self.config.host}: {exc}")
        mime = build_message(message, self.config, ctx.delivery_id, self.now())
        try:
            with self._connect(ctx) as smtp:
                refused = smtp.send_message(
                    mime, from_addr=self.config.from_, to_addrs=self.config.to
                )
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            answers = "; ".join(
                f"{rcpt}: {code} {_text(text)}" for rcpt, (code, text) in exc.recipients.items()
            )
            if any(400 <= code < 500 for code in codes):
                return SendResult.retry(
                    f"SMTP refused every recipient: {answers}", codes[0], answers
                )
            return SendResult.permanent(
                f"SMTP refused every recipient: {answers} (check to)", codes[0], answers
            )
        except smtplib.SMTPResponseException as exc:
            return classify_smtp_code(exc.smtp_code, _text(exc.smtp_error), "error")
        except smtplib.SMTPNotSupportedError as exc:
            return SendResult.permanent(
                f"SMTP server does not support it: {exc} (check security and port)"
            )
        except ssl.SSLCertVerificationError as exc:
            return SendResult.permanent(
                f"TLS certificate not trusted: {exc.verify_message} (set verify_tls: false for a self-signed certificate)"
            )
        except ssl.SSLError as exc:
            return SendResult.permanent(
                f"TLS handshake failed: {exc} (check security: ssl for port 465, starttls for 587)"
            )
        except (smtplib.SMTPException, OSError) as exc:
            return SendResult.retry(
                f"SMTP connection to {self.config.host}:{self.config.smtp_port} failed: {exc}"
            )
        notes = [f"refused {rcpt}: {code} {_text(text)}" for rcpt, (code, text) in refused.items()]
        return SendResult.sent(250, "accepted", notes=notes)
