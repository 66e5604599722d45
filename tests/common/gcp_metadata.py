"""A stand-in for the GCE metadata server in front of fake-gcs-server, for the
credential tests: it hands out an OAuth token the way GKE Workload Identity does, and
forwards every other request to the emulator, writing one line per request
("METHOD PATH AUTHORIZATION") to a log so the test can see which token each carried.

Usage: gcp_metadata.py PORT UPSTREAM_URL LOG TOKEN|--refuse
With --refuse, token requests are answered 403 (no service account for this pod)."""
import http.client
import http.server
import json
import sys
import threading
import urllib.parse

port, upstream, log_path, token = int(sys.argv[1]), urllib.parse.urlparse(sys.argv[2]), sys.argv[3], sys.argv[4]
lock = threading.Lock()


def record(line):
    with lock, open(log_path, "a") as log:
        log.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def token(self):
        record(f"TOKEN {self.headers.get('Metadata-Flavor', '')}")
        if token == "--refuse" or self.headers.get("Metadata-Flavor") != "Google":
            self.reply(403, b"no service account for this workload")
        else:
            body = json.dumps({"access_token": token, "expires_in": 3600, "token_type": "Bearer"}).encode()
            self.reply(200, body, [("Content-Type", "application/json")])

    def forward(self):
        if self.path.startswith("/computeMetadata/v1/instance/service-accounts/default/token"):
            return self.token()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        record(f"{self.command} {self.path.split('?')[0]} {self.headers.get('Authorization', '-')}")
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        connection.request(self.command, self.path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        passed = [(k, v) for k, v in response.getheaders() if k.lower() not in ("transfer-encoding", "connection", "content-length")]
        # A resumable session URI points at the emulator: keep the client talking to us.
        passed = [(k, v.replace(f"{upstream.hostname}:{upstream.port}", f"127.0.0.1:{port}")) for k, v in passed]
        self.reply(response.status, payload, passed)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = forward


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
