"""MTA-STS in the running seed world (RFC 8461): the HTTPS policy server, the fetch, the
cache, and the outbound agent applying the policy against the STARTTLS stripping attack;
TLS-RPT (RFC 8460) counts what happened."""

from __future__ import annotations

import ssl

import pytest

from simsmtp.net.https import fetch_policy
from simsmtp.net.network import Network
from simsmtp.world import World
from simsmtp.world.scenario import seed_message

ALICE, BOB = "alice@example.com", "bob@anotherdomain.org"
SENDER, TARGET, DOMAIN = "mail.example.com", "mail.anotherdomain.org", "anotherdomain.org"


def send(net: Network, subject: str = "hello") -> None:
    net.submit(seed_message(net.world, subject=subject), sender=ALICE, recipients=BOB,
               user="alice", password="wonderland")
    net.deliver()


def kinds(world: World, prefix: str) -> list[str]:
    return [e.kind for e in world.trace.events() if e.kind.startswith(prefix)]


def reasons(world: World, kind: str) -> list[str]:
    return [e["reason"] for e in world.trace.events(kind)]


def fetch(net: Network, domain: str = DOMAIN, context: ssl.SSLContext | None = None) -> object:
    ip, port = net.hosts[TARGET].bind_ip, net.https_ports[TARGET]

    async def go() -> object:
        return await fetch_policy(ip, port, domain,
                                  context or net.ca.client_context(verify=True))  # type: ignore[union-attr]

    return net.run(go())


@pytest.fixture
def sts(world: World) -> World:
    world.host(SENDER).policy.mta_sts = True  # Alice's server applies MTA-STS
    return world


# ------------------------------------------------------------------------- the policy server


def test_the_policy_is_served_over_https_with_the_world_ca(net: Network) -> None:
    result = fetch(net)
    assert result.text == ("version: STSv1\r\nmode: enforce\r\nmx: mail.anotherdomain.org\r\n"
                           "max_age: 86400\r\n")  # type: ignore[attr-defined]
    [request] = net.world.trace.events("https.request")
    assert request["status"] == 200 and request["http_host"] == "mta-sts.anotherdomain.org"


def test_fetch_errors_say_why(net: Network) -> None:
    # a certificate for another name is no proof (RFC 8461 §3.3: PKIX for mta-sts.<domain>)
    assert "Hostname mismatch" in fetch(net, "example.com").error  # type: ignore[attr-defined]
    untrusting = ssl.create_default_context()  # the system CAs do not know the world CA
    assert "not valid" in fetch(net, context=untrusting).error  # type: ignore[attr-defined]
    net.policy_server(DOMAIN).blocked = True
    assert "could not fetch" in fetch(net).error  # type: ignore[attr-defined]


def test_policy_follows_live_edits(net: Network) -> None:
    net.world.domain(DOMAIN).mta_sts = "testing"
    assert "mode: testing" in fetch(net).text  # type: ignore[attr-defined]
    net.world.domain(DOMAIN).mta_sts = None
    assert "404" in fetch(net).error  # type: ignore[attr-defined]


# ------------------------------------------------------------------------- the agent


def test_postfix_default_ignores_the_policy_and_the_attack_wins(net: Network) -> None:
    """The seed's Postfix does no MTA-STS: with STARTTLS stripped, plaintext (lesson 05)."""
    net.strip_starttls()
    send(net)
    assert len(net.mailbox(BOB)) == 1
    assert not kinds(net.world, "mtasts.")
    assert reasons(net.world, "tls.fallback")


def test_enforce_fetches_caches_and_delivers_over_verified_tls(sts: World, net: Network) -> None:
    send(net, "one")
    send(net, "two")
    assert len(net.mailbox(BOB)) == 2
    assert kinds(sts, "mtasts.") == ["mtasts.fetched", "mtasts.cached"]
    assert len(sts.trace.events("https.request")) == 1  # the second used the cache
    assert all(e["verified"] for e in sts.trace.events("tls.started"))
    report = net.tls_report(DOMAIN)
    assert report["policies"][0]["summary"] == {"total-successful-session-count": 2,
                                                "total-failure-session-count": 0}


def test_enforce_with_stripped_starttls_defers_with_the_reason(sts: World,
                                                              net: Network) -> None:
    send(net, "first contact, no attacker yet")  # the policy is now cached
    net.strip_starttls()
    send(net, "attacked")
    assert len(net.mailbox(BOB)) == 1
    [deferred] = sts.trace.events("delivery.deferred")
    assert "did not offer STARTTLS" in deferred["reason"]
    assert "the MTA-STS policy of anotherdomain.org (mode enforce)" in deferred["reason"]
    assert deferred["status"] == "4.7.4"
    policy = net.tls_report(DOMAIN)["policies"][0]
    assert policy["summary"]["total-failure-session-count"] == 1
    assert policy["failure-details"][0]["result-type"] == "starttls-not-supported"
    assert policy["failure-details"][0]["receiving-mx-hostname"] == TARGET


def test_first_contact_is_the_weakness(sts: World, net: Network) -> None:
    """Before any policy is cached, an attacker who also blocks the fetch wins."""
    net.policy_server(DOMAIN).blocked = True
    net.strip_starttls()
    send(net)
    assert len(net.mailbox(BOB)) == 1  # delivered in plaintext
    assert kinds(sts, "mtasts.") == ["mtasts.fetch_failed", "mtasts.none"]
    report = net.tls_report(DOMAIN)
    assert report["policies"][0]["failure-details"][0]["result-type"] == \
        "sts-policy-fetch-error"


def test_cached_policy_survives_a_blocked_fetch_until_it_expires(sts: World,
                                                                net: Network) -> None:
    send(net, "cache it")
    net.policy_server(DOMAIN).blocked = True
    net.strip_starttls()
    sts.domain(DOMAIN).mta_sts_max_age = 600  # a new policy id: the agent tries to fetch
    send(net, "attacked")
    assert len(net.mailbox(BOB)) == 1  # deferred: the cached policy still holds
    assert "mtasts.fetch_failed" in kinds(sts, "mtasts.")
    # a day later the cached policy (max_age 86400) has expired: first contact again, and
    # the retry after that goes in plaintext (retries are at most 4000 s apart)
    net.fast_forward(86400 + 8000)
    assert len(net.mailbox(BOB)) == 2
    assert reasons(sts, "mtasts.none")


def test_expired_policy_is_fetched_again(sts: World, net: Network) -> None:
    send(net, "one")
    sts.clock.advance(86400)  # max_age
    send(net, "two")
    assert kinds(sts, "mtasts.") == ["mtasts.fetched", "mtasts.fetched"]
    assert len(sts.trace.events("https.request")) == 2


def test_enforce_refuses_an_mx_the_policy_does_not_list(sts: World, net: Network) -> None:
    net.policy_server(DOMAIN).policy_text = lambda domain: (
        "version: STSv1\nmode: enforce\nmx: backup.anotherdomain.org\nmax_age: 600\n")
    send(net)
    assert net.mailbox(BOB) == []
    [deferred] = sts.trace.events("delivery.deferred")
    assert "MX host mail.anotherdomain.org is not listed" in deferred["reason"]
    assert deferred["status"] == "4.7.5"
    assert not sts.trace.events("delivery.attempt")  # never even connected


def test_testing_mode_delivers_and_reports(sts: World, net: Network) -> None:
    sts.domain(DOMAIN).mta_sts = "testing"
    net.strip_starttls()
    send(net)
    assert len(net.mailbox(BOB)) == 1
    policy = net.tls_report(DOMAIN)["policies"][0]
    assert "mode: testing" in policy["policy"]["policy-string"]
    assert policy["failure-details"][0]["result-type"] == "starttls-not-supported"


def test_testing_mode_with_an_unlisted_mx_delivers_and_reports(sts: World,
                                                              net: Network) -> None:
    net.policy_server(DOMAIN).policy_text = lambda domain: (
        "version: STSv1\nmode: testing\nmx: other.example\nmax_age: 600\n")
    send(net)
    assert len(net.mailbox(BOB)) == 1
    assert sts.trace.events("mtasts.mx_mismatch")
    failures = net.tls_report(DOMAIN)["policies"][0]["failure-details"]
    assert failures[0]["result-type"] == "validation-failure"


def test_mode_none_does_nothing(sts: World, net: Network) -> None:
    sts.domain(DOMAIN).mta_sts = "none"
    net.strip_starttls()
    send(net)
    assert len(net.mailbox(BOB)) == 1
    assert not sts.trace.events("tls.required_failed")


def test_an_invalid_policy_is_no_policy(sts: World, net: Network) -> None:
    net.policy_server(DOMAIN).policy_text = lambda domain: "version: STSv1\nmode: strict\n"
    net.strip_starttls()
    send(net)
    assert len(net.mailbox(BOB)) == 1
    [failed] = sts.trace.events("mtasts.fetch_failed")
    assert "invalid" in failed["reason"] and "mode" in failed["reason"]


def test_reports_are_written_as_rfc_8460_files(sts: World, net: Network) -> None:
    import json

    send(net)
    [path] = net.write_tls_reports()
    assert path.name == "example.com!anotherdomain.org!1741564800!1741651199.json"
    report = json.loads(path.read_text())
    assert report["policies"][0]["summary"]["total-successful-session-count"] == 1


def test_a_policy_larger_than_64_kib_is_refused(net: Network) -> None:
    net.policy_server(DOMAIN).policy_text = lambda domain: (
        "version: STSv1\nmode: enforce\nmx: mail.anotherdomain.org\nmax_age: 600\n"
        + "x-padding: " + "a" * 70_000 + "\n")
    assert "larger than 64 KiB" in fetch(net).error  # type: ignore[attr-defined]


def test_the_server_answers_bad_requests_in_http(net: Network) -> None:
    import socket

    assert net.ca is not None
    context = net.ca.client_context(verify=True)
    ip, port = net.hosts[TARGET].bind_ip, net.https_ports[TARGET]
    answers = []
    for request in (b"POST /.well-known/mta-sts.txt HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET /other HTTP/1.1\r\nHost: mta-sts.anotherdomain.org\r\n\r\n",
                    b"nonsense\r\n\r\n"):
        with socket.create_connection((ip, port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="mta-sts.anotherdomain.org") as tls:
            tls.sendall(request)
            data = b""
            while chunk := tls.recv(4096):
                data += chunk
        answers.append(data.split(b"\r\n", 1)[0])
    assert answers == [b"HTTP/1.1 405 Method Not Allowed", b"HTTP/1.1 404 Not Found",
                       b"HTTP/1.1 400 Bad Request"]
