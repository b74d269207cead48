"""A throwaway certificate authority for the tests that serve TLS (nginx -t, the e2e stack)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM
CRL_URL = "http://ca.example.test/crl.der"


class Authority:
    """A throwaway certificate authority made with `cryptography` (which daphne brings), issuing
    certificates a strict verifier accepts. (trustme's leaves mark subjectAltName critical beside
    a non-empty subject, which RFC 5280 forbids and sslyze's path validation refuses.)"""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
        self.certificate = (
            certificate_builder(self.name, self.name, self.key.public_key(), days=30)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, name: str, certificate: Path, key_path: Path) -> None:
        """A 90-day certificate for `name` (what Mozilla's intermediate accepts: ECDSA P-256, at
        most 366 days) as a PEM chain at `certificate`, and its key at `key_path`."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer_key = x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())
        leaf = (
            certificate_builder(subject, self.name, key.public_key(), days=90)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(key_usage(digital_signature=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(issuer_key, critical=False)
            # Where a client may check revocation, as public CAs name (Let's Encrypt: a CRL, no
            # OCSP since 2025); nobody fetches it here, but scanners rate a certificate without.
            .add_extension(crl_distribution_point(CRL_URL), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        certificate.write_bytes(leaf.public_bytes(PEM) + self.certificate.public_bytes(PEM))
        key_path.write_bytes(
            key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )

    def write_root(self, path: Path) -> Path:
        """The CA's certificate, for clients to trust."""
        path.write_bytes(self.certificate.public_bytes(PEM))
        return path


def certificate_builder(subject, issuer, public_key, *, days: int) -> x509.CertificateBuilder:
    """A certificate valid from an hour ago for `days` days."""
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
    )


def key_usage(**allowed: bool) -> x509.KeyUsage:
    """A KeyUsage extension with only the `allowed` uses."""
    uses = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment")
    uses += ("key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{use: allowed.get(use, False) for use in uses})


def crl_distribution_point(url: str) -> x509.CRLDistributionPoints:
    """The CRL Distribution Points extension with one URL."""
    point = x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)],
        relative_name=None,
        reasons=None,
        crl_issuer=None,
    )
    return x509.CRLDistributionPoints([point])
