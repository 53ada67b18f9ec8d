"""KiteFeed over wss:// against kitesim with TLS: the server's certificate is verified, always."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import ssl as twisted_ssl

from tests.integration.test_kite_feed import FAST, WAIT_S, FeedEvents, Quotes
from tests.kitesim.ticker import DEFAULT_ACCESS_TOKEN, DEFAULT_API_KEY, TickerSim
from Webapp.event_bus import EventBus
from Webapp.market.feeds.base import FeedState
from Webapp.market.feeds.kite import KiteFeed
from Webapp.market.feeds.kite_shards import GuardedKiteTicker
from Webapp.market.ltp_store import LTPStore

INFY, TCS = 408065, 2953217
INSTRUMENTS = {INFY: "INFY", TCS: "TCS"}
REJECTED = "certificate_rejected"
LOCAL_NAMES = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]


# --- certificates, made per test session with `cryptography` --------------------------------


@dataclass(frozen=True)
class Authority:
    """A certificate authority: its PEM file is what a client may be told to trust."""

    name: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    pem_path: Path

    def server_tls(
        self, directory: Path, stem: str, names: list[x509.GeneralName]
    ) -> ssl.SSLContext:
        """A server context with a certificate this authority issued for `names` (none: no SAN)."""
        key = ec.generate_private_key(ec.SECP256R1())
        builder = _certificate(_name(stem), self.cert.subject, key).add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
    )


def _authority(directory: Path, name: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _certificate(_name(name), _name(name), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    pem_path = directory / f"{name.replace(' ', '-')}.pem"
    pem_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(name, cert, key, pem_path)


@dataclass(frozen=True)
class Pki:
    test_ca: Authority  # what the tests tell the feed to trust
    local: ssl.SSLContext  # test CA, for 127.0.0.1 and localhost
    rogue: ssl.SSLContext  # another CA, for 127.0.0.1 and localhost: an impostor
    other_host: ssl.SSLContext  # test CA, but for ws.kite.trade
    no_names: ssl.SSLContext  # test CA, CN=127.0.0.1 and no subjectAltName at all


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    test_ca, rogue_ca = _authority(directory, "kitesim test CA"), _authority(directory, "rogue CA")
    return Pki(
        test_ca=test_ca,
        local=test_ca.server_tls(directory, "local", LOCAL_NAMES),
        rogue=rogue_ca.server_tls(directory, "rogue", LOCAL_NAMES),
        other_host=test_ca.server_tls(directory, "other-host", [x509.DNSName("ws.kite.trade")]),
        no_names=test_ca.server_tls(directory, "127.0.0.1", []),  # the CN is no host name
    )


# --- harness -----------------------------------------------------------------------------------


class TlsHarness:
    def __init__(self) -> None:
        self.store = LTPStore()
        self.bus = EventBus()
        self.quotes = Quotes(self.store)
        self.events = FeedEvents(self.bus)
        self.feeds: list[KiteFeed] = []
        self.sims: list[TickerSim] = []

    def sim(self, tls: ssl.SSLContext, port: int = 0, host: str = "127.0.0.1") -> TickerSim:
        sim = TickerSim(host=host, port=port, heartbeat_interval_s=0.1, tls=tls).start()
        self.sims.append(sim)
        return sim

    def feed(self, sim: TickerSim, **kwargs: Any) -> KiteFeed:
        feed = KiteFeed(
            store=self.store,
            bus=self.bus,
            api_key=DEFAULT_API_KEY,
            access_token=lambda: DEFAULT_ACCESS_TOKEN,
            instruments=INSTRUMENTS,
            root=sim.url,
            **{**FAST, **kwargs},
        )
        self.feeds.append(feed)
        feed.start()
        return feed

    def wait_rejected(self, sim: TickerSim, failures: int = 2) -> dict[str, Any]:
        """The feed reports the refused certificate, and retried (verifying) `failures` times."""
        event = self.events.wait(lambda p: REJECTED in p["detail"])
        sim.wait_until(
            lambda: sim.tls_failures_total >= failures, WAIT_S, f"{failures} refused handshakes"
        )
        return event

    def wait_ticks(self, sim: TickerSim, price: float) -> None:
        sim.wait_until(lambda: set(sim.subscriptions()) == set(INSTRUMENTS), WAIT_S, "subscribed")
        sim.set_price(INFY, price)
        self.quotes.wait("INFY", lambda q: q.ltp == price)


@pytest.fixture
def tls() -> Iterator[TlsHarness]:
    harness = TlsHarness()
    yield harness
    for feed in harness.feeds:
        feed.stop()
    for sim in harness.sims:
        sim.stop()


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("trusting", ["platform-store", "test-ca"])
def test_an_untrusted_certificate_gets_no_ticks_and_the_feed_says_why(tls, pki, caplog, trusting):
    sim = tls.sim(pki.rogue)
    trust_root = pki.test_ca.pem_path if trusting == "test-ca" else None
    feed = tls.feed(sim, tls_trust_root=trust_root)
    event = tls.wait_rejected(sim)
    assert event["state"] == FeedState.STARTING.value
    assert event["detail"].startswith(f"connection 1 of 1 {REJECTED}")
    sim.set_price(INFY, 1500.0)
    assert sim.connections_total == 0  # no websocket handshake, so no token and no tick
    assert feed.status().ticks_total == 0 and tls.quotes.seen == []
    assert "certificate failed verification" in caplog.text


@pytest.mark.parametrize(
    ("form", "host"), [("path", "127.0.0.1"), ("str", "localhost"), ("certificate", "127.0.0.1")]
)
def test_ticks_flow_when_the_test_ca_is_trusted(tls, pki, form, host):
    sim = tls.sim(pki.local, host=host)
    pem_path = pki.test_ca.pem_path
    trust_root: Any = {
        "path": pem_path,
        "str": str(pem_path),
        "certificate": twisted_ssl.Certificate.loadPEM(pem_path.read_bytes()),
    }[form]
    tls.feed(sim, tls_trust_root=trust_root)
    tls.events.wait_state(FeedState.RUNNING)
    tls.wait_ticks(sim, 1523.45)
    assert sim.tls_failures_total == 0


@pytest.mark.parametrize(
    ("server", "host"),
    [("other_host", "127.0.0.1"), ("other_host", "localhost"), ("no_names", "127.0.0.1")],
)
def test_a_certificate_for_another_host_is_refused_though_the_ca_is_trusted(tls, pki, server, host):
    sim = tls.sim(getattr(pki, server), host=host)
    feed = tls.feed(sim, tls_trust_root=pki.test_ca.pem_path)
    tls.wait_rejected(sim)
    assert sim.connections_total == 0
    assert feed.status().ticks_total == 0


def test_reconnects_verify_the_certificate_too(tls, pki):
    """Twisted retries through the same connector, so the same verifying TLS options."""
    sim = tls.sim(pki.local)
    feed = tls.feed(sim, tls_trust_root=pki.test_ca.pem_path)
    tls.events.wait_state(FeedState.RUNNING)
    tls.wait_ticks(sim, 1500.0)
    port = sim.port
    sim.stop()  # the connection drops; an impostor takes the address
    impostor = tls.sim(pki.rogue, port=port)
    tls.wait_rejected(impostor)
    assert impostor.connections_total == 0
    ticks = feed.status().ticks_total
    impostor.set_price(INFY, 1.0)
    impostor.stop()

    genuine = tls.sim(pki.local, port=port)  # and the genuine server is trusted again
    tls.wait_ticks(genuine, 1501.0)
    assert feed.status().ticks_total == ticks + 1
    assert REJECTED not in feed.status().detail


def test_a_missing_trust_root_file_is_an_error_naming_it(tls, pki, tmp_path):
    sim = tls.sim(pki.local)
    feed = tls.feed(sim, tls_trust_root=tmp_path / "missing.pem")
    error = tls.events.wait_state(FeedState.ERROR)
    assert "FileNotFoundError" in error["detail"] and "missing.pem" in error["detail"]
    assert sim.tls_failures_total == 0 and feed.status().ticks_total == 0


def test_turning_tls_verification_off_is_refused():
    ticker = GuardedKiteTicker(DEFAULT_API_KEY, DEFAULT_ACCESS_TOKEN, root="wss://127.0.0.1:1")
    with pytest.raises(ValueError, match="without verifying TLS"):
        ticker.connect(disable_ssl_verification=True)
