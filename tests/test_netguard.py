"""Tests for the private-network guard: the pure decision, and check_url with DNS faked.

No network: `resolve` is replaced where a name must look public or private.
"""

from __future__ import annotations

import pytest

from messagepusher.actors import netguard

REFUSED = [
    "127.0.0.1",
    "127.8.9.10",
    "10.0.0.1",
    "10.255.255.254",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "::1",
    "::",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd12:3456::1",
    "::ffff:127.0.0.1",
    "::ffff:10.1.2.3",
    "::ffff:169.254.169.254",
    "ff02::1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_loopback_link_local_and_reserved_addresses_are_refused(address):
    reason = netguard.refusal_reason("target.example", [address])
    assert reason is not None
    assert "allow_private_networks" in reason
    assert "target.example" in reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address):
    assert netguard.refusal_reason("target.example", [address]) is None


def test_one_private_address_among_public_ones_refuses_the_host():
    reason = netguard.refusal_reason("mixed.example", ["8.8.8.8", "10.0.0.7"])
    assert reason is not None and "10.0.0.7" in reason


def test_ipv4_mapped_ipv6_is_judged_by_its_ipv4_address():
    assert netguard.refusal_reason("mapped.example", ["::ffff:7f00:1"]) is not None
    assert netguard.refusal_reason("mapped.example", ["::ffff:808:808"]) is None


def test_check_url_refuses_a_name_that_resolves_to_loopback(monkeypatch):
    monkeypatch.setattr(netguard, "resolve", lambda host, port=None: ["127.0.0.1"])
    with pytest.raises(netguard.PrivateNetworkRefused, match="allow_private_networks"):
        netguard.check_url("https://sneaky.example/path", allow_private_networks=False)


def test_check_url_allows_a_name_that_resolves_to_a_public_address(monkeypatch):
    asked: list[str] = []

    def resolve(host: str, port: int | None = None) -> list[str]:
        asked.append(host)
        return ["93.184.216.34"]

    monkeypatch.setattr(netguard, "resolve", resolve)
    assert netguard.check_url("https://public.example/", allow_private_networks=False) is None
    assert asked == ["public.example"]
    monkeypatch.setattr(netguard, "resolve", lambda host, port=None: ["10.0.0.7"])
    with pytest.raises(netguard.PrivateNetworkRefused):
        netguard.check_url("https://public.example/", allow_private_networks=False)


def test_check_url_does_not_resolve_when_private_networks_are_allowed(monkeypatch):
    def fail(host, port=None):
        raise AssertionError("resolve must not be called")

    monkeypatch.setattr(netguard, "resolve", fail)
    netguard.check_url("http://127.0.0.1:8080/", allow_private_networks=True)


def test_check_url_refuses_a_url_without_a_host():
    with pytest.raises(ValueError, match="no host"):
        netguard.check_url("http:///path", allow_private_networks=False)


def test_check_url_refuses_a_loopback_literal_with_default_settings():
    with pytest.raises(netguard.PrivateNetworkRefused, match="allow_private_networks"):
        netguard.check_url("http://127.0.0.1:9/", allow_private_networks=False)
