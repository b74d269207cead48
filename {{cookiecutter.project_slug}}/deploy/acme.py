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
dropping a connection. After every certbot run, certbot's current certificate is installed if nginx
serves another (a hook that failed or was killed, a `tls` volume made anew, a `letsencrypt` volume
restored: certbot itself runs its hook only for a new certificate). A certificate from another CA
than ACME_DIRECTORY (staging, before going live) is replaced at once, not when due. A failed
renewal changes nothing: the old certificate keeps serving (certbot renews 30 days before expiry;
a failed try is retried within the hour) and an ERROR line says why.
"""

import os
import re
import shlex
import shutil
import signal
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
    """Replace `path` in one rename: nginx (or a reload) never reads half a file. The new file
    has `mode` from its creation: a key is never readable by others, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.new")
    temporary.unlink(missing_ok=True)
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as file:
        file.write(data)
    temporary.chmod(mode)  # the umask may have taken bits `mode` asks for
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


def lineage(env: dict[str, str]) -> Path:
    """certbot's folder of the current certificate and key (links into its archive)."""
    return Path(env["ACME_STATE_DIR"]) / "config" / "live" / CERT_NAME


def issuing_ca(env: dict[str, str]) -> str | None:
    """The directory URL certbot got its certificate from (its renewal config), if any."""
    config = Path(env["ACME_STATE_DIR"]) / "config" / "renewal" / f"{CERT_NAME}.conf"
    try:
        found = re.search(r"^server = (\S+)$", config.read_text(), flags=re.MULTILINE)
    except OSError:
        return None
    return found.group(1) if found else None


def renew(env: dict[str, str], *extra: str) -> int:
    """Run certbot once, then make sure nginx serves certbot's certificate; on failure say so
    loudly, and leave nginx's certificate as it is."""
    issuer = issuing_ca(env)
    if issuer and issuer != env["ACME_DIRECTORY"] and "--force-renewal" not in extra:
        log(f"the certificate is from {issuer}: asking {env['ACME_DIRECTORY']} for one now")
        extra = (*extra, "--force-renewal")
    result = subprocess.run(certbot_argv(env, *extra), check=False)  # noqa: S603 - our argv
    if result.returncode == 0:
        return catch_up(env)
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


def catch_up(env: dict[str, str]) -> int:
    """Install certbot's current certificate when nginx serves another one."""
    current = lineage(env) / "fullchain.pem"
    served = from_environment(env).certificate_path
    if not current.is_file() or (served.is_file() and served.read_bytes() == current.read_bytes()):
        return 0
    log(f"{served} is not certbot's current certificate: installing that")
    return install_from(lineage(env), env)


def install(env: dict[str, str]) -> int:
    """certbot's deploy hook (a new certificate in RENEWED_LINEAGE): install it."""
    return install_from(Path(env["RENEWED_LINEAGE"]), env)


def install_from(folder: Path, env: dict[str, str]) -> int:
    """Check the certificate in certbot's `folder`, then put it where nginx reads it."""
    candidate = from_environment(env)
    candidate.certificate_path = folder / "fullchain.pem"
    candidate.key_path = folder / "privkey.pem"
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
    # The container's PID 1, which the kernel spares every signal it has no handler for: without
    # this, `docker compose stop` would wait its grace period and then kill -9.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
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
