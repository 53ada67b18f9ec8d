"""TLS for the Kite ticker: verify the certificate chain and the host name, failing closed."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet import ssl
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.python.failure import Failure
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.internet._sslverify import IOpenSSLTrustRoot

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL
)

# What may vouch for the ticker's certificate besides the platform's trust store:
# a PEM file of CA certificates, one Certificate, or a Twisted trust root.
TrustRoot: TypeAlias = "str | os.PathLike[str] | ssl.Certificate | IOpenSSLTrustRoot"


@implementer(IOpenSSLClientConnectionCreator)
class VerifyingTLS:
    """optionsForClientTLS(host), with a host-name check that fails closed.

    Twisted's own check refuses a certificate when service_identity raises
    VerificationError, but logs any other exception and accepts it; and
    service_identity (>= 24) raises CertificateError for a certificate with no
    subjectAltName, so one from a trusted CA would pass for *any* host. This
    check replaces Twisted's and refuses on any exception.
    """

    def __init__(self, host: str, trust_root: Any) -> None:
        self._options = ssl.optionsForClientTLS(host, trustRoot=trust_root)
        is_ip = isIPAddress(host) or isIPv6Address(host)
        self._service_id = IPAddress_ID(host) if is_ip else DNS_ID(host)

    def clientConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        connection = self._options.clientConnectionForTLS(tls_protocol)  # SNI, trust root
        protocol = [tls_protocol]  # emptied after use: no cycle through the callback

        def verify(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
            if depth != 0 or not ok:  # the chain: OpenSSL's verdict
                return bool(ok)
            try:
                verify_service_identity(extract_patterns(cert), [self._service_id], [])
            except Exception:
                if protocol:
                    protocol.pop().failVerification(Failure())
                return False
            protocol.clear()
            return True

        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify)
        return connection


def load_trust_root(trust_root: TrustRoot | None) -> Any:
    """A PEM file's certificates as a Twisted trust root; anything else as given."""
    if not isinstance(trust_root, str | os.PathLike):
        return trust_root
    pem = Path(trust_root).read_bytes()
    certificates = [ssl.Certificate.loadPEM(block) for block in _PEM_CERTIFICATE.findall(pem)]
    if not certificates:
        raise ValueError(f"no PEM certificate in {os.fspath(trust_root)!r}")
    return ssl.trustRootFromCertificates(certificates)


def _service_host(service_id: Any) -> str:
    if isinstance(service_id, IPAddress_ID):
        return str(service_id.ip)
    return service_id.hostname.decode()  # DNS_ID


def certificate_failure(reason: BaseException | None) -> str | None:
    """Why the server's certificate was refused, or None if `reason` is no such refusal."""
    if isinstance(reason, VerificationError):  # service_identity: not issued for this host
        hosts = ", ".join(_service_host(error.mismatched_id) for error in reason.errors)
        return f"the server's certificate is not for {hosts}"
    if isinstance(reason, CertificateError):  # no subjectAltName, or a malformed one
        return f"the server's certificate names no valid host ({reason})"
    if isinstance(reason, SSL.Error):
        openssl = "; ".join(str(part[-1]) for part in reason.args[0] if part) if reason.args else ""
        if "certificate" in openssl:
            return f"the server's certificate failed verification ({openssl})"
    return None
