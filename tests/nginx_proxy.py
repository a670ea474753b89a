"""Debian's nginx in the foreground on high ports, serving the site in deploy/nginx exactly
as render-site.sh renders it for production, with a self-signed certificate made here
(tests and benchmarks of replicas behind the proxy)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).parents[1]
RENDER = REPO / "deploy" / "nginx" / "render-site.sh"


@dataclass(frozen=True)
class Proxy:
    url: str  # https://127.0.0.1:PORT
    http_url: str  # the plain-HTTP listener, which only redirects
    ca_file: Path  # the certificate to trust (SSL_CERT_FILE, httpx verify=)
    prefix: Path  # nginx's -p directory: logs/ holds its access and error logs

    def tls(self) -> ssl.SSLContext:
        """A client's TLS context that trusts this proxy's certificate and nothing else."""
        return ssl.create_default_context(cafile=self.ca_file)

    def client(
        self, source: str | None = None, tls: ssl.SSLContext | None = None, **kw: Any
    ) -> httpx.Client:
        """A client of the proxy that verifies its certificate (`tls`: a context to share
        between many clients), from the loopback address `source` when given (127.0.0.0/8
        is all ours: the backend then tells clients apart only by what nginx says)."""
        transport = httpx.HTTPTransport(verify=tls or self.tls(), local_address=source)
        return httpx.Client(base_url=self.url, transport=transport, **{"timeout": 60, **kw})


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
    )
    if found is None:
        if os.environ.get("KUMULUS_E2E_REQUIRED"):
            pytest.fail("nginx required (apt-get install nginx)")
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A certificate for `name`, 127.0.0.1 and ::1, signed by its own key: (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(name),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _main_conf(prefix: Path, site: Path) -> str:
    """What Debian's /etc/nginx/nginx.conf does for the site, confined to `prefix`."""
    user = "user root root;\n" if os.geteuid() == 0 else ""  # workers use files made here
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'logs' / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        f"    access_log {prefix / 'logs' / 'access.log'};\n{temp}\n"
        f"    include {site};\n"
        "}\n"
    )


@contextmanager
def nginx_proxy(prefix: Path, replicas: Sequence[str]) -> Iterator[Proxy]:
    """nginx in front of `replicas` ("127.0.0.1:8081", ...) until the block ends."""
    nginx = nginx_binary()
    cert, key = self_signed(prefix / "tls")
    https_port, http_port = free_port(), free_port()
    site = subprocess.run(
        [
            str(RENDER),
            "--server-name", "localhost",
            "--replicas", ",".join(replicas),
            "--cert", str(cert),
            "--key", str(key),
            "--https-port", str(https_port),
            "--http-port", str(http_port),
        ],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    (prefix / "tmp").mkdir(exist_ok=True)
    (prefix / "kumulus.conf").write_text(site)
    conf = prefix / "nginx.conf"
    conf.write_text(_main_conf(prefix, prefix / "kumulus.conf"))
    command = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log")]
    test = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert test.returncode == 0, test.stderr
    proc = subprocess.Popen(
        [*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (prefix / "logs" / "error.log").read_text()
                    raise RuntimeError(f"nginx did not start: {log[-2000:]}") from None
                time.sleep(0.1)
        yield Proxy(
            f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", cert, prefix
        )
    finally:
        proc.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
