"""https=letsencrypt, natively: the real certbot gets and renews the certificate from pebble.

pebble (Let's Encrypt's test CA) runs on 127.0.0.1 with pebble-challtestsrv as its DNS server
(every name is 127.0.0.1), and validates HTTP-01 challenges on the stack's HTTP_PORT: the baked
`certbot` service (deploy/acme.py loop) asks it through the real nginx, as it would ask Let's
Encrypt through port 80. The stack starts on `setup`'s self-signed certificate; clients trust only
pebble's root (fetched from its management port: pebble makes a new one at every start), so the
stack serves only once certbot's certificate is installed and nginx reloaded it. Then a forced
renewal while a WebSocket stays open and pages keep loading, and a renewal that fails.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from harness.clients import http_get, open_ws, room_path, served_certificate, unverified_context
from harness.processes import LOOPBACK, free_ports, wait_until
from harness.stack import Server, Stack
from tests.certificates import Authority
from tests.conftest import report, require_binary
from tests.e2e.clients import pages_during, steadily
from tests.e2e.conftest import PROCESS_MANAGERS

# A public-looking name (the bake refuses localhost for letsencrypt); challtestsrv resolves it.
DOMAIN = "chat.example.com"
HTTPS_PORT = "8443"
# DESIGN.md's pebble settings: no sleeps, no nonce rejections, a fresh authorization per order.
PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
NINETY_DAYS = 90 * 24 * 3600

pytestmark = pytest.mark.e2e


class Pebble:
    """pebble and pebble-challtestsrv on free loopback ports, validating on `http_port`."""

    def __init__(self, folder: Path, http_port: int) -> None:
        pebble, challtestsrv = require_binary("pebble"), require_binary("pebble-challtestsrv")
        self.api_port, self.management_port, dns_port, dns_management = free_ports(4)
        # pebble's own https (its API) is served with a certificate from a throwaway CA.
        authority = Authority()
        self.tls_root = authority.write_root(folder / "pebble-api-root.pem")
        authority.issue("localhost", folder / "pebble-api.pem", folder / "pebble-api.key")
        config = {
            "pebble": {
                "listenAddress": f"{LOOPBACK}:{self.api_port}",
                "managementListenAddress": f"{LOOPBACK}:{self.management_port}",
                "certificate": str(folder / "pebble-api.pem"),
                "privateKey": str(folder / "pebble-api.key"),
                "httpPort": http_port,
                "tlsPort": free_ports(1)[0],
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "certificateValidityPeriod": NINETY_DAYS,
            }
        }
        (folder / "pebble.json").write_text(json.dumps(config))
        self.dns = Server(
            "pebble-challtestsrv",
            [
                challtestsrv, "-defaultIPv4", LOOPBACK, "-defaultIPv6", "",
                "-dns01", f"{LOOPBACK}:{dns_port}", "-http01", "", "-https01", "",
                "-tlsalpn01", "", "-management", f"{LOOPBACK}:{dns_management}",
            ],
            cwd=folder, env={}, log_path=folder / "challtestsrv.log", ports=[dns_management],
        )  # fmt: skip
        self.ca = Server(
            "pebble",
            [pebble, "-config", str(folder / "pebble.json"),
             "-dnsserver", f"{LOOPBACK}:{dns_port}"],
            cwd=folder, env=PEBBLE_ENV, log_path=folder / "pebble.log",
            ports=[self.api_port, self.management_port],
        )  # fmt: skip
        self.root_path = folder / "pebble-root.pem"

    @property
    def directory(self) -> str:
        """The ACME directory URL (what ACME_DIRECTORY names)."""
        return f"https://localhost:{self.api_port}/dir"

    def start(self) -> None:
        """Start both servers and keep pebble's new root (made at this start) in `root_path`."""
        self.dns.start()
        self.ca.start()
        context = ssl.create_default_context(cafile=str(self.tls_root))
        url = f"https://localhost:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:  # noqa: S310
            self.root_path.write_bytes(response.read())

    def stop(self) -> None:
        """Stop pebble and its DNS server."""
        self.ca.stop()
        self.dns.stop()


@pytest.fixture(scope="module", params=PROCESS_MANAGERS)
def acme_stack(
    request: pytest.FixtureRequest, bake_once, binaries: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, Pebble]]:  # fmt: skip
    """A https=letsencrypt bake running natively, its certbot asking a running pebble."""
    require_binary("certbot")
    project = bake_once(
        https="letsencrypt", https_port=HTTPS_PORT, domain_name=DOMAIN,
        process_manager=request.param,
    )  # fmt: skip
    tmp = tmp_path_factory.mktemp(f"stack-letsencrypt-{request.param}")
    stack = Stack(project, tmp, binaries)
    pebble = Pebble(tmp_path_factory.mktemp("pebble"), stack.http_port)
    pebble.start()
    stack.env.update(
        ACME_DIRECTORY=pebble.directory,
        ACME_EMAIL="admin@example.com",
        # certbot (python-requests) trusts pebble's API certificate through this.
        REQUESTS_CA_BUNDLE=str(pebble.tls_root),
        TLS_WATCH_SECONDS="1",
    )
    stack.tls_context = ssl.create_default_context(cafile=str(pebble.root_path))
    try:
        stack.start()  # serving means: pebble's certificate, trusted, through nginx
        yield stack, pebble
    finally:
        stack.stop()
        pebble.stop()


def certbot_version() -> str:
    """The certbot the tests run (`certbot --version` prints "certbot 2.1.0")."""
    result = subprocess.run(  # noqa: S603 - a fixed binary
        [require_binary("certbot"), "--version"], capture_output=True, text=True, check=False
    )
    return (result.stdout + result.stderr).split()[-1]


def renew_once(stack: Stack, *extra: str) -> subprocess.CompletedProcess:
    """What `docker compose exec certbot python deploy/acme.py renew ...` runs, natively."""
    argv = stack.command("certbot")
    assert argv[-2:] == ["deploy/acme.py", "loop"], argv
    return subprocess.run(  # noqa: S603 - the project's own script
        [*argv[:-1], "renew", *extra], cwd=stack.project, env=stack.env,
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


def test_setup_wrote_a_self_signed_certificate_first(acme_stack) -> None:
    """nginx started on `setup`'s self-signed certificate (no certificate existed yet)."""
    stack, _ = acme_stack
    log = (stack.logs / "setup.log").read_text()
    assert "no valid certificate yet: wrote a self-signed one for chat.example.com" in log
    assert "deploy/tls_check.py: ok" in log


def test_certbot_got_the_certificate_from_the_ca(acme_stack) -> None:
    """The page is served over https with pebble's certificate (trusted through its root), which
    certbot obtained over HTTP-01 through nginx and deploy/acme.py installed."""
    stack, _ = acme_stack
    leaf = served_certificate(stack)
    assert "Pebble" in leaf.issuer.rfc4514_string()
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [DOMAIN]
    assert http_get(stack, "/chat/lobby/")[0] == 200
    log = stack.servers["certbot"].log_since(0)
    assert "deploy/acme.py: installed a certificate for chat.example.com" in log
    first = stack.phases["wait until page, WebSocket and every Daphne serve"]
    report(
        f"https=letsencrypt ({stack.process_manager}): {first:.1f} s from the last server "
        "started (self-signed) to pages and wss:// served with pebble's certificate"
    )


def test_wss_round_trip_with_the_ca_certificate(acme_stack) -> None:
    """A message over wss:// (pebble's certificate) comes back."""
    stack, _ = acme_stack

    async def echo() -> dict:
        websocket = await open_ws(stack, room_path("acme"))
        try:
            await websocket.send(json.dumps({"message": "over acme"}))
            return json.loads(await asyncio.wait_for(websocket.recv(), 10))
        finally:
            await websocket.close()

    assert asyncio.run(echo())["message"] == "over acme"


def test_renewal_reloads_nginx_without_dropping_anything(acme_stack) -> None:
    """A forced renewal replaces the certificate nginx serves, while a WebSocket stays connected
    and pages keep loading: not one request fails, and the old socket still carries messages."""
    stack, _ = acme_stack
    before = served_certificate(stack)

    def renew() -> None:
        renewed = renew_once(stack, "--force-renewal")
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr

    seen = asyncio.run(
        pages_during(
            stack,
            renew,
            lambda: served_certificate(stack).serial_number != before.serial_number,
            timeout=20,
        )
    )
    assert seen.failures == []
    assert seen.loaded > 10
    assert seen.echoed["message"] == "after the reload"
    (watcher_log,) = stack.logs.glob("*reload-on-new-certificate.log")
    watcher = watcher_log.read_text()
    assert "changed: nginx reloads it" in watcher
    report(
        f"https=letsencrypt ({stack.process_manager}): certbot {certbot_version()} and pebble "
        f"renewed the certificate; nginx served it "
        f"{seen.seconds:.1f} s after the renewal began, "
        f"{seen.loaded} pages loaded meanwhile, 0 failed, the open WebSocket kept working"
    )


def test_no_server_logged_an_error(acme_stack) -> None:
    """After issuance and renewal, no server logged an error."""
    stack, _ = acme_stack
    assert stack.errors_since({}) == []


def test_a_lost_certificate_is_installed_again_from_certbots_copy(acme_stack) -> None:
    """The `tls` volume made anew (setup's self-signed certificate back in nginx's files) while
    certbot's own copy is current: the next run (certbot: not due, nothing to do) installs that
    copy again, and nginx serves it; not 60 days of a self-signed certificate."""
    stack, _ = acme_stack
    before = served_certificate(stack)
    for path in (stack.env["TLS_CERTIFICATE"], stack.env["TLS_CERTIFICATE_KEY"]):
        Path(path).unlink()
    argv = stack.command("certbot")
    made = subprocess.run(  # noqa: S603 - the project's own script, as `setup` runs it
        [*argv[:-1], "bootstrap"], cwd=stack.project, env=stack.env,
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert "wrote a self-signed one" in made.stdout, made.stdout + made.stderr
    wait_until(
        steadily(lambda: "Pebble" not in served_issuer(stack)), timeout=20, interval=0.2,
        what="nginx serving the self-signed certificate",
    )  # fmt: skip
    again = renew_once(stack)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "is not certbot's current certificate: installing that" in again.stdout
    wait_until(
        steadily(lambda: served_certificate_or_none(stack) == before.serial_number), timeout=20,
        interval=0.2, what="certbot's certificate served again",
    )  # fmt: skip


def test_a_certificate_from_another_ca_is_replaced_at_once(acme_stack) -> None:
    """Going live: ACME_DIRECTORY names another CA than the one certbot's certificate came from
    (here pebble under another URL, as staging then production): the next run gets a new
    certificate at once, not when the old one is due."""
    stack, pebble = acme_stack
    before = served_certificate(stack)
    stack.env["ACME_DIRECTORY"] = f"{pebble.directory}?live"
    try:
        switched = renew_once(stack)
    finally:
        stack.env["ACME_DIRECTORY"] = pebble.directory
    assert switched.returncode == 0, switched.stdout + switched.stderr
    assert f"the certificate is from {pebble.directory}: asking" in switched.stdout
    wait_until(
        steadily(lambda: served_certificate(stack).serial_number != before.serial_number),
        timeout=20, interval=0.2, what="the new CA's certificate",
    )  # fmt: skip


def served_issuer(stack: Stack) -> str:
    """The issuer of the certificate nginx serves now, read without verifying it."""
    return served_certificate(stack, unverified_context()).issuer.rfc4514_string()


def served_certificate_or_none(stack: Stack) -> int | None:
    """The serial of the trusted certificate nginx serves, or None while it serves another."""
    try:
        return served_certificate(stack).serial_number
    except ssl.SSLCertVerificationError:
        return None


def test_failed_renewal_keeps_the_old_certificate_and_says_so(acme_stack) -> None:
    """With the CA down, a renewal fails with an ERROR line naming the CA and the certificate
    still served; nginx keeps serving that certificate. (Last: it stops pebble.)"""
    stack, pebble = acme_stack
    before = served_certificate(stack)
    pebble.ca.stop()
    failed = renew_once(stack, "--force-renewal")
    assert failed.returncode == 1
    error = [line for line in failed.stdout.splitlines() if "ERROR" in line]
    assert len(error) == 1, failed.stdout + failed.stderr
    assert pebble.directory in error[0]
    assert "nginx keeps serving" in error[0]
    time.sleep(2)  # more than TLS_WATCH_SECONDS: a reload would have happened
    assert served_certificate(stack).serial_number == before.serial_number
    assert http_get(stack, "/chat/lobby/")[0] == 200
