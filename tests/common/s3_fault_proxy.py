#!/usr/bin/env python3
"""A reverse proxy for object-store requests that injects the faults a store does.

    python3 s3_fault_proxy.py --port P --upstream 127.0.0.1:Q [--dialect s3|gcs|azure] \
        [--rule KIND:ACTION[:COUNT]]... [--stats FILE]

Each request is read whole from the client (its body by Content-Length, or its
chunked framing as it is) and forwarded verbatim, headers unchanged so that SigV4
signatures still verify upstream, over a new upstream connection; the response is
relayed with its body and the client connection is closed (`Connection: close`).

KIND selects requests; --dialect (default s3) says how each store spells them:
            s3                               gcs (JSON API)                      azure (Blob)
  create    POST ?uploads                    POST uploadType=resumable           (none: blocks need no start)
  part      PUT ?partNumber&uploadId         PUT ?upload_id, Content-Range .../* PUT ?comp=block
  complete  POST ?uploadId                   PUT ?upload_id, Content-Range .../N PUT ?comp=blocklist
  sidecar   PUT of a key ending .manifest.json (gcs: POST uploadType=media with such a name)
  put       any other PUT of an object (path-style /bucket/key; gcs: any other uploadType=media)
  any       every request
With --dialect gcs, as a reverse proxy in front of Cloud Storage would: the request's
Host header is set to the upstream's (fake-gcs-server reads any other host as a bucket
name), and a Location header naming the upstream (a resumable session) is rewritten to
name the proxy, so that the session's chunks come through it too. S3 and Azure requests
are forwarded unchanged: their signatures cover them.
ACTION:
  slowdown  answer 503 with an S3 XML error, Code SlowDown
  internal  answer 500 with an S3 XML error, Code InternalError
  cut       read about half the request body, then close without answering
  stall     read the whole request, never answer; the socket stays open until exit
  lost      forward the request and read the server's answer, then close without
            relaying it: the request took effect but its answer was lost
COUNT: how many matching requests get the fault (default 1; 0: every one, for ever).
Rules apply in order; the first matching rule with budget left wins.

--stats FILE is rewritten atomically after every request:
  {"requests": n, "faults": {"part:slowdown": n, ...}}
`ready` is printed on stdout once listening. SIGUSR1 clears all rules (pass-through).
Python 3 standard library only.
"""

import argparse
import json
import os
import signal
import socket
import sys
import threading
from urllib.parse import parse_qs, urlsplit

KINDS = ("create", "part", "complete", "sidecar", "put", "any")
ACTIONS = ("slowdown", "internal", "cut", "stall", "lost")
ERRORS = {
    "slowdown": (503, "Service Unavailable", "SlowDown", "Please reduce your request rate."),
    "internal": (500, "Internal Server Error", "InternalError", "We encountered an internal error. Please try again."),
}
MAX_HEADER = 64 * 1024


class Rule:
    def __init__(self, text):
        fields = text.split(":")
        if len(fields) not in (2, 3) or fields[0] not in KINDS or fields[1] not in ACTIONS:
            raise argparse.ArgumentTypeError(
                f"bad rule {text!r}: KIND:ACTION[:COUNT], KIND one of {', '.join(KINDS)}, ACTION one of {', '.join(ACTIONS)}"
            )
        self.kind, self.action = fields[0], fields[1]
        try:
            self.count = int(fields[2]) if len(fields) == 3 else 1
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad rule {text!r}: COUNT must be a whole number") from None
        if self.count < 0:
            raise argparse.ArgumentTypeError(f"bad rule {text!r}: COUNT must be 0 or more")
        self.used = 0

    def name(self):
        return f"{self.kind}:{self.action}"

    def has_budget(self):
        return self.count == 0 or self.used < self.count


class State:
    def __init__(self, rules, stats_path):
        self.lock = threading.Lock()
        self.rules = rules
        self.stats_path = stats_path
        self.requests = 0
        self.faults = {}
        self.stalled = []  # sockets kept open until the proxy exits

    def decide(self, kinds):
        """Counts a request and returns the action of the rule it meets, if any."""
        with self.lock:
            self.requests += 1
            chosen = None
            for rule in self.rules:
                if rule.kind in kinds and rule.has_budget():
                    rule.used += 1
                    chosen = rule
                    break
            if chosen is not None:
                self.faults[chosen.name()] = self.faults.get(chosen.name(), 0) + 1
            self.write_stats()
            return chosen.action if chosen else None

    def clear(self):
        with self.lock:
            self.rules = []

    def write_stats(self):
        if not self.stats_path:
            return
        temporary = f"{self.stats_path}.{os.getpid()}.tmp"
        with open(temporary, "w") as file:
            json.dump({"requests": self.requests, "faults": dict(sorted(self.faults.items()))}, file)
        os.replace(temporary, self.stats_path)


class Closed(Exception):
    """The peer closed the connection before a whole message arrived."""


class Reader:
    """Buffered reads from a socket that keep the bytes exactly as they came."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise Closed()
        self.buffer += chunk

    def until(self, marker, limit=MAX_HEADER):
        while marker not in self.buffer:
            if len(self.buffer) > limit:
                raise Closed()
            self.fill()
        at = self.buffer.index(marker) + len(marker)
        data, self.buffer = self.buffer[:at], self.buffer[at:]
        return data

    def exactly(self, n):
        parts, remaining = [], n
        if self.buffer:
            taken = self.buffer[:remaining]
            self.buffer = self.buffer[len(taken):]
            parts.append(taken)
            remaining -= len(taken)
        while remaining > 0:
            chunk = self.sock.recv(min(remaining, 1 << 16))
            if not chunk:
                raise Closed()
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts)

    def rest(self):
        parts = [self.buffer]
        self.buffer = b""
        while True:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)

    def chunked(self):
        """A chunked body with its framing and trailers, byte for byte."""
        parts = []
        while True:
            line = self.until(b"\r\n")
            parts.append(line)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:
                    trailer = self.until(b"\r\n")
                    parts.append(trailer)
                    if trailer == b"\r\n":
                        return b"".join(parts)
            parts.append(self.exactly(size + 2))


def parse_head(head):
    """Start line and headers (lower-cased names, values) of a message head."""
    lines = head.decode("iso-8859-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


DIALECTS = ("s3", "gcs", "azure")


def kinds_of(method, target, headers, dialect):
    split = urlsplit(target)
    query = parse_qs(split.query, keep_blank_values=True)
    path = split.path
    if dialect == "gcs":
        kind = gcs_kind(method, query, headers)
    elif dialect == "azure":
        kind = azure_kind(method, path, query)
    else:
        kind = s3_kind(method, path, query)
    return {"any", kind} if kind else {"any"}


def gcs_kind(method, query, headers):
    upload_type = query.get("uploadType", [""])[0]
    name = query.get("name", [""])[0]
    if method == "POST" and upload_type == "resumable":
        return "create"
    if method == "PUT" and "upload_id" in query:
        return "part" if headers.get("content-range", "").endswith("/*") else "complete"
    if method == "POST" and upload_type == "media":
        return "sidecar" if name.endswith(".manifest.json") else "put"
    return None


def azure_kind(method, path, query):
    if method != "PUT":
        return None
    comp = query.get("comp", [""])[0]
    if comp == "block":
        return "part"
    if comp == "blocklist":
        return "complete"
    if comp or path.strip("/").count("/") < 2:  # /account/container/blob
        return None
    return "sidecar" if path.endswith(".manifest.json") else "put"


def s3_kind(method, path, query):
    is_object = path.strip("/").count("/") >= 1  # /bucket/key (path-style)
    if method == "POST" and "uploads" in query:
        kind = "create"
    elif method == "PUT" and "partNumber" in query and "uploadId" in query:
        kind = "part"
    elif method == "POST" and "uploadId" in query:
        kind = "complete"
    elif method == "PUT" and path.endswith(".manifest.json"):
        kind = "sidecar"
    elif method == "PUT" and is_object:
        kind = "put"
    else:
        kind = None
    return kind


def error_response(action, target, method):
    status, reason, code, message = ERRORS[action]
    resource = urlsplit(target).path
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{resource}</Resource><RequestId>fault-proxy</RequestId></Error>"
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head if method == "HEAD" else head + body


def body_length(headers):
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return None
    return int(headers.get("content-length", "0") or "0")


def relay_response(upstream, client, method, rewrite):
    """Copies the upstream response (skipping 1xx interim answers) to the client, closing
    after it (with no client: reads it whole and drops it); `rewrite` is None or
    (upstream URL, proxy URL) for Location headers."""
    reader = Reader(upstream)
    while True:
        head = reader.until(b"\r\n\r\n")
        start, headers = parse_head(head)
        status = int(start.split(" ")[1])
        if 100 <= status < 200:
            continue
        break
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = reader.chunked()
    elif "content-length" in headers:
        body = reader.exactly(int(headers["content-length"]))
    else:
        body = reader.rest()
    lines = head.decode("iso-8859-1").split("\r\n")
    kept = [line for line in lines[1:] if line and line.split(":", 1)[0].strip().lower() not in ("connection", "keep-alive")]
    if rewrite:
        kept = [
            line.replace(rewrite[0], rewrite[1], 1) if line.split(":", 1)[0].strip().lower() == "location" else line for line in kept
        ]
    new_head = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("iso-8859-1")
    if client is not None:
        client.sendall(new_head + body)


def with_host(head, host):
    """The message head with its Host header set to `host`."""
    lines = head.decode("iso-8859-1").split("\r\n")
    lines = [f"Host: {host}" if line.lower().startswith("host:") else line for line in lines]
    return "\r\n".join(lines).encode("iso-8859-1")


def handle(client, state, upstream_address, dialect, rewrite):
    keep_open = False
    try:
        reader = Reader(client)
        head = reader.until(b"\r\n\r\n")
        start, headers = parse_head(head)
        method, target = start.split(" ")[0], start.split(" ")[1]
        action = state.decide(kinds_of(method, target, headers, dialect))
        if headers.get("expect", "").lower() == "100-continue":
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        length = body_length(headers)
        if action == "cut":
            half = (length or 0) // 2
            if half:
                reader.exactly(half)
            elif length is None:
                reader.until(b"\r\n")
            return
        body = reader.chunked() if length is None else reader.exactly(length)
        if action == "stall":
            keep_open = True
            with state.lock:
                state.stalled.append(client)
            return
        if action in ERRORS:
            client.sendall(error_response(action, target, method))
            return
        host, port = upstream_address
        if rewrite:
            head = with_host(head, f"{host}:{port}")
        with socket.create_connection((host, port), timeout=600) as upstream:
            upstream.sendall(head + body)
            if action == "lost":
                relay_response(upstream, None, method, rewrite)
                return
            relay_response(upstream, client, method, rewrite)
    except (Closed, OSError, ValueError, IndexError):
        pass
    finally:
        if not keep_open:
            try:
                client.close()
            except OSError:
                pass


def main():
    parser = argparse.ArgumentParser(description="object-store reverse proxy injecting faults")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the store's server")
    parser.add_argument("--dialect", choices=DIALECTS, default="s3", help="how the store spells its requests")
    parser.add_argument("--rule", type=Rule, action="append", default=[], help="KIND:ACTION[:COUNT]")
    parser.add_argument("--stats", help="JSON file rewritten after every request")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    upstream = (host or "127.0.0.1", int(port))
    rewrite = (f"http://{upstream[0]}:{upstream[1]}", f"http://127.0.0.1:{args.port}") if args.dialect == "gcs" else None
    state = State(args.rule, args.stats)
    signal.signal(signal.SIGUSR1, lambda *_: state.clear())
    state.write_stats()

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(128)
    print("ready", flush=True)
    while True:
        try:
            client, _ = listener.accept()
        except InterruptedError:
            continue
        threading.Thread(target=handle, args=(client, state, upstream, args.dialect, rewrite), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
