"""deploy/acme.py's own steps, without a CA: the first certificate, and installing a new one.

(Getting and renewing a certificate from a real ACME CA through nginx is proved by the template's
end-to-end tests, with pebble and certbot.)
"""

import subprocess
import sys
from pathlib import Path

from cryptography import x509

SCRIPT = Path(__file__).resolve().parent.parent / "acme.py"
SITE = "chat.example.com"


def run_acme(command: str, folder: Path, **extra: str) -> subprocess.CompletedProcess:
    """Run `python deploy/acme.py COMMAND` with nginx's files in `folder`."""
    env = {
        "TLS_CERTIFICATE": str(folder / "fullchain.pem"),
        "TLS_CERTIFICATE_KEY": str(folder / "privkey.pem"),
        "NGINX_SERVER_NAME": SITE,
        **extra,
    }
    argv = [sys.executable, str(SCRIPT), command]
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=env)


def leaf(folder: Path) -> x509.Certificate:
    """The first certificate of folder/fullchain.pem."""
    return x509.load_pem_x509_certificate((folder / "fullchain.pem").read_bytes())


def test_bootstrap_writes_a_self_signed_certificate_once(tmp_path: Path) -> None:
    """With no certificate, bootstrap writes a short-lived self-signed one for the site's name
    (so nginx can start); run again, it keeps the valid one it finds."""
    first = run_acme("bootstrap", tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "wrote a self-signed one for chat.example.com" in first.stdout
    written = leaf(tmp_path)
    names = written.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [SITE]
    assert (written.not_valid_after_utc - written.not_valid_before_utc).days <= 7
    again = run_acme("bootstrap", tmp_path)
    assert again.returncode == 0
    assert "is valid for chat.example.com" in again.stdout
    assert leaf(tmp_path).serial_number == written.serial_number


def test_install_puts_a_good_certificate_in_place(tmp_path: Path) -> None:
    """certbot's deploy hook copies the new chain and key where nginx reads them."""
    lineage, served = tmp_path / "lineage", tmp_path / "tls"
    for folder in (lineage, served):
        folder.mkdir()
        assert run_acme("bootstrap", folder).returncode == 0
    result = run_acme("install", served, RENEWED_LINEAGE=str(lineage))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "installed a certificate for chat.example.com" in result.stdout
    for name in ("fullchain.pem", "privkey.pem"):
        assert (served / name).read_bytes() == (lineage / name).read_bytes()


def test_install_refuses_a_wrong_certificate(tmp_path: Path) -> None:
    """A new certificate that would not serve the site (another name) is not installed: an
    ERROR line says why, and nginx's files stay as they were."""
    lineage, served = tmp_path / "lineage", tmp_path / "tls"
    lineage.mkdir()
    served.mkdir()
    wrong = {"NGINX_SERVER_NAME": "other.example.com"}
    assert run_acme("bootstrap", lineage, **wrong).returncode == 0
    assert run_acme("bootstrap", served).returncode == 0
    before = (served / "fullchain.pem").read_bytes()
    result = run_acme("install", served, RENEWED_LINEAGE=str(lineage))
    assert result.returncode == 1
    assert "ERROR the new certificate is not installed: tls.E005" in result.stdout
    assert (served / "fullchain.pem").read_bytes() == before
