"""https=own_certificate, natively: the real nginx serves a certificate from a throwaway CA.

The certificate (from a CA made here) goes where .env's TLS_CERTIFICATE and TLS_CERTIFICATE_KEY
point once the harness moved them under tmp; the `setup` one-shot checks it (deploy/tls_check.py)
before nginx starts, as under compose. Then: a page over HTTP/2, http:// redirected (but not ACME
challenges), HSTS, a wss:// round trip, and sslyze's verdict against Mozilla's "intermediate".
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.clients import http_get, open_ws, room_path
from harness.processes import LOOPBACK
from harness.stack import Stack
from tests.certificates import Authority
from tests.conftest import TEMPLATE_DIR, report, require_binary
from tests.e2e.clients import open_room_page, page_messages, type_message, wait_for_page
from tests.e2e.conftest import start_chromium

DOMAIN = "localhost"
# Not 443: the native stack moves every port to a free one, and an origin with a port keeps
# following it (harness.bake.native_env); the bake's own origin names this port.
HTTPS_PORT = "8443"
# sslyze lives in its own venv (scripts/venv.sh): it pins cryptography<47, the project >=50.
SSLYZE_BIN = str(TEMPLATE_DIR / ".venv" / "sslyze" / "bin")
GROUPS = tomllib.loads((TEMPLATE_DIR / "pyproject.toml").read_text())["dependency-groups"]
SSLYZE_PIN = GROUPS["tls-scan"][0]  # "sslyze==X.Y.Z"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def authority() -> Authority:
    """A throwaway certificate authority for this module's stack."""
    return Authority()


@pytest.fixture(scope="module")
def root_pem(authority: Authority, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA's certificate as a file."""
    return authority.write_root(tmp_path_factory.mktemp("ca") / "root.pem")


@pytest.fixture(scope="module")
def tls_stack(
    bake_once, binaries: dict[str, str], authority: Authority, root_pem: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:  # fmt: skip
    """A https=own_certificate bake running natively, its certificate issued by `authority`."""
    project = bake_once(https="own_certificate", https_port=HTTPS_PORT, domain_name=DOMAIN)
    stack = Stack(project, tmp_path_factory.mktemp("stack-tls"), binaries)
    key = Path(stack.env["TLS_CERTIFICATE_KEY"])
    authority.issue(DOMAIN, Path(stack.env["TLS_CERTIFICATE"]), key)
    stack.tls_context = ssl.create_default_context(cafile=str(root_pem))
    stack.start()
    yield stack
    stack.stop()


def test_setup_checked_the_certificate(tls_stack: Stack) -> None:
    """The one-shot `setup` ran deploy/tls_check.py, which passed the certificate."""
    log = (tls_stack.logs / "setup.log").read_text()
    assert "deploy/tls_check.py: ok" in log


def test_https_page_is_served_over_http2(tls_stack: Stack, root_pem: Path) -> None:
    """A browser-like client (curl, verifying the certificate) gets the room page over HTTP/2."""
    curl = require_binary("curl")
    ca = root_pem
    port = tls_stack.https_port
    result = subprocess.run(  # noqa: S603 - fixed binary, our arguments
        [
            curl, "--silent", "--show-error", "--http2", "--cacert", str(ca),
            "--resolve", f"{DOMAIN}:{port}:{LOOPBACK}", "--output", "/dev/null",
            "--write-out", "%{http_version} %{response_code}",
            f"https://{DOMAIN}:{port}/chat/lobby/",
        ],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 200"


def test_hsts_is_sent_once_without_opt_ins(tls_stack: Stack) -> None:
    """nginx sends one HSTS header, a year long, without includeSubDomains or preload."""
    status, headers, _ = http_get(tls_stack, "/chat/lobby/")
    assert status == 200
    hsts = [value for key, value in headers.items() if key.lower() == "strict-transport-security"]
    assert hsts == ["max-age=31536000"]


def test_plain_http_redirects_to_https(tls_stack: Stack) -> None:
    """http:// answers 301 to the same path on https://, with the https port."""
    status, headers, _ = http_get(tls_stack, "/chat/lobby/?x=1", scheme="http")
    assert status == 301
    assert headers["Location"] == f"https://{DOMAIN}:{tls_stack.https_port}/chat/lobby/?x=1"


def test_acme_challenge_is_served_over_plain_http(tls_stack: Stack) -> None:
    """A token in the `acme` volume is served over http://, not redirected (certbot's webroot)."""
    folder = tls_stack.volume_dirs["acme"] / ".well-known" / "acme-challenge"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token-123").write_text("token-123.thumbprint")
    status, _, body = http_get(tls_stack, "/.well-known/acme-challenge/token-123", scheme="http")
    assert (status, body) == (200, b"token-123.thumbprint")
    status, _, _ = http_get(tls_stack, "/.well-known/acme-challenge/missing", scheme="http")
    assert status == 404


def test_wss_round_trip(tls_stack: Stack) -> None:
    """A message sent over wss:// comes back to the sender and reaches another member."""

    async def exchange() -> tuple[dict, dict]:
        first = await open_ws(tls_stack, room_path("tls"))
        second = await open_ws(tls_stack, room_path("tls"))
        try:
            await first.send(json.dumps({"message": "over tls"}))
            return (
                json.loads(await asyncio.wait_for(first.recv(), 10)),
                json.loads(await asyncio.wait_for(second.recv(), 10)),
            )
        finally:
            await first.close()
            await second.close()

    mine, theirs = asyncio.run(exchange())
    assert mine["message"] == theirs["message"] == "over tls"


def test_tls_is_mozilla_intermediate(tls_stack: Stack, root_pem: Path) -> None:
    """sslyze finds the server compliant with Mozilla's intermediate profile; TLS 1.0 and 1.1,
    SSL 2 and 3 are refused."""
    sslyze = require_binary("sslyze", SSLYZE_BIN)
    target = f"{DOMAIN}:{tls_stack.https_port}{{{LOOPBACK}}}"
    result = subprocess.run(  # noqa: S603 - fixed binary, our arguments
        [sslyze, "--mozilla_config", "intermediate", "--certinfo_ca_file", str(root_pem), target],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    verdict = re.search(r"^\s*\S+:\d+: (OK - Compliant\.|FAILED - .*)$", output, re.M)
    assert verdict, output
    assert verdict.group(1) == "OK - Compliant.", output
    for old in ("SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1"):
        section = re.search(rf"\* {re.escape(old)} Cipher Suites:\s*\n(.*?)\n\s*\n", output, re.S)
        assert section, f"no {old} section in sslyze's output"
        assert "rejected all cipher suites" in section.group(1), old
    accepted = re.findall(r"The server accepted the following (\d+) cipher suites", output)
    report(
        f"{SSLYZE_PIN} --mozilla_config intermediate, https=own_certificate nginx: "
        f"{verdict.group(1)} SSL 2/3 and TLS 1.0/1.1 refused; TLS 1.2 and 1.3 accept "
        f"{' and '.join(accepted)} cipher suites"
    )


# testssl's verdicts on the old protocols (its JSON ids) and the one each must get.
OLD_PROTOCOLS = ("SSLv2", "SSLv3", "TLS1", "TLS1_1")


def test_testssl_finds_nothing_high_or_critical(
    tls_stack: Stack, root_pem: Path, tmp_path: Path
) -> None:
    """Debian's testssl.sh, a second scanner beside sslyze: protocols, server defaults, headers
    and the known vulnerabilities; no finding of severity HIGH or CRITICAL, SSL 2/3 and TLS
    1.0/1.1 not offered, HSTS sent, HTTP/2 offered (ALPN). Its summary goes to the report."""
    testssl = require_binary("testssl")
    findings_path = tmp_path / "testssl.json"
    result = subprocess.run(  # noqa: S603 - fixed binary, our arguments
        [
            testssl, "--quiet", "--color", "0", "--warnings", "off", "--sneaky",
            "--ip", LOOPBACK, "--add-ca", str(root_pem), "--jsonfile", str(findings_path),
            "--protocols", "--server-defaults", "--headers", "--vulnerable",
            f"https://{DOMAIN}:{tls_stack.https_port}/chat/lobby/",
        ],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    output = result.stdout[-6000:] + result.stderr[-2000:]
    findings = {item["id"]: item for item in json.loads(findings_path.read_text())}
    severe = [item for item in findings.values() if item["severity"] in ("HIGH", "CRITICAL")]
    assert severe == [], output
    for protocol in OLD_PROTOCOLS:
        assert findings[protocol]["finding"].startswith("not offered"), findings[protocol]
    assert findings["HSTS_time"]["severity"] == "OK", findings["HSTS_time"]
    assert findings["ALPN_HTTP2"]["finding"] == "h2", findings["ALPN_HTTP2"]
    counts: dict[str, int] = {}
    for item in findings.values():
        counts[item["severity"]] = counts.get(item["severity"], 0) + 1
    report(
        f"testssl {version_of_testssl(testssl)}, https=own_certificate nginx: "
        f"{len(findings)} findings by severity {dict(sorted(counts.items()))}; "
        f"SSLv2/SSLv3/TLS 1.0/TLS 1.1 not offered; HSTS {findings['HSTS_time']['finding']}; "
        f"HTTP/2 offered ({findings['ALPN_HTTP2']['finding']})"
    )


def version_of_testssl(testssl: str) -> str:
    """testssl's version ("3.0.8"), from its banner."""
    banner = subprocess.run(  # noqa: S603 - fixed binary
        [testssl, "--version"], capture_output=True, text=True, check=False
    ).stdout
    found = re.search(r"testssl\S*\s+(\d[\w.]*)", re.sub(r"\x1b\[[0-9;]*m", "", banner))
    return found.group(1) if found else "?"


@pytest.fixture(scope="module")
def trusting_browser(root_pem: Path, tmp_path_factory: pytest.TempPathFactory):
    """Headless Chromium that trusts the test CA the way a Linux desktop does: the root in the
    NSS database under its HOME (certutil), no --ignore-certificate-errors."""
    certutil = require_binary("certutil")
    home = tmp_path_factory.mktemp("chromium-home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    for command in (
        [certutil, "-d", f"sql:{nssdb}", "-N", "--empty-password"],
        [certutil, "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "test-ca", "-i", str(root_pem)],
    ):
        subprocess.run(command, check=True, capture_output=True, timeout=30)  # noqa: S603
    (home / "chromium").mkdir()
    driver = start_chromium(home / "chromium", env={**os.environ, "HOME": str(home)})
    yield driver
    driver.quit()


def test_browser_chats_over_https_and_wss(tls_stack: Stack, trusting_browser) -> None:
    """Two tabs load the room page over https (trusted, no certificate warning), open wss://
    sockets, and see each other's messages."""
    browser, room = trusting_browser, "tls-browser"
    open_room_page(browser, tls_stack, room)
    first = browser.current_window_handle
    assert browser.execute_script("return location.protocol") == "https:"
    browser.switch_to.new_window("tab")
    open_room_page(browser, tls_stack, room)
    type_message(browser, "hello over wss")
    wait_for_page(browser, lambda: page_messages(browser) == ["hello over wss"], what="own")
    browser.switch_to.window(first)
    wait_for_page(browser, lambda: page_messages(browser) == ["hello over wss"], what="the tab's")


def test_nginx_healthcheck_passes_over_https(tls_stack: Stack) -> None:
    """compose.yaml's nginx healthcheck (wget by address, no SNI, the site's name in Host) gets
    through the TLS server to uWSGI and Daphne: the very command, on the native ports."""
    require_binary("wget")
    test = tls_stack.service(tls_stack.nginx_service)["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    result = subprocess.run(  # noqa: S603 - compose.yaml's own healthcheck
        ["sh", "-c", test[1]], capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert f"https://127.0.0.1:{tls_stack.https_port}/ws/healthz" in test[1]


def test_shipped_smoke_test_passes_over_https(tls_stack: Stack, root_pem: Path) -> None:
    """deploy/smoke.py (what the project's CI runs after `up`) passes over https and wss,
    verifying the certificate, and sees http:// redirect."""
    command = [
        sys.executable, "deploy/smoke.py", "--port", str(tls_stack.http_port),
        "--https-port", str(tls_stack.https_port), "--host", DOMAIN, "--cafile", str(root_pem),
    ]  # fmt: skip
    result = subprocess.run(  # noqa: S603 - the project's own script
        command, cwd=tls_stack.project, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok  http:// redirects to https://" in result.stdout
    assert f"ok  page https://{DOMAIN}:{tls_stack.https_port}/chat/lobby/" in result.stdout
    assert "ok  websocket round trip" in result.stdout
    untrusted = subprocess.run(  # noqa: S603 - the same, without the test CA: refused
        command[:-2], cwd=tls_stack.project, capture_output=True, text=True, check=False, timeout=60
    )
    assert untrusted.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def test_no_server_logged_an_error(tls_stack: Stack) -> None:
    """After everything above, no server logged an error (nginx's TLS handshakes included)."""
    assert tls_stack.errors_since({}) == []
