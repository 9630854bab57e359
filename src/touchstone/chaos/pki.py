"""A throwaway certificate authority for NATS with TLS: the shipped ``cluster.conf`` speaks only
TLS (clients and routes), so the chaos harness gives its nodes what an operator would (one CA,
one certificate naming every node by name and address) and its clients the CA to check them.
``tests/test_nats_tls.py`` makes its CAs (a rogue one too) with the same functions."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (builder.serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days)))


def make_ca(folder: Path, name: str, days: int = 2) -> CA:
    """A self-signed CA; its certificate in ``folder/{name}.crt``."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_validity(x509.CertificateBuilder(), days).subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    _write(folder / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def make_leaf(folder: Path, stem: str, ca: CA, names: tuple[str, ...] = (), addresses: tuple[str, ...] = (),
              days: int = 2) -> tuple[Path, Path]:
    """A server-and-client certificate signed by ``ca`` for ``names`` and ``addresses`` (always
    ``localhost`` and 127.0.0.1 too): ``folder/{stem}.crt`` and ``.key``."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in (*names, "localhost")]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in (*addresses, "127.0.0.1")]
    cert = (_validity(x509.CertificateBuilder(), days).subject_name(_name(names[0] if names else "localhost"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return _write(folder / f"{stem}.crt", cert.public_bytes(pem)), _write(folder / f"{stem}.key", key_pem)


def write_pki(folder: Path, names: list[str], addresses: list[str], days: int = 2) -> Pki:
    """A CA and one certificate for every node of a cluster, under ``folder``, valid ``days``."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = make_leaf(folder, "server", make_ca(folder, "ca", days), tuple(names), tuple(addresses), days)
    return Pki(ca=folder / "ca.crt", cert=cert, key=key)
