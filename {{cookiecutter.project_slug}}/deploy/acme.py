"""Get and renew the site's certificate from an ACME CA (Let's Encrypt) with certbot.

Usage:
    python deploy/acme.py bootstrap     `setup`: a short-lived self-signed certificate where
                                        nginx reads one, when there is no valid one yet
    python deploy/acme.py loop          the `certbot` service: renew now, then every
                                        ACME_RENEW_SECONDS
    python deploy/acme.py renew [--force-renewal]    once (e.g. `docker compose exec certbot ...`)
    python deploy/acme.py install       certbot's deploy hook: copy a new certificate into place

Settings from the environment (compose: .env): ACME_DIRECTORY (the CA), ACME_EMAIL, ACME_WEBROOT
(the `acme` volume nginx serves at /.well-known/acme-challenge/), ACME_STATE_DIR (certbot's
account and certificates), NGINX_SERVER_NAME (the names), TLS_CERTIFICATE and TLS_CERTIFICATE_KEY
(where nginx reads them). certbot proves each name over plain http (HTTP-01, webroot) and keeps its
own copies; `install` checks the new pair (deploy/tls_check.py) and replaces nginx's files, each in
one rename, and nginx's watcher (deploy/nginx/reload-on-new-certificate.sh) reloads nginx without
dropping a connection. A failed renewal changes nothing: the old certificate keeps serving (certbot
renews 30 days before expiry; a failed try is retried within the hour) and an ERROR line says why.
"""

import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tls_check import check, from_environment

# Long enough for certbot's first try and a few retries, short enough that nobody keeps it.
SELF_SIGNED_DAYS = 7
# certbot's name for the site's certificate (its folder under ACME_STATE_DIR/config/live/).
CERT_NAME = "site"
# After a failed try, the next one comes within the hour: Let's Encrypt allows 5 failed
# validations per name and hour.
RETRY_SECONDS = 3600


def log(message: str) -> None:
    """One line on stdout (the service's log), as every line of this script."""
    print(f"deploy/acme.py: {message}", flush=True)


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` in one rename: nginx (or a reload) never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.new")
    temporary.write_bytes(data)
    temporary.chmod(mode)
    os.replace(temporary, path)


def bootstrap(env: dict[str, str]) -> int:
    """Write a self-signed certificate where nginx reads one, unless a valid one is there.

    nginx cannot start its TLS server without a certificate, and certbot cannot get one before
    nginx serves the challenges: this one lets nginx start; browsers refuse it until certbot's
    replaces it (seconds later, when the name points here).
    """
    tls = from_environment(env)
    if not check(tls):
        log(f"ok, {tls.certificate_path} is valid for {' '.join(tls.names)}")
        return 0
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, tls.names[0])])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in tls.names]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomically(tls.key_path, key_pem, 0o640)
    write_atomically(
        tls.certificate_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644
    )
    log(
        f"no valid certificate yet: wrote a self-signed one for {' '.join(tls.names)} to "
        f"{tls.certificate_path}, valid {SELF_SIGNED_DAYS} days, until certbot's replaces it"
    )
    return 0


def certbot_argv(env: dict[str, str], *extra: str) -> list[str]:
    """certbot's command: one certificate for every name, proved over http through the webroot."""
    state = Path(env["ACME_STATE_DIR"])
    hook = f"{shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve()))} install"
    email = env.get("ACME_EMAIL", "").strip()
    contact = ["--email", email] if email else ["--register-unsafely-without-email"]
    names = [argument for name in env["NGINX_SERVER_NAME"].split() for argument in ("-d", name)]
    return [
        shutil.which("certbot") or "certbot",
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "--no-eff-email",
        *contact,
        "--server",
        env["ACME_DIRECTORY"],
        "--config-dir",
        str(state / "config"),
        "--work-dir",
        str(state / "work"),
        "--logs-dir",
        str(state / "logs"),
        "--webroot",
        "--webroot-path",
        env["ACME_WEBROOT"],
        "--cert-name",
        CERT_NAME,
        # Nothing to do until 30 days before expiry: safe to run as often as we like.
        "--keep-until-expiring",
        "--deploy-hook",
        hook,
        *names,
        *extra,
    ]


def renew(env: dict[str, str], *extra: str) -> int:
    """Run certbot once; on failure say so loudly, and leave nginx's certificate as it is."""
    result = subprocess.run(certbot_argv(env, *extra), check=False)  # noqa: S603 - our argv
    if result.returncode == 0:
        return 0
    tls = from_environment(env)
    try:
        serving = x509.load_pem_x509_certificates(tls.certificate_path.read_bytes())[0]
        expiry = f"it expires {serving.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    except (OSError, ValueError, IndexError):
        expiry = "it cannot be read"
    log(
        f"ERROR certbot failed (exit {result.returncode}) to get a certificate for "
        f"{env['NGINX_SERVER_NAME']} from {env['ACME_DIRECTORY']}; nginx keeps serving "
        f"{tls.certificate_path} ({expiry}); certbot's log: "
        f"{Path(env['ACME_STATE_DIR']) / 'logs' / 'letsencrypt.log'}"
    )
    return 1


def install(env: dict[str, str]) -> int:
    """certbot's deploy hook: check the new certificate, then put it where nginx reads it."""
    lineage = Path(env["RENEWED_LINEAGE"])
    candidate = from_environment(env)
    candidate.certificate_path = lineage / "fullchain.pem"
    candidate.key_path = lineage / "privkey.pem"
    problems = check(candidate)
    if problems:
        log("ERROR the new certificate is not installed: " + "; ".join(problems))
        return 1
    target = from_environment(env)
    # The key first: nginx reloads when the certificate changes, and finds the pair complete.
    write_atomically(target.key_path, candidate.key_path.read_bytes(), 0o640)
    write_atomically(target.certificate_path, candidate.certificate_path.read_bytes(), 0o644)
    leaf = candidate.chain[0]
    log(
        f"installed a certificate for {' '.join(candidate.names)} issued by "
        f"{leaf.issuer.rfc4514_string()}, valid until {leaf.not_valid_after_utc:%Y-%m-%d}; "
        "nginx reloads it"
    )
    return 0


def loop(env: dict[str, str]) -> int:
    """Renew now, then every ACME_RENEW_SECONDS (after a failure: within the hour), for as long
    as the service runs."""
    interval = int(env.get("ACME_RENEW_SECONDS") or 43200)
    while True:
        failed = renew(env)
        time.sleep(min(interval, RETRY_SECONDS) if failed else interval)


def main(argv: list[str]) -> int:
    """Run the subcommand `argv` names."""
    env = dict(os.environ)
    commands = {"bootstrap": bootstrap, "renew": renew, "install": install, "loop": loop}
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "renew":
        return renew(env, *argv[1:])
    return commands[argv[0]](env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
