"""Check the certificate and key nginx is about to serve, before nginx starts.

Usage: python deploy/tls_check.py      (compose's one-shot `setup` service runs it first)

Reads TLS_CERTIFICATE and TLS_CERTIFICATE_KEY (PEM files, as the container sees them),
NGINX_SERVER_NAME (the names the site answers to) and TLS_HOST_DIR (the host folder mounted at
their folder; none when certbot writes them, https=letsencrypt) from the environment, which
compose fills from .env. Prints one line per problem (a stable id, the file, what is wrong, the
fix) and exits 1, or prints "ok" and exits 0. Each rule is one function
`check_<what>(tls) -> str | None`. nginx itself would refuse some of these only in its log, and
serve the others (an expired or wrong-name certificate) to browsers that then refuse the site.
Needs `cryptography`, which the image has (daphne -> twisted[tls]).
"""

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

ENCODING = serialization.Encoding.DER
PUBLIC_FORMAT = serialization.PublicFormat.SubjectPublicKeyInfo


@dataclass
class Tls:
    """What the rules read: the two files, the names to cover, and what could be loaded."""

    certificate_path: Path
    key_path: Path
    names: list[str]
    host_dir: str
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    chain: list[x509.Certificate] = field(default_factory=list)
    key: object = None
    problems: list[str] = field(default_factory=list)

    def where(self, path: Path, variable: str) -> str:
        """How to name a file in a message: its path, the .env setting, the host folder."""
        place = f"on the host under TLS_HOST_DIR={self.host_dir}"
        if not self.host_dir:  # https=letsencrypt: certbot's `tls` volume
            place = "in the tls volume"
        return f"{path} ({variable} in .env; {place})"


def load(tls: Tls) -> None:
    """Read the chain and the key; say which file is missing, unreadable or not PEM (tls.E001,
    tls.E002)."""
    files = (
        (tls.certificate_path, "TLS_CERTIFICATE", "your certificate chain (yours first)"),
        (tls.key_path, "TLS_CERTIFICATE_KEY", "its private key"),
    )
    for path, variable, what in files:
        if not path.is_file():
            tls.problems.append(
                f"tls.E001 {tls.where(path, variable)}: no such file; put {what} there, in PEM, "
                f"or point {variable} at it"
            )
        elif not os.access(path, os.R_OK):
            tls.problems.append(
                f"tls.E001 {tls.where(path, variable)}: this user (uid {os.getuid()}, the app's) "
                f"cannot read it; nginx reads it as root, but `setup` checks it first: give group "
                f"{os.getgid()} read access (chgrp {os.getgid()}, chmod 640)"
            )
    if tls.problems:
        return
    try:
        tls.chain = x509.load_pem_x509_certificates(tls.certificate_path.read_bytes())
    except (ValueError, OSError) as error:
        tls.problems.append(
            f"tls.E002 {tls.where(tls.certificate_path, 'TLS_CERTIFICATE')}: not a PEM "
            f"certificate ({error}); use the PEM chain your certificate authority issued"
        )
    try:
        tls.key = serialization.load_pem_private_key(tls.key_path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as error:
        tls.problems.append(
            f"tls.E002 {tls.where(tls.key_path, 'TLS_CERTIFICATE_KEY')}: not an unencrypted PEM "
            f"private key ({error}); nginx needs one it can read without a password"
        )


def check_key_matches(tls: Tls) -> str | None:
    """tls.E003: the key is the certificate's own (nginx refuses to start otherwise)."""
    certificate = tls.chain[0].public_key().public_bytes(ENCODING, PUBLIC_FORMAT)
    if tls.key.public_key().public_bytes(ENCODING, PUBLIC_FORMAT) == certificate:
        return None
    return (
        f"tls.E003 {tls.where(tls.key_path, 'TLS_CERTIFICATE_KEY')}: this key does not match the "
        f"certificate in {tls.certificate_path}; use the key the certificate was issued for"
    )


def check_valid_now(tls: Tls) -> str | None:
    """tls.E004: the certificate is valid today (browsers refuse an expired one)."""
    leaf, path = tls.chain[0], tls.where(tls.certificate_path, "TLS_CERTIFICATE")
    if leaf.not_valid_after_utc <= tls.now:
        return (
            f"tls.E004 {path}: the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}; "
            "renew it and replace the file"
        )
    if leaf.not_valid_before_utc > tls.now:
        return (
            f"tls.E004 {path}: the certificate is valid only from "
            f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; check this machine's clock"
        )
    return None


def certificate_names(certificate: x509.Certificate) -> list[str]:
    """The DNS names a certificate covers (browsers read only subjectAltName)."""
    try:
        extension = certificate.extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME
        )
    except x509.ExtensionNotFound:
        return []
    return [name.lower() for name in extension.value.get_values_for_type(x509.DNSName)]


def covers(pattern: str, name: str) -> bool:
    """Does a certificate name (maybe `*.example.com`) cover host `name`?"""
    if pattern.startswith("*."):
        label, _, rest = name.partition(".")
        return bool(label) and rest == pattern[2:]
    return pattern == name


def check_covers_names(tls: Tls) -> str | None:
    """tls.E005: the certificate covers every name nginx serves (NGINX_SERVER_NAME)."""
    patterns = certificate_names(tls.chain[0])
    missing = [n for n in tls.names if not any(covers(p, n.lower()) for p in patterns)]
    if not missing:
        return None
    return (
        f"tls.E005 {tls.where(tls.certificate_path, 'TLS_CERTIFICATE')}: the certificate covers "
        f"{', '.join(patterns) or 'no DNS name'}, not {', '.join(missing)} (NGINX_SERVER_NAME); "
        "get one issued for the site's name"
    )


def check_chain(tls: Tls) -> str | None:
    """tls.E006: each certificate of the chain is issued by the one after it, and a certificate
    a CA issued comes with that CA's intermediates. Browsers may fetch a missing intermediate;
    curl, Python, Android and most other clients refuse the site."""
    where = tls.where(tls.certificate_path, "TLS_CERTIFICATE")
    for number, (child, parent) in enumerate(zip(tls.chain, tls.chain[1:], strict=False), 1):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            return (
                f"tls.E006 {where}: certificate {number} ({child.subject.rfc4514_string()}) is "
                f"not issued by certificate {number + 1} ({parent.subject.rfc4514_string()}); "
                "put yours first, then each issuer in turn (your CA's full chain file)"
            )
    leaf = tls.chain[0]
    if len(tls.chain) == 1 and leaf.issuer != leaf.subject:
        return (
            f"tls.E006 {where}: only your certificate, without the intermediate certificates of "
            f"its issuer ({leaf.issuer.rfc4514_string()}); append them after it (your CA's "
            '"fullchain" or "CA bundle" file)'
        )
    return None


CHECKS: tuple[Callable[[Tls], str | None], ...] = (
    check_key_matches,
    check_valid_now,
    check_covers_names,
    check_chain,
)


def check(tls: Tls) -> list[str]:
    """Every problem with the files `tls` names."""
    load(tls)
    if tls.problems or not tls.chain or tls.key is None:
        return tls.problems
    return [problem for rule in CHECKS if (problem := rule(tls))]


def from_environment(env: dict[str, str]) -> Tls:
    """The files and names the environment (compose: .env) gives."""
    return Tls(
        certificate_path=Path(env.get("TLS_CERTIFICATE", "")),
        key_path=Path(env.get("TLS_CERTIFICATE_KEY", "")),
        names=env.get("NGINX_SERVER_NAME", "").split(),
        host_dir=env.get("TLS_HOST_DIR", ""),  # none: https=letsencrypt's `tls` volume
    )


def main() -> int:
    """Check the files the environment names; print the problems or "ok"."""
    tls = from_environment(dict(os.environ))
    problems = check(tls)
    names = " ".join(tls.names)
    print("\n".join(problems) or f"deploy/tls_check.py: ok, {tls.certificate_path} covers {names}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
