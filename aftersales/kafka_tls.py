"""The Kafka brokers' TLS material, generated at set-up (`aftersales infra up`; compose's
`kafka-tls` job): a private CA and one broker certificate for the given host names, as PEM files
the broker reads directly (`ssl.keystore.type=PEM`, `ssl.truststore.type=PEM`).

- `ca.pem`: the CA certificate; clients trust it (AFTERSALES_KAFKA_SSL_CAFILE).
- `ca.key`: the CA's key; stays in the folder (mode 600), only to sign broker certificates.
- `broker.pem`: the broker's private key (PKCS#8) followed by its certificate and the CA: the
  keystore of the client-facing SASL_SSL listener and, as a client certificate, of the mutual-TLS
  controller listener (its CN is a super user there: shared.kafka.acls.BROKER_CN).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.kafka.acls import BROKER_CN

CA_NAME = "Aftersales Kafka CA"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
VALID_DAYS = 825


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def ensure_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA in `folder` (ca.pem, ca.key), created if missing."""
    cert_path, key_path = folder / "ca.pem", folder / "ca.key"
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key))
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    cert_path.chmod(0o644)
    return cert, key


def broker_hosts(path: Path) -> set[str]:
    """The names a broker certificate is valid for (empty if there is none)."""
    if not path.exists():
        return set()
    cert = x509.load_pem_x509_certificates(path.read_bytes())[0]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in names}


def ensure_tls(folder: Path, hosts: Iterable[str] = LOCAL_HOSTS) -> Path:
    """The CA and a broker keystore (`broker.pem`) valid for `hosts`; a keystore missing one of
    them is issued again. Returns the keystore's path."""
    wanted = {str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in hosts}
    keystore = folder / "broker.pem"
    ca, ca_key = ensure_ca(folder)
    if wanted <= broker_hosts(keystore):
        return keystore
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER_CN)]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in sorted(wanted)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _write(keystore, _key_pem(key) + cert.public_bytes(pem) + ca.public_bytes(pem))
    return keystore


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
