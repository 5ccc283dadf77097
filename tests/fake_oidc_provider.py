#!/usr/bin/env python3
"""A small stand-in for an OIDC identity provider (Keycloak, Auth0, the plgd
mock OAuth server), for tests of dpsd's remote operator keys.

It serves what a relying party reads from a real provider:
  GET /.well-known/openid-configuration  issuer, jwks_uri, token_endpoint
  GET /keys                              the JWKS: EC P-256 signature keys,
                                         each with kid, kty, crv, x, y, use, alg;
                                         and, as real providers list, an ES384
                                         (P-384) signature key and an RSA-OAEP
                                         encryption key, never used to sign
and what a test needs to drive it:
  GET  /_token?owner=O[&lifetime=S][&aud=A]  a token (ES256, the current key's
                                         kid) as a real provider would issue it
  POST /_rotate[?keep=1]                 a new current key; the old one stays
                                         in the JWKS only with keep=1
  GET  /_stats                           {"discovery": N, "jwks": N}: requests served
Keys are made and tokens signed with the openssl tool, so the script needs
nothing beyond python3's standard library. With --tls-cert and --tls-key it
speaks HTTPS, as real providers do. The chosen port is written to
--port-file once the server listens; requests are logged to stderr.
"""
import argparse
import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def der_integers(der):
    """The two INTEGERs of a DER ECDSA-Sig-Value, as 32-byte big-endian."""
    assert der[0] == 0x30
    offset = 2 if der[1] < 0x80 else 3
    out = []
    for _ in range(2):
        assert der[offset] == 0x02
        length = der[offset + 1]
        value = der[offset + 2:offset + 2 + length]
        out.append(value.lstrip(b"\0").rjust(32, b"\0"))
        offset += 2 + length
    return out


def openssl(*arguments):
    return subprocess.run(["openssl"] + list(arguments), check=True, capture_output=True).stdout


def others(folder):
    """Keys a provider publishes beside its signing keys: other curves, encryption."""
    p384 = os.path.join(folder, "es384.pem")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", p384)
    point = openssl("pkey", "-in", p384, "-pubout", "-outform", "DER")[-97:]
    rsa = os.path.join(folder, "enc.pem")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa)
    modulus = openssl("rsa", "-in", rsa, "-noout", "-modulus").decode().strip().split("=")[1]
    return [{"kid": "es384", "kty": "EC", "crv": "P-384", "use": "sig", "alg": "ES384",
             "x": b64url(point[1:49]), "y": b64url(point[49:97])},
            {"kid": "enc", "kty": "RSA", "use": "enc", "alg": "RSA-OAEP",
             "n": b64url(bytes.fromhex(modulus)), "e": "AQAB"}]


class Keys:
    def __init__(self, folder):
        self.folder = folder
        self.lock = threading.Lock()
        self.serial = 0
        self.published = []  # (kid, jwk) newest last
        self.current = None  # (kid, key file)
        self.others = others(folder)

    def rotate(self, keep):
        with self.lock:
            self.serial += 1
            kid = "key-%d" % self.serial
            key_file = os.path.join(self.folder, kid + ".pem")
            subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-out", key_file], check=True,
                           capture_output=True)
            der = subprocess.run(["openssl", "pkey", "-in", key_file, "-pubout", "-outform", "DER"],
                                 check=True, capture_output=True).stdout
            point = der[-65:]
            assert point[0] == 4
            jwk = {"kid": kid, "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
                   "x": b64url(point[1:33]), "y": b64url(point[33:65])}
            self.published = (self.published if keep else []) + [(kid, jwk)]
            self.current = (kid, key_file)
            return kid

    def jwks(self):
        with self.lock:
            return {"keys": self.others + [jwk for _, jwk in self.published]}

    def token(self, claims):
        with self.lock:
            kid, key_file = self.current
        header = {"alg": "ES256", "typ": "JWT", "kid": kid}
        signed = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_file],
                             input=signed.encode(), check=True, capture_output=True).stdout
        r, s = der_integers(der)
        return signed + "." + b64url(r + s)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, document):
        body = (json.dumps(document) if not isinstance(document, str) else document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(document, str)
                         else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        server = self.server
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/.well-known/openid-configuration":
            with server.stats_lock:
                server.stats["discovery"] += 1
            self.answer(200, {"issuer": server.issuer, "jwks_uri": server.base + "/keys",
                              "token_endpoint": server.base + "/_token",
                              "id_token_signing_alg_values_supported": ["ES256"]})
        elif url.path == "/keys":
            with server.stats_lock:
                server.stats["jwks"] += 1
            self.answer(200, server.keys.jwks())
        elif url.path == "/_stats":
            with server.stats_lock:
                self.answer(200, dict(server.stats))
        elif url.path == "/_token" and "owner" in query:
            now = int(time.time())
            claims = {"iss": server.issuer, "sub": query["owner"],
                      "aud": query.get("aud", server.audience), "iat": now,
                      "exp": now + int(query.get("lifetime", "3600"))}
            self.answer(200, server.keys.token(claims))
        else:
            self.answer(404, {"error": "not found"})

    def do_POST(self):
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/_rotate":
            self.answer(200, {"kid": self.server.keys.rotate(query.get("keep") == "1")})
        else:
            self.answer(404, {"error": "not found"})

    def log_message(self, format, *args):
        sys.stderr.write("fake-oidc: " + (format % args) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--issuer", help="default: the server's own base URL")
    parser.add_argument("--audience", default="dps-api")
    parser.add_argument("--tls-cert", help="PEM certificate (then chain): serve HTTPS")
    parser.add_argument("--tls-key", help="its PEM private key")
    arguments = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = ThreadingHTTPServer(("127.0.0.1", arguments.port), Handler)
    server.daemon_threads = True
    scheme = "http"
    if arguments.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(arguments.tls_cert, arguments.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    server.base = "%s://127.0.0.1:%d" % (scheme, server.server_address[1])
    server.issuer = arguments.issuer or server.base
    server.audience = arguments.audience
    server.stats = {"discovery": 0, "jwks": 0}
    server.stats_lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="fake-oidc.") as folder:
        server.keys = Keys(folder)
        server.keys.rotate(keep=False)
        with open(arguments.port_file + ".tmp", "w") as out:
            out.write("%d\n" % server.server_address[1])
        os.rename(arguments.port_file + ".tmp", arguments.port_file)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
