"""deploy/tls_check.py passes a good certificate and names each way a certificate can be wrong.

A throwaway certificate authority, made here with `cryptography`, issues every certificate: one
good, then one case per rule, each expected to fail with exactly that rule's id and the file.
"""

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CHECKER = Path(__file__).resolve().parent.parent / "tls_check.py"
RULE_ID = re.compile(r"^(tls\.E\d{3}) ", re.MULTILINE)
SITE = "chat.example.com"
NOW = datetime.now(UTC)


def make_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key (what Mozilla's profiles and Let's Encrypt use)."""
    return ec.generate_private_key(ec.SECP256R1())


def name(common_name: str) -> x509.Name:
    """A subject with only a common name."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def authority() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A throwaway certificate authority: its certificate and key."""
    return make_authority()


def make_authority() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new certificate authority (same name as every other: only its key tells it apart)."""
    key = make_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name("Test CA"))
        .issuer_name(name("Test CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def issue(authority, key, *, names=(SITE,), days=(-1, 90)) -> x509.Certificate:
    """A certificate for `key` covering `names`, valid from/until these days from now."""
    ca_certificate, ca_key = authority
    return (
        x509.CertificateBuilder()
        .subject_name(name(names[0] if names else "nothing"))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + timedelta(days=days[0]))
        .not_valid_after(NOW + timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(ca_key, hashes.SHA256())
    )


def write(folder: Path, certificate: x509.Certificate, key, authority, *, chain=None) -> None:
    """fullchain.pem (the certificate, then the CA's, unless `chain` says otherwise) and
    privkey.pem in `folder`."""
    chain = chain or [certificate, authority[0]]
    pem = serialization.Encoding.PEM
    (folder / "fullchain.pem").write_bytes(b"".join(c.public_bytes(pem) for c in chain))
    (folder / "privkey.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def run_check(folder: Path, server_name: str = SITE) -> subprocess.CompletedProcess:
    """Run deploy/tls_check.py on the files in `folder`, as compose's `setup` service does."""
    env = {
        "TLS_CERTIFICATE": str(folder / "fullchain.pem"),
        "TLS_CERTIFICATE_KEY": str(folder / "privkey.pem"),
        "NGINX_SERVER_NAME": server_name,
        "TLS_HOST_DIR": "./tls",
    }
    command = [sys.executable, str(CHECKER)]
    return subprocess.run(command, capture_output=True, text=True, check=False, env=env)


def test_a_good_certificate_passes(tmp_path: Path, authority) -> None:
    """A current certificate for the site's name, with its own key, passes."""
    key = make_key()
    write(tmp_path, issue(authority, key), key, authority)
    result = run_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok" in result.stdout


def test_a_wildcard_covers_one_label(tmp_path: Path, authority) -> None:
    """*.example.com covers chat.example.com (and is refused for example.com itself)."""
    key = make_key()
    write(tmp_path, issue(authority, key, names=("*.example.com",)), key, authority)
    assert run_check(tmp_path).returncode == 0
    assert RULE_ID.findall(run_check(tmp_path, "example.com").stdout) == ["tls.E005"]


def breakages():
    """(id, rule, what to do to the folder, the file the message must name)."""

    def missing(folder, authority):
        key = make_key()
        write(folder, issue(authority, key), key, authority)
        (folder / "fullchain.pem").unlink()

    def missing_key(folder, authority):
        key = make_key()
        write(folder, issue(authority, key), key, authority)
        (folder / "privkey.pem").unlink()

    def not_pem(folder, authority):
        key = make_key()
        write(folder, issue(authority, key), key, authority)
        (folder / "fullchain.pem").write_text("not a certificate\n")

    def other_key(folder, authority):
        write(folder, issue(authority, make_key()), make_key(), authority)

    def expired(folder, authority):
        key = make_key()
        write(folder, issue(authority, key, days=(-100, -10)), key, authority)

    def not_yet_valid(folder, authority):
        key = make_key()
        write(folder, issue(authority, key, days=(2, 90)), key, authority)

    def other_name(folder, authority):
        key = make_key()
        write(folder, issue(authority, key, names=("other.example.org",)), key, authority)

    def leaf_alone(folder, authority):
        key = make_key()
        certificate = issue(authority, key)
        write(folder, certificate, key, authority, chain=[certificate])

    def chain_out_of_order(folder, authority):
        key = make_key()
        certificate = issue(authority, key)
        write(folder, certificate, key, authority, chain=[certificate, make_authority()[0]])

    return [
        pytest.param("tls.E001", missing, "fullchain.pem", id="missing-certificate"),
        pytest.param("tls.E001", missing_key, "privkey.pem", id="missing-key"),
        pytest.param("tls.E002", not_pem, "fullchain.pem", id="not-pem"),
        pytest.param("tls.E003", other_key, "privkey.pem", id="key-does-not-match"),
        pytest.param("tls.E004", expired, "fullchain.pem", id="expired"),
        pytest.param("tls.E004", not_yet_valid, "fullchain.pem", id="not-yet-valid"),
        pytest.param("tls.E005", other_name, "fullchain.pem", id="does-not-cover-domain"),
        pytest.param("tls.E006", leaf_alone, "fullchain.pem", id="no-intermediates"),
        pytest.param("tls.E006", chain_out_of_order, "fullchain.pem", id="foreign-issuer"),
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_is_refused_with_the_fix(tmp_path: Path, authority) -> None:
    """A key the app's user cannot read (setup runs as that user) fails with tls.E001 and the
    permissions that fix it."""
    key = make_key()
    write(tmp_path, issue(authority, key), key, authority)
    (tmp_path / "privkey.pem").chmod(0)
    result = run_check(tmp_path)
    assert RULE_ID.findall(result.stdout) == ["tls.E001"], result.stdout
    assert "chmod 640" in result.stdout


@pytest.mark.parametrize(("rule", "breakage", "file"), breakages())
def test_a_bad_certificate_is_refused(tmp_path: Path, authority, rule, breakage, file) -> None:
    """Each bad certificate fails with exactly its rule, naming the file and the .env setting."""
    breakage(tmp_path, authority)
    result = run_check(tmp_path)
    assert result.returncode == 1
    assert RULE_ID.findall(result.stdout) == [rule], result.stdout
    assert str(tmp_path / file) in result.stdout
    assert "in .env" in result.stdout
    assert "TLS_HOST_DIR=./tls" in result.stdout
