"""Trusted proxies: which socket peers' certificate headers count, from ``trusted_proxies``."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certbound.config import ConfigError
from certbound.intake.proxies import TrustedProxies


def parse(*entries: str) -> TrustedProxies:
    return TrustedProxies.parse(entries)


def test_cidrs_bare_addresses_and_unix_parse() -> None:
    proxies = parse("10.0.0.0/8", " 192.0.2.7 ", "2001:db8::/32", "::1", "UNIX")
    assert proxies.describe() == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "::1/128", "unix"]
    assert proxies.unix and not proxies.empty


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("localhost", ("'localhost'", "not a network", "10.0.0.0/8")),
        ("10.0.0.1/24", ("'10.0.0.1/24'", "did you mean 10.0.0.0/24?")),
        ("10.0.0.0/33", ("'10.0.0.0/33'",)),
        ("300.1.1.1", ("'300.1.1.1'",)),
        ("fe80::1%eth0", ("'fe80::1%eth0'", "zone")),
        ("unix:/run/certbound.sock", ("'unix:/run/certbound.sock'",)),
    ],
)
def test_a_bad_entry_is_a_config_error_naming_it(entry: str, words: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as info:
        parse("127.0.0.1/32", entry)
    message = str(info.value)
    assert message.startswith("trusted_proxies: ")
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("10.1.2.3", True),
        ("11.0.0.1", False),
        ("192.0.2.7", True),
        ("192.0.2.8", False),
        ("::1", True),
        ("[::1]", True),
        ("::2", False),
        ("2001:db8:ffff::1", True),
        ("2001:db9::1", False),
        ("::ffff:10.0.0.1", True),  # a dual-stack socket's view of an IPv4 client
        ("::ffff:11.0.0.1", False),
        ("fe80::1%eth0", False),
        ("not-an-address", False),
        ("", False),
        (None, False),
    ],
)
def test_tcp_peers_are_trusted_by_address_alone(peer: str | None, trusted: bool) -> None:
    proxies = parse("10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1")
    assert proxies.trusts(peer, unix=False) is trusted


def test_a_zone_on_the_peer_is_ignored_for_matching() -> None:
    assert parse("fe80::/10").trusts("fe80::1%eth0", unix=False)


def test_unix_socket_peers_are_trusted_only_by_the_unix_entry() -> None:
    assert parse("unix").trusts(None, unix=True)
    assert not parse("unix").trusts("127.0.0.1", unix=False)
    # An address that happens to be recorded for a Unix-socket peer does not make it trusted.
    assert not parse("127.0.0.1").trusts("127.0.0.1", unix=True)
    assert not parse("0.0.0.0/0", "::/0").trusts(None, unix=True)


@pytest.mark.parametrize("peer", ["127.0.0.1", "::1", "10.0.0.1", "::ffff:127.0.0.1"])
def test_an_empty_list_trusts_nobody(peer: str) -> None:
    proxies = parse()
    assert proxies.empty
    assert not proxies.trusts(peer, unix=False)
    assert not proxies.trusts(None, unix=True)


def test_ipv6_entries_do_not_match_ipv4_peers_unless_mapped() -> None:
    proxies = parse("::ffff:0:0/96")
    assert proxies.trusts("::ffff:10.0.0.1", unix=False)
    assert not proxies.trusts("10.0.0.1", unix=False)


@settings(max_examples=300, deadline=None)
@given(
    network=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)),
    address=st.integers(0, 2**32 - 1),
)
def test_ipv4_membership_matches_the_network_in_both_spellings(
    network: tuple[int, int], address: int
) -> None:
    net = ipaddress.IPv4Network(network, strict=False)
    peer = ipaddress.IPv4Address(address)
    proxies = parse(str(net))
    expected = peer in net
    assert proxies.trusts(str(peer), unix=False) is expected
    assert proxies.trusts(f"::ffff:{peer}", unix=False) is expected
    assert not proxies.trusts(str(peer), unix=True)


@settings(max_examples=300, deadline=None)
@given(
    network=st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)),
    address=st.integers(0, 2**128 - 1),
)
def test_ipv6_membership_matches_the_network(network: tuple[int, int], address: int) -> None:
    net = ipaddress.IPv6Network(network, strict=False)
    peer = ipaddress.IPv6Address(address)
    assert parse(str(net)).trusts(str(peer), unix=False) is (peer in net)
