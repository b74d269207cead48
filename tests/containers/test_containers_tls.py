"""https under the real `docker compose up`: both certificate sources, one process manager each.

- `own_certificate` (supervisor): the generated CI's own step makes a throwaway certificate in
  TLS_HOST_DIR; `setup` checks it, nginx serves it over HTTP/2 and wss, the CI's smoke step
  passes, and a certificate for another name stops at `setup` while the site keeps serving.
- `letsencrypt` (compose): first as the generated CI runs it (Let's Encrypt's staging CA, which
  nobody here can reach): certbot fails with one ERROR line and nginx serves `setup`'s self-signed
  certificate, which the CI's smoke step trusts. Then, as an operator going live, ACME_DIRECTORY
  names a real ACME CA, pebble (Let's Encrypt's test CA) in a container on the project's network
  that resolves the site's name to nginx (a network alias): certbot gets the certificate over
  HTTP-01 through nginx, nginx's watcher reloads it, and a forced renewal replaces it with not one
  page load failed and an open WebSocket kept.

The tests' own compose file (pebble, the alias, certbot's trust in pebble's API) is merged over
compose.yaml with `-f`; the project's files are used as baked, and only `.env` is edited.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from harness.clients import (
    http_get,
    open_ws,
    room_path,
    served_certificate,
    unverified_context,
)
from harness.processes import LOOPBACK, wait_until
from tests.certificates import Authority
from tests.conftest import report, require_binary
from tests.containers import images
from tests.containers.compose import ComposeError, ComposeStack, set_env_values
from tests.e2e.clients import pages_during, steadily

DOMAIN = "chat.example.com"
# pebble in its container: the API certbot asks, and the management port that hands out the root.
PEBBLE_API, PEBBLE_MANAGEMENT = 14000, 15000
# DESIGN.md's pebble settings: no sleeps, no nonce rejections, a fresh authorization per order.
PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
NINETY_DAYS = 90 * 24 * 3600
# Let's Encrypt's staging CA, what the generated CI points certbot at.
STAGING = "acme-staging-v02.api.letsencrypt.org"

pytestmark = pytest.mark.containers


def tls_stack(
    manager: str, https: str, bake_once, cli: list[str], folder: Path, override: Path | None
) -> ComposeStack:
    """A TLS bake copied to `folder`, its images present, as a ComposeStack (not started)."""
    project = folder / "project"
    shutil.copytree(bake_once(process_manager=manager, https=https, domain_name=DOMAIN), project)
    for image in images.named_images(project):
        images.ensure(image)
    scale = ["--scale", "asgi=2"] if manager == "compose" else []
    name = f"rtc-{https.replace('_', '')}-{os.getpid()}"
    return ComposeStack(project, name, cli, scale, override=override)


def start(stack: ComposeStack, label: str) -> None:
    """Build and `up --wait`, timing both for the report; the logs on failure."""
    try:
        stack.phases["build"] = stack.build()
        stack.phases["up --build --wait"] = stack.up()
    except ComposeError as error:
        raise ComposeError(f"{error}\n{stack.log_tails()}") from error
    report(
        f"containers, {label}: build {stack.phases['build']} s, "
        f"up --build --wait {stack.phases['up --build --wait']} s"
    )


def negotiated_protocol(stack: ComposeStack) -> str | None:
    """The protocol nginx picks when a client offers HTTP/2 and HTTP/1.1 (ALPN), as browsers do."""
    context = unverified_context()  # the protocol is asked, not the trust
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection((LOOPBACK, stack.https_port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=DOMAIN) as tls,
    ):
        return tls.selected_alpn_protocol()


async def echo(stack: ComposeStack, room: str, text: str) -> dict:
    """A message over wss:// into `room`, as the sender hears it back."""
    websocket = await open_ws(stack, room_path(room))
    try:
        await websocket.send(json.dumps({"message": text}))
        return json.loads(await asyncio.wait_for(websocket.recv(), 10))
    finally:
        await websocket.close()


def error_lines(stack: ComposeStack, *, allowed: str = "") -> list[str]:
    """Lines of any service's log that report an error (nginx [error]/[crit]/[alert]/[emerg],
    Python's ERROR and tracebacks), but for those containing `allowed`."""
    markers = ("[error]", "[crit]", "[alert]", "[emerg]", " ERROR ", "ERROR ", "Traceback")
    output = stack.compose("logs", "--no-color", check=False).stdout
    return [
        line
        for line in output.splitlines()
        if any(marker in line for marker in markers) and not (allowed and allowed in line)
    ]


# --- own_certificate, supervisor ------------------------------------------------------------


@pytest.fixture(scope="module")
def own_certificate_stack(
    bake_once, compose_cli_argv: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComposeStack]:
    """https=own_certificate (supervisor), its certificate made by the generated CI's own step."""
    require_binary("openssl")
    folder = tmp_path_factory.mktemp("containers-own-certificate")
    stack = tls_stack("supervisor", "own_certificate", bake_once, compose_cli_argv, folder, None)
    made = stack.run_workflow_step("A throwaway certificate")
    assert made.returncode == 0, made.stdout + made.stderr
    # Both HSTS opt-ins, spelled as an operator may (Django reads "true" and "yes" as yes).
    set_env_values(
        stack.project / ".env",
        {"DJANGO_HSTS_INCLUDE_SUBDOMAINS": "true", "DJANGO_HSTS_PRELOAD": "yes"},
    )
    certificate = stack.project / stack.env["TLS_HOST_DIR"] / "fullchain.pem"
    stack.tls_context = ssl.create_default_context(cafile=str(certificate))
    try:
        start(stack, "https=own_certificate (supervisor)")
        yield stack
    finally:
        stack.down()


def test_own_certificate_stack_is_healthy_over_https(own_certificate_stack) -> None:
    """Every service healthy: nginx's healthcheck (busybox wget over https, by address) passes."""
    stack = own_certificate_stack
    states = {
        c["Config"]["Labels"]["com.docker.compose.service"]: c["State"] for c in stack.containers()
    }
    assert states["setup"]["ExitCode"] == 0
    for service in ("app", "redis", "nginx"):
        assert states[service]["Health"]["Status"] == "healthy", service
    assert "deploy/tls_check.py: ok" in stack.logs("setup")


def test_private_key_is_not_in_the_image(own_certificate_stack) -> None:
    """TLS_HOST_DIR sits in the project folder, which is the image's build context: the key
    must stay out of the image (.dockerignore), or anyone with the image has it."""
    stack = own_certificate_stack
    found = stack.exec("app", "find", "/app", "-name", "*.pem", "-o", "-name", "*.key")
    assert found.stdout.split() == []
    assert (stack.project / stack.env["TLS_HOST_DIR"] / "privkey.pem").is_file()


def test_own_certificate_served_over_http2_and_wss(own_certificate_stack) -> None:
    """The page over https (HTTP/2 offered and taken), http:// redirects, a wss round trip."""
    stack = own_certificate_stack
    assert negotiated_protocol(stack) == "h2"
    status, headers, _ = http_get(stack, "/chat/lobby/")
    assert status == 200
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    status, headers, _ = http_get(stack, "/chat/lobby/?x=1", scheme="http")
    assert status == 301
    assert headers["Location"] == f"https://{DOMAIN}:{stack.https_port}/chat/lobby/?x=1"
    assert asyncio.run(echo(stack, "own", "over wss"))["message"] == "over wss"


def test_hsts_opt_ins_agree_between_nginx_and_django(own_certificate_stack) -> None:
    """nginx sends the one HSTS header (it hides Django's), so it must read .env's opt-ins as
    Django does: with "true" and "yes", both carry includeSubDomains and preload. Plain http
    carries no HSTS at all (RFC 6797), neither the redirect nor nginx's own health answer."""
    stack = own_certificate_stack
    _, headers, _ = http_get(stack, "/chat/lobby/")
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    script = (
        "from django.conf import settings as s; "
        "print(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD)"
    )
    django = stack.exec("app", "python", "manage.py", "shell", "--verbosity", "0", "-c", script)
    assert django.stdout.split() == ["31536000", "True", "True"]
    for path, host in (("/chat/lobby/", None), ("/nginx-health", LOOPBACK)):
        status, headers, _ = http_get(stack, path, scheme="http", host=host)
        assert status in (200, 301), (path, status)
        assert "Strict-Transport-Security" not in headers, (path, headers)


def test_own_certificate_ci_smoke_step_passes(own_certificate_stack) -> None:
    """The generated CI's smoke step, verbatim: https, wss and the redirect, verifying the
    certificate the CI's own step made."""
    passed = own_certificate_stack.run_workflow_step("Smoke test")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "ok  http:// redirects to https://" in passed.stdout
    assert "ok  websocket round trip" in passed.stdout


def test_own_certificate_no_service_logged_an_error(own_certificate_stack) -> None:
    assert error_lines(own_certificate_stack) == []


def test_wrong_certificate_stops_at_setup_and_the_site_keeps_serving(
    own_certificate_stack,
) -> None:
    """A certificate for another name in TLS_HOST_DIR: `up` fails at `setup`, whose log names
    the problem, and nginx keeps serving the certificate it has. (Last: it leaves the wrong one.)"""
    stack = own_certificate_stack
    before = served_certificate(stack, stack.tls_context)
    folder = stack.project / stack.env["TLS_HOST_DIR"]
    Authority().issue("other.example.com", folder / "fullchain.pem", folder / "privkey.pem")
    (folder / "privkey.pem").chmod(0o644)
    with pytest.raises(ComposeError) as refused:
        stack.up()
    assert "setup" in str(refused.value)
    setup_log = stack.logs("setup")
    assert f"tls.E005 {stack.env['TLS_CERTIFICATE']}" in setup_log, setup_log[-2000:]
    assert DOMAIN in setup_log
    assert "other.example.com" in setup_log
    assert served_certificate(stack, stack.tls_context).serial_number == before.serial_number
    assert http_get(stack, "/chat/lobby/")[0] == 200


# --- letsencrypt, compose ---------------------------------------------------------------------


class PebbleService:
    """pebble as a compose service beside the project, and the override file that adds it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir()
        self.override = folder / "compose.pebble.yaml"
        # pebble's own API is https, with a certificate from a throwaway CA certbot trusts.
        authority = Authority()
        authority.write_root(folder / "api-root.pem")
        authority.issue("pebble", folder / "api.pem", folder / "api.key")
        self.root: Path = folder / "root.pem"  # pebble's issuing root, made at its start

    @property
    def directory(self) -> str:
        """The ACME directory URL certbot is given (ACME_DIRECTORY)."""
        return f"https://pebble:{PEBBLE_API}/dir"

    def write(self, stack: ComposeStack) -> None:
        """pebble's config (validating on nginx's http port) and the override file."""
        config = {
            "pebble": {
                "listenAddress": f"0.0.0.0:{PEBBLE_API}",
                "managementListenAddress": f"0.0.0.0:{PEBBLE_MANAGEMENT}",
                "certificate": "/pebble/api.pem",
                "privateKey": "/pebble/api.key",
                "httpPort": stack.http_port,
                "tlsPort": 5001,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                "certificateValidityPeriod": NINETY_DAYS,
            }
        }
        (self.folder / "pebble.json").write_text(json.dumps(config))
        pebble = require_binary("pebble")
        override = {
            "services": {
                # The host's pebble (Debian's package) in the stack's Python image: a registry's
                # pebble image is not reachable here.
                "pebble": {
                    "image": "python:3.11-slim-bookworm",
                    "command": ["pebble", "-config", "/pebble/pebble.json"],
                    "environment": PEBBLE_ENV,
                    "volumes": [
                        f"{pebble}:/usr/local/bin/pebble:ro",
                        f"{self.folder}:/pebble:ro",
                    ],
                },
                # The CA resolves the site's name through Docker's DNS: here, to nginx.
                "nginx": {"networks": {"default": {"aliases": [DOMAIN]}}},
                # certbot (python-requests) trusts pebble's API certificate.
                "certbot": {
                    "environment": {"REQUESTS_CA_BUNDLE": "/pebble/api-root.pem"},
                    "volumes": [f"{self.folder}:/pebble:ro"],
                },
            }
        }
        self.override.write_text(yaml.safe_dump(override, sort_keys=False))

    def fetch_root(self, stack: ComposeStack) -> ssl.SSLContext:
        """pebble's root (a new one at each start), from its management port inside the network;
        a context that trusts it and nothing else."""
        script = (
            "import ssl, sys, urllib.request;"
            "c = ssl.create_default_context(cafile='/pebble/api-root.pem');"
            f"u = 'https://pebble:{PEBBLE_MANAGEMENT}/roots/0';"
            "sys.stdout.write(urllib.request.urlopen(u, context=c, timeout=10).read().decode())"
        )
        pem = stack.exec("pebble", "python", "-c", script).stdout
        self.root.write_text(pem)
        return ssl.create_default_context(cafile=str(self.root))


@pytest.fixture(scope="module")
def letsencrypt_stack(
    bake_once, compose_cli_argv: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ComposeStack, PebbleService]]:
    """https=letsencrypt (compose process manager), up as the generated CI runs it: certbot asks
    Let's Encrypt's staging CA (the CI's own step sets it) and nginx serves the self-signed one."""
    folder = tmp_path_factory.mktemp("containers-letsencrypt")
    pebble = PebbleService(folder / "pebble")
    stack = tls_stack(
        "compose", "letsencrypt", bake_once, compose_cli_argv, folder, pebble.override
    )
    pebble.write(stack)
    staged = stack.run_workflow_step("Let's Encrypt's staging CA")
    assert staged.returncode == 0, staged.stdout + staged.stderr
    # An operator's choice: nginx looks for a new certificate every second, not every minute.
    set_env_values(stack.project / ".env", {"TLS_WATCH_SECONDS": "1"})
    try:
        start(stack, "https=letsencrypt (compose), staging CA")
        yield stack, pebble
    finally:
        stack.down()


def test_staging_ca_unreachable_logs_one_error_and_serves_self_signed(letsencrypt_stack) -> None:
    """As in the generated CI: certbot cannot reach the staging CA, says so in one ERROR line
    naming the CA and the certificate nginx keeps serving, and the stack is healthy on `setup`'s
    self-signed certificate."""
    stack, _ = letsencrypt_stack
    assert "no valid certificate yet: wrote a self-signed one" in stack.logs("setup")
    lines = wait_until(
        lambda: [line for line in stack.logs("certbot").splitlines() if "ERROR" in line],
        timeout=120, interval=1, what="certbot's ERROR line",
    )  # fmt: skip
    assert len(lines) == 1, lines
    assert STAGING in lines[0]
    assert "nginx keeps serving" in lines[0]
    for container in stack.containers():
        service = container["Config"]["Labels"]["com.docker.compose.service"]
        if service != "setup" and service != "pebble":
            assert container["State"]["Health"]["Status"] == "healthy", service


def test_letsencrypt_ci_smoke_step_passes_on_the_self_signed_certificate(
    letsencrypt_stack,
) -> None:
    """The generated CI's smoke step, verbatim: it copies the certificate nginx serves out of
    the container (`docker compose cp`) and verifies https and wss against it."""
    stack, _ = letsencrypt_stack
    passed = stack.run_workflow_step("Smoke test")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "ok  websocket round trip" in passed.stdout


@pytest.fixture(scope="module")
def going_live(letsencrypt_stack) -> tuple[ComposeStack, ssl.SSLContext, float]:
    """ACME_DIRECTORY names pebble and the operator runs `up --wait` again: certbot (recreated)
    gets pebble's certificate, and nginx serves it. Returns the stack, a context trusting only
    pebble's root, and the seconds from `up` to that certificate served."""
    stack, pebble = letsencrypt_stack
    set_env_values(stack.project / ".env", {"ACME_DIRECTORY": pebble.directory})
    began = time.monotonic()
    stack.up()
    stack.tls_context = pebble.fetch_root(stack)

    def pebble_certificate_served() -> bool:
        try:
            served_certificate(stack, stack.tls_context)
        except ssl.SSLCertVerificationError:
            return False
        return True

    wait_until(
        steadily(pebble_certificate_served), timeout=120, interval=0.5, what="pebble's certificate"
    )
    seconds = time.monotonic() - began
    report(f"containers, https=letsencrypt (compose): pebble's certificate served {seconds:.1f} s")
    return stack, stack.tls_context, seconds


def test_certbot_got_the_certificate_and_nginx_reloaded_it(going_live) -> None:
    """The certificate served is pebble's, for the site's name; deploy/acme.py installed it and
    nginx's watcher (from /docker-entrypoint.d) reloaded nginx; page and wss work with it."""
    stack, context, _ = going_live
    leaf = served_certificate(stack, context)
    assert "Pebble" in leaf.issuer.rfc4514_string()
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [DOMAIN]
    assert f"deploy/acme.py: installed a certificate for {DOMAIN}" in stack.logs("certbot")
    assert "changed: nginx reloads it" in stack.logs("nginx")
    assert http_get(stack, "/chat/lobby/")[0] == 200
    assert asyncio.run(echo(stack, "acme", "over acme"))["message"] == "over acme"


def test_renewal_in_containers_drops_nothing(going_live) -> None:
    """`docker compose exec certbot python deploy/acme.py renew --force-renewal` while pages load
    and a WebSocket stays open: a new certificate is served, no page load fails, the socket
    works."""
    stack, context, _ = going_live
    before = served_certificate(stack, context)
    seen = asyncio.run(
        pages_during(
            stack,
            lambda: stack.exec("certbot", "python", "deploy/acme.py", "renew", "--force-renewal"),
            lambda: served_certificate(stack, context).serial_number != before.serial_number,
            timeout=30,
        )
    )
    assert seen.failures == []
    assert seen.loaded > 10
    assert seen.echoed["message"] == "after the reload"
    report(
        f"containers, https=letsencrypt (compose): forced renewal served {seen.seconds:.1f} s "
        f"after it began; {seen.loaded} pages loaded meanwhile, 0 failed; the open WebSocket "
        "kept working"
    )


def test_letsencrypt_no_service_logged_an_unexpected_error(going_live) -> None:
    """Beyond certbot's line about the unreachable staging CA, no service logged an error."""
    stack, _, _ = going_live
    assert error_lines(stack, allowed=STAGING) == []


def test_certbot_stops_at_once_on_sigterm(going_live) -> None:
    """`docker compose stop certbot`: the loop (its container's PID 1) ends on SIGTERM, exit 0,
    well inside the grace period, instead of waiting it out for a kill -9 (exit 137), possibly
    in the middle of an issuance. (Last: it stops certbot.)"""
    stack, _, _ = going_live
    began = time.monotonic()
    stack.compose("stop", "certbot")
    seconds = time.monotonic() - began
    (container,) = stack.containers_of("certbot")
    assert container["State"]["ExitCode"] == 0, container["State"]
    assert seconds < 10, seconds
    report(f"containers, https=letsencrypt: `stop certbot` in {seconds:.1f} s, exit 0")
