"""Tests for the private-network guard: the pure decision, and check_url with DNS faked.

No network: `resolve` is replaced where a name must look public or private.
"""

from __future__ import annotations

import pytest

from messagepusher.outbound import netguard

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
    "100.64.0.1",  # carrier-grade NAT: neither global nor "private" to the ipaddress module
    "4000::1",  # reserved IPv6 that the ipaddress module still calls global
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


# --- allowed_private_targets -------------------------------------------------------------------


def test_an_allowed_target_names_a_host_whatever_its_case_and_spacing():
    assert netguard.allowed_explicitly("Mail.Internal", 25, ["10.0.0.5"], (" mail.internal ",))
    assert netguard.allowed_explicitly("mail.internal", 25, ["10.0.0.5"], ("MAIL.INTERNAL",))


def test_an_allowed_host_and_port_opens_only_that_port():
    allowed = ("mail.internal:587",)
    assert netguard.allowed_explicitly("mail.internal", 587, ["10.0.0.5"], allowed)
    assert not netguard.allowed_explicitly("mail.internal", 25, ["10.0.0.5"], allowed)


def test_an_allowed_network_covers_a_host_whose_addresses_all_fall_in_it():
    addresses = ["10.1.2.3", "10.200.0.9"]
    assert netguard.allowed_explicitly("svc.internal", None, addresses, ("10.0.0.0/8",))


def test_an_allowed_network_may_be_written_with_host_bits_set():
    assert netguard.allowed_explicitly("svc.internal", None, ["10.1.2.3"], ("10.1.2.99/24",))


def test_one_address_outside_the_allowed_network_keeps_the_host_refused():
    addresses = ["10.1.2.3", "192.168.0.7"]
    assert not netguard.allowed_explicitly("svc.internal", None, addresses, ("10.0.0.0/8",))


def test_an_allowed_network_does_not_cover_a_host_with_no_addresses():
    assert not netguard.allowed_explicitly("svc.internal", None, [], ("0.0.0.0/0",))


def test_a_scoped_link_local_address_is_judged_by_its_address():
    assert netguard.allowed_explicitly("printer", None, ["fe80::1%eth0"], ("fe80::/10",))
    assert not netguard.allowed_explicitly("printer", None, ["fe80::1%eth0"], ("fd00::/8",))


def test_the_first_matching_entry_among_several_allows_the_host():
    allowed = ("other.internal", "192.168.0.0/16", "svc.internal")
    assert netguard.allowed_explicitly("svc.internal", 443, ["10.0.0.1"], allowed)
    assert netguard.allowed_explicitly("x.internal", 443, ["192.168.3.4"], allowed)


def test_nothing_is_allowed_when_no_entry_matches():
    assert not netguard.allowed_explicitly("svc.internal", 443, ["10.0.0.1"], ())
    assert not netguard.allowed_explicitly(
        "svc.internal", 443, ["10.0.0.1"], ("svc", "svc.internal:80", "172.16.0.0/12")
    )


def test_check_url_lets_an_allowed_private_target_through(monkeypatch):
    monkeypatch.setattr(netguard, "resolve", lambda host, port=None: ["10.0.0.5"])
    netguard.check_url("https://mail.internal/", False, allowed=("mail.internal",))
    with pytest.raises(netguard.PrivateNetworkRefused):
        netguard.check_url("https://other.internal/", False, allowed=("mail.internal",))


def test_check_url_passes_the_url_s_port_to_the_allowed_targets(monkeypatch):
    monkeypatch.setattr(netguard, "resolve", lambda host, port=None: ["10.0.0.5"])
    netguard.check_url("http://mail.internal:8025/", False, allowed=("mail.internal:8025",))
    with pytest.raises(netguard.PrivateNetworkRefused):
        netguard.check_url("http://mail.internal:9000/", False, allowed=("mail.internal:8025",))


def test_resolve_gives_each_address_once_in_order():
    assert netguard.resolve("127.0.0.1") == ["127.0.0.1"]
    assert netguard.resolve("localhost", 8080) == sorted(set(netguard.resolve("localhost", 8080)))


def test_resolve_looks_the_name_up_for_tcp_on_the_given_port_or_443(monkeypatch):
    asked = []

    def getaddrinfo(host, port, proto=0):
        asked.append((host, port, proto))
        return [(None, None, None, "", ("10.0.0.1", port)), (None, None, None, "", ("::1", port))]

    monkeypatch.setattr(netguard.socket, "getaddrinfo", getaddrinfo)
    assert netguard.resolve("svc.example", 8443) == ["10.0.0.1", "::1"]
    assert netguard.resolve("svc.example") == ["10.0.0.1", "::1"]
    tcp = netguard.socket.IPPROTO_TCP
    assert asked == [("svc.example", 8443, tcp), ("svc.example", 443, tcp)]
