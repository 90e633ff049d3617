"""A stand-in external model for the endpoint tests (pipeline/endpoints.py): an HTTP(S) predict
server on a chosen local address, and a self-signed certificate for a test host name."""
from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class PredictServer:
    """An HTTP(S) server on `address`:`port` (IPv4 or IPv6) recording (path, Host header) per
    POST in `hits` and answering one empty result per image, after `delay` seconds."""

    def __init__(self, address: str, port: int = 0, tls: ssl.SSLContext | None = None, delay: float = 0):
        self.hits: list[tuple[str, str]] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                urls = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["images"]
                hits.append((self.path, self.headers["Host"]))
                time.sleep(delay)
                body = json.dumps({"results": [{"regions": []} for _ in urls]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class HTTPServer(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

        self.server = HTTPServer((address, port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def hosts(self) -> list[str]:
        """The Host header of each POST."""
        return [host for _, host in self.hits]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def self_signed(tmp_path, name: str) -> tuple[str, str]:
    """(certificate, key) files of a self-signed certificate for `name`; skips without openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)
