"""E-mail: real SMTP submissions to aiosmtpd in plain, STARTTLS and SSL modes, with AUTH,
and the SMTP reply classes."""

from __future__ import annotations

import email
import email.policy
import socket
from pathlib import Path

import pytest
from fakes.channel_services import FakeSmtp, SmtpScript, self_signed_cert

from messagepusher.actors.channels import ChannelConfigError, build_channel
from messagepusher.actors.channels.smtp_email import EmailChannel

SENDER = "MessagePusher <alerts@example.com>"
# The AUTH tests run without TLS on purpose (aiosmtpd's auth_require_tls=False), which it warns about.
NO_TLS_AUTH = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


def config(server: FakeSmtp, **fields) -> dict:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "from": SENDER,
        "to": ["ops@example.com"],
        **fields,
    }


def received(server: FakeSmtp) -> email.message.EmailMessage:
    return email.message_from_bytes(server.envelopes[0].content, policy=email.policy.default)


def test_email_plain_submission_has_a_text_and_an_html_part(ctx, make_message) -> None:
    message = make_message(
        format="markdown", body="**磁盘** 使用率 91%\n\n- db-1\n- db-2", url="https://example.com/d"
    )
    with FakeSmtp() as server:
        result = build_channel(
            "email", config(server, to=["ops@example.com", "dba@example.com"])
        ).send(message, ctx)
        assert result.status == "sent", result.detail
        envelope = server.envelopes[0]
        assert envelope.mail_from == "alerts@example.com"
        assert envelope.rcpt_tos == ["ops@example.com", "dba@example.com"]
        mime = received(server)
    assert mime["Subject"] == "磁盘告警 Disk alert"
    assert mime["Message-ID"] == "<messagepusher.1001.42@example.com>"
    assert mime.get_content_type() == "multipart/alternative"
    text = mime.get_body(("plain",)).get_content()
    html = mime.get_body(("html",)).get_content()
    assert "**磁盘** 使用率 91%" in text
    assert "<strong>磁盘</strong>" in html and "<li>db-1</li>" in html
    assert '<a href="https://example.com/d">' in html


def test_email_subject_falls_back_to_the_first_line_of_the_body(ctx, make_message) -> None:
    with FakeSmtp() as server:
        build_channel("email", config(server)).send(
            make_message(title="", body="第一行\n第二行"), ctx
        )
        assert received(server)["Subject"] == "第一行"


def test_email_starttls_with_a_self_signed_certificate_when_verify_tls_is_false(
    cert, ctx, make_message
) -> None:
    with FakeSmtp("starttls", cert) as server:
        channel = build_channel("email", config(server, security="starttls", verify_tls=False))
        result = channel.send(make_message(), ctx)
        assert result.status == "sent", result.detail
        assert server.recorder.tls_sessions == [True]


def test_email_starttls_refuses_an_untrusted_certificate_naming_verify_tls(
    cert, ctx, make_message
) -> None:
    with FakeSmtp("starttls", cert) as server:
        result = build_channel("email", config(server, security="starttls")).send(
            make_message(), ctx
        )
        assert server.envelopes == []
    assert result.status == "permanent"
    assert "verify_tls" in result.detail


def test_email_implicit_tls_on_an_ssl_port(cert, ctx, make_message) -> None:
    with FakeSmtp("ssl", cert) as server:
        result = build_channel("email", config(server, security="ssl", verify_tls=False)).send(
            make_message(), ctx
        )
        assert result.status == "sent", result.detail
        assert server.recorder.tls_sessions == [True]


@NO_TLS_AUTH
def test_email_auth_logs_in_with_username_and_password(ctx, make_message) -> None:
    with FakeSmtp(script=SmtpScript(logins={"alerts": "s3cret-pass"})) as server:
        channel = build_channel("email", config(server, username="alerts", password="s3cret-pass"))
        assert channel.send(make_message(), ctx).status == "sent"
        assert len(server.envelopes) == 1


@NO_TLS_AUTH
def test_email_rejected_password_is_a_permanent_failure(ctx, make_message) -> None:
    with FakeSmtp(script=SmtpScript(logins={"alerts": "s3cret-pass"})) as server:
        result = build_channel("email", config(server, username="alerts", password="wrong")).send(
            make_message(), ctx
        )
    assert (result.status, result.response_code) == ("permanent", 535)
    assert "check username and password" in result.detail


@NO_TLS_AUTH
def test_email_missing_auth_is_a_permanent_failure(ctx, make_message) -> None:
    with FakeSmtp(script=SmtpScript(logins={"alerts": "s3cret-pass"})) as server:
        result = build_channel("email", config(server)).send(make_message(), ctx)
    assert (result.status, result.response_code) == ("permanent", 530)


def test_email_unknown_recipient_550_is_a_permanent_failure(ctx, make_message) -> None:
    script = SmtpScript(refuse_recipients={"ghost@example.com": "550 5.1.1 no such user"})
    with FakeSmtp(script=script) as server:
        result = build_channel("email", config(server, to=["ghost@example.com"])).send(
            make_message(), ctx
        )
    assert (result.status, result.response_code) == ("permanent", 550)
    assert "ghost@example.com" in result.detail


def test_email_one_refused_recipient_among_others_is_sent_with_a_note(ctx, make_message) -> None:
    script = SmtpScript(refuse_recipients={"ghost@example.com": "550 5.1.1 no such user"})
    with FakeSmtp(script=script) as server:
        result = build_channel(
            "email", config(server, to=["ops@example.com", "ghost@example.com"])
        ).send(make_message(), ctx)
    assert result.status == "sent"
    assert result.notes == ["refused ghost@example.com: 550 5.1.1 no such user"]


def test_email_temporary_4xx_reply_is_retried(ctx, make_message) -> None:
    with FakeSmtp(script=SmtpScript(data_reply="451 4.3.0 try again later")) as server:
        result = build_channel("email", config(server)).send(make_message(), ctx)
    assert (result.status, result.response_code) == ("retry", 451)


def test_email_refused_connection_is_retried(ctx, make_message) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    channel = build_channel(
        "email",
        {
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "from": SENDER,
            "to": ["a@b.example"],
        },
    )
    assert channel.send(make_message(), ctx).status == "retry"


def test_email_loopback_server_is_refused_naming_allow_private_networks(
    guarded_ctx, make_message
) -> None:
    with FakeSmtp() as server:
        result = build_channel("email", config(server)).send(make_message(), guarded_ctx)
        assert server.envelopes == []
    assert result.status == "permanent"
    assert "allow_private_networks" in result.detail


def test_email_port_defaults_follow_security() -> None:
    base = {"host": "smtp.example.com", "from": "a@example.com", "to": ["b@example.com"]}
    ports = [
        EmailChannel.Config.model_validate({**base, "security": s}).smtp_port
        for s in ("starttls", "ssl", "none")
    ]
    assert ports == [587, 465, 25]


def test_email_config_errors_name_the_field() -> None:
    with pytest.raises(ChannelConfigError, match="config.to\\[0\\]|config.to"):
        build_channel("email", {"host": "h", "from": "a@example.com", "to": ["not-an-address"]})
    with pytest.raises(ChannelConfigError, match="config.proxy: is not supported for e-mail"):
        build_channel(
            "email",
            {"host": "h", "from": "a@example.com", "to": ["b@example.com"], "proxy": "http://p:1"},
        )
