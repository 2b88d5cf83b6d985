"""Outbound sessions skip environment look-ups only when there is nothing to look up."""

from __future__ import annotations

from messagepusher.outbound.http_session import environment_has_proxies, new_session


def test_proxy_variables_in_either_case_keep_the_environment_trusted():
    assert not environment_has_proxies({})
    assert environment_has_proxies({"HTTPS_PROXY": "http://proxy.lan:3128"})
    assert environment_has_proxies({"no_proxy": "localhost"})


def test_a_session_trusts_the_environment_exactly_when_proxies_are_configured(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert new_session().trust_env is False
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.lan:3128")
    assert new_session().trust_env is True
