#!/usr/bin/env python3
"""Chaos soak: many backup, verify and restore runs, each under one injected fault, with
the tool's promises checked after every run.

    python3 benches/soak.py                      # 50 runs, a random seed (printed)
    python3 benches/soak.py --runs 5 --seed 1    # the short soak CI runs
    python3 benches/soak.py --seed 7 --only-run 12   # replay run 12 of seed 7 (or 12,30)

It starts its own servers in a temporary directory: a SecantusDB replica-set member
(fault injection enabled) loaded once with --data-mb of the sample data set, a second
SecantusDB as the restore target, and MinIO with one bucket. It takes one clean backup,
verify and restore first (their durations time the signals and the timeouts), then N
runs. Each run draws, from a random generator seeded with the seed and the run's index
(so `--only-run K` draws the same run again), one operation and one fault:

    operations   backup (to s3://soak/store; half the runs), verify latest,
                 restore latest --drop (into the second server)
    faults       mongo-cut        a TCP proxy closes the connection after some bytes
                 mongo-stall      the proxy stops forwarding on every open connection
                 fail-command     configureFailPoint failCommand: error 91/6/189/11600 or a
                                  closed connection on find/getMore (insert for a restore),
                                  k times (k = 1..3) or for good
                 s3-*             tests/common/s3_fault_proxy.py between the tool and MinIO:
                                  SlowDown, 500, a cut or a stall on the create, a part, the
                                  completion, the sidecar, any PUT or any request
                 sigterm, sigkill the process signalled at a moment drawn uniformly within a
                                  clean run's duration
                 spool-full       --spool-dir on a 64 KiB tmpfs, --spool-memory-mb 0
                                  (needs root to mount; skipped otherwise)

After each run it checks the invariants:

    (1) every backup `list --json` calls complete passes `verify` and restores
        (`restore --drop` into the second server) to the source's counts, documents
        and indexes; a restore that succeeded under its fault restored them too
    (2) a failed run left no new complete backup and no earlier backup was lost
    (3) after the soak one clean backup and `prune --stale-after 0s` leave no open
        multipart upload and no archive without its sidecar
    (4) no run hung (each has a timeout)

It prints one table and writes it to --out; every violation names the seed and run
that replays it; every run's details go to the .json beside --out. Exit status: 0 no violation, 1 a violation, 2 a missing peer or a
setup failure. Under CI=true a missing peer or fault injector is a failure; elsewhere
the soak is skipped (a missing peer) or the fault left out (a missing injector), and
the table says so.

The tool runs with settings for a fast local network, so that a stall costs seconds:
connectTimeoutMS=2000&heartbeatFrequencyMS=500 in the URI, S3_ATTEMPT_TIMEOUT=10s, and
a store lock that outlives a killed run by 60 s instead of 15 minutes (the final prune
waits for it when needed). The binary is copied first: rebuilding it meanwhile is safe.

Needs: INGEST_TEST_PYTHON (pymongo + SecantusDB) and INGEST_TEST_MINIO, as exported by
`eval "$(scripts/test-peers.sh env)"`; boto3 in the interpreter running this script or
in INGEST_TEST_PYTHON (for the final store check).
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from local_processes import SetupError, die_with_parent, free_port, stop_process, wait_for_port

ACCESS_KEY = "soakadmin"
SECRET_KEY = "soak-secret-key-1234"
BUCKET = "soak"
PREFIX = "store"
REPO = Path(__file__).resolve().parent.parent
S3_PROXY = REPO / "tests/common/s3_fault_proxy.py"
# Options every tool URI carries: a stalled connection is abandoned after a heartbeat
# times out (the driver has no socket timeout), as tests/faults.rs does.
URI_OPTIONS = "directConnection=true&serverSelectionTimeoutMS=5000&connectTimeoutMS=2000&heartbeatFrequencyMS=500"
# One S3 request attempt's limit (the tool's default is 300 s): a stalled request is
# abandoned and retried after it, as an operator on a fast network would set it.
S3_ATTEMPT_TIMEOUT = "10s"
# How long the store lock of a run that died keeps prune out (the tool's default is 15
# minutes; a running backup renews its lock every third of it).
LOCK_TTL_SECONDS = 60
OPERATIONS = ["backup", "verify", "restore"]
INVARIANTS = {
    1: "complete backups verify and restore to the source",
    2: "a failed run leaves no complete backup; none lost",
    3: "after a clean backup and prune: no open upload, no archive without sidecar",
    4: "no run hung",
}


def log(message):
    print(f"soak: {message}", file=sys.stderr, flush=True)


def in_ci():
    return os.environ.get("CI", "") in ("true", "1")


class Secantus:
    """A SecantusDB replica-set member on a free port, with fault injection enabled."""

    def __init__(self, python, work, name):
        self.port = free_port()
        storage = Path(work) / name
        storage.mkdir()
        self.log = open(Path(work) / f"{name}.log", "w")
        self.process = subprocess.Popen(
            [python, "-m", "secantus", "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", str(storage),
             "--enable-test-commands"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        try:
            wait_for_port(self.port, self.process, f"SecantusDB ({name})")
        except SetupError:
            self.stop()
            raise
        time.sleep(1)

    def uri(self, port=None):
        return f"mongodb://127.0.0.1:{port or self.port}/?{URI_OPTIONS}"

    def stop(self):
        stop_process(self.process)
        self.log.close()


class Minio:
    """A MinIO server on a free port with the soak's bucket."""

    def __init__(self, binary, work, helper):
        self.port = free_port()
        data = Path(work) / "minio-data"
        data.mkdir()
        env = dict(os.environ, MINIO_ROOT_USER=ACCESS_KEY, MINIO_ROOT_PASSWORD=SECRET_KEY, MINIO_BROWSER="off",
                   MINIO_UPDATE="off")
        self.process = subprocess.Popen(
            [binary, "server", "--quiet", "--address", f"127.0.0.1:{self.port}", "--console-address",
             f"127.0.0.1:{free_port()}", str(data)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
        try:
            wait_for_port(self.port, self.process, "MinIO")
            deadline = time.time() + 60
            while True:
                try:
                    helper.s3("make_bucket", self.endpoint)
                    break
                except HelperFailed:
                    if time.time() > deadline:
                        raise
                    time.sleep(1)
        except BaseException:
            self.stop()
            raise

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        stop_process(self.process)


# Run by the interpreter that has pymongo (INGEST_TEST_PYTHON) and, for the store
# checks, boto3 (this interpreter or that one).
HELPER = r'''
import hashlib, json, sys

def fingerprint(uri):
    import pymongo
    from bson.raw_bson import RawBSONDocument
    client = pymongo.MongoClient(uri, document_class=RawBSONDocument)
    result = {}
    for db_name in sorted(client.list_database_names()):
        if db_name in ("admin", "local", "config"):
            continue
        db = client[db_name]
        for info in sorted(db.list_collections(), key=lambda i: i["name"]):
            name = info["name"]
            if name.startswith("system."):
                continue
            kind = info.get("type", "collection")
            entry = {"type": kind}
            if kind == "collection":
                digests = sorted(hashlib.sha256(d.raw).digest() for d in db[name].find())
                entry["count"] = len(digests)
                entry["sha256"] = hashlib.sha256(b"".join(digests)).hexdigest()
                entry["indexes"] = sorted([i["name"], json.dumps(dict(i["key"]), sort_keys=True, default=str)]
                                          for i in db[name].list_indexes())
            else:
                entry["options"] = json.dumps(info.get("options", {}), sort_keys=True, default=str)
            result[f"{db_name}.{name}"] = entry
    print(json.dumps(result))

def command(uri, document):
    import pymongo
    client = pymongo.MongoClient(uri)
    print(json.dumps(client.admin.command(json.loads(document)), default=str))

def s3(action, endpoint, *rest):
    import boto3
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=sys.argv[-2], aws_secret_access_key=sys.argv[-1],
                          region_name="us-east-1")
    if action == "make_bucket":
        client.create_bucket(Bucket=rest[0])
        print("{}")
    elif action == "survey":
        bucket, prefix = rest[0], rest[1]
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        uploads = client.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
        print(json.dumps({"keys": keys, "uploads": [u["Key"] for u in uploads]}))

if __name__ == "__main__":
    what = sys.argv[1]
    if what == "fingerprint":
        fingerprint(sys.argv[2])
    elif what == "command":
        command(sys.argv[2], sys.argv[3])
    elif what == "s3":
        s3(*sys.argv[2:-2])
'''


class HelperFailed(Exception):
    pass


class Helper:
    """Runs HELPER's functions in a subprocess: pymongo under INGEST_TEST_PYTHON, boto3
    under whichever interpreter has it."""

    def __init__(self, python, work):
        self.path = Path(work) / "soak_helper.py"
        self.path.write_text(HELPER)
        self.python = python
        self.s3_python = None
        for candidate in (sys.executable, python):
            if subprocess.run([candidate, "-c", "import boto3"], capture_output=True).returncode == 0:
                self.s3_python = candidate
                break

    def _run(self, python, *args, timeout=300):
        result = subprocess.run([python, str(self.path), *args], capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise HelperFailed(result.stderr.strip()[-1500:])
        return json.loads(result.stdout)

    def fingerprint(self, uri):
        return self._run(self.python, "fingerprint", uri)

    def command(self, uri, document):
        return self._run(self.python, "command", uri, json.dumps(document), timeout=60)

    def s3(self, action, endpoint, *rest):
        if self.s3_python is None:
            raise SetupError("boto3 is importable neither here nor in INGEST_TEST_PYTHON")
        if action == "make_bucket":
            rest = (BUCKET,)
        return self._run(self.s3_python, "s3", action, endpoint, *rest, ACCESS_KEY, SECRET_KEY, timeout=60)


class MongoProxy:
    """A TCP proxy between the tool and a server (tests/common/fault_proxy.rs in Python):
    `cut` closes the connection carrying the byte past `after` (both directions counted,
    across all connections), `stall` stops forwarding on every open connection at that
    point (they stay silent until the proxy stops); new connections then pass."""

    def __init__(self, upstream, mode, after):
        self.upstream, self.mode, self.after = upstream, mode, after
        self.counted = 0
        self.fired = 0
        self.lock = threading.Lock()
        self.connections = []
        self.stopping = False
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.settimeout(0.05)
            connection = {"client": client, "server": server, "stalled": False}
            with self.lock:
                self.connections.append(connection)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(connection, source, sink), daemon=True).start()

    @staticmethod
    def _cut(connection):
        for s in (connection["client"], connection["server"]):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _pump(self, connection, source, sink):
        while not self.stopping:
            if connection["stalled"]:
                time.sleep(0.05)
                continue
            try:
                data = source.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                self._cut(connection)
                return
            if not data:
                try:
                    sink.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if not self._allowed(connection, len(data)):
                continue
            try:
                sink.sendall(data)
            except OSError:
                self._cut(connection)
                return

    def _allowed(self, connection, n):
        with self.lock:
            self.counted += n
            if self.mode is None or self.counted <= self.after:
                return True
            mode, self.mode = self.mode, None
            self.fired += 1
            if mode == "cut":
                self._cut(connection)
            else:
                for open_connection in self.connections:
                    open_connection["stalled"] = True
            return False

    def stop(self):
        self.stopping = True
        self.thread.join()
        self.listener.close()
        with self.lock:
            for connection in self.connections:
                self._cut(connection)
                connection["client"].close()
                connection["server"].close()


class S3Proxy:
    """tests/common/s3_fault_proxy.py between the tool and MinIO, with one rule."""

    def __init__(self, upstream_port, rule, work):
        self.port = free_port()
        self.stats = Path(work) / f"s3-proxy-{self.port}.json"
        self.process = subprocess.Popen(
            [sys.executable, str(S3_PROXY), "--port", str(self.port), "--upstream", f"127.0.0.1:{upstream_port}", "--rule",
             rule, "--stats", str(self.stats)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, preexec_fn=die_with_parent)
        line = self._readline(30)
        if "ready" not in line:
            stop_process(self.process, 5)
            raise SetupError(f"the S3 fault proxy did not print ready (got {line!r})")

    def _readline(self, timeout):
        box = []
        reader = threading.Thread(target=lambda: box.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return box[0] if box else ""

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        stop_process(self.process, 5)
        try:
            stats = json.loads(self.stats.read_text())
        except (OSError, ValueError):
            return None
        return stats


def fault_catalogue(features):
    """Every fault: (name, operations it applies to). Faults whose injector is missing are
    left out by the caller."""
    faults = [("mongo-cut", OPERATIONS), ("mongo-stall", OPERATIONS)]
    if features["fail_command"]:
        faults.append(("fail-command", OPERATIONS))
    if features["s3_proxy"]:
        for kind in ("create", "part", "complete", "sidecar", "put"):
            faults.append((f"s3-{kind}", ["backup"]))
        faults.append(("s3-any", OPERATIONS))
    faults += [("sigterm", OPERATIONS), ("sigkill", OPERATIONS)]
    if features["spool_full"]:
        faults.append(("spool-full", ["backup"]))
    return faults


def draw(seed, index, features, data_bytes):
    """The operation and fault of run `index`: a generator of its own, so a run replays alone."""
    rng = random.Random(f"{seed}:{index}")
    # Backups write to the store, which the invariants judge: half the runs.
    operation = rng.choice(["backup", "backup", "verify", "restore"])
    fault = rng.choice([name for name, ops in fault_catalogue(features) if operation in ops])
    plan = {"operation": operation, "fault": fault}
    if fault in ("mongo-cut", "mongo-stall"):
        plan["after"] = rng.randint(32 << 10, max(64 << 10, int(data_bytes * 0.9)))
    elif fault == "fail-command":
        plan["times"] = rng.choice([1, 1, 2, 3, "alwaysOn"])
        plan["error"] = rng.choice([91, 6, 189, 11600, "closeConnection"])
    elif fault.startswith("s3-"):
        plan["action"] = rng.choice(["slowdown", "internal", "cut", "stall"])
        plan["count"] = rng.choice([1, 1, 2, 3, 0])
    elif fault in ("sigterm", "sigkill"):
        plan["at"] = rng.random()  # a fraction of a clean run's duration
    return plan


def describe(plan):
    fault = plan["fault"]
    if fault in ("mongo-cut", "mongo-stall"):
        return f"{fault} after {plan['after'] >> 10} KiB"
    if fault == "fail-command":
        return f"fail-command {plan['error']} x{plan['times']}"
    if fault.startswith("s3-"):
        return f"{fault} {plan['action']} x{plan['count'] or 'forever'}"
    if fault in ("sigterm", "sigkill"):
        return f"{fault} at {plan['at']:.0%}"
    return fault


class Soak:
    def __init__(self, args, work):
        self.args, self.work = args, Path(work)
        self.binary = str(self.work / "ingest-backup")
        shutil.copy2(args.binary, self.binary)  # the tree's binary may be rebuilt meanwhile
        self.version = subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout.strip()
        self.helper = Helper(args.python, work)
        self.store = f"s3://{BUCKET}/{PREFIX}"
        self.checked = {}  # complete backup name -> None (passed) or the failure
        self.results = []
        self.violations = []
        self.notes = []
        self.timeout_for = {}
        self.typical = {}

    # --- the servers ---------------------------------------------------------------

    def start(self):
        log("starting MinIO and two SecantusDB servers")
        self.minio = Minio(self.args.minio, self.work, self.helper)
        self.source = Secantus(self.args.python, self.work, "source")
        self.target = Secantus(self.args.python, self.work, "target")
        log(f"loading {self.args.data_mb} MiB of sample data")
        self.tool(["sample-data", "--uri", self.source.uri(), "--size-mb", str(self.args.data_mb)], timeout=1800, check=True)
        self.expected = self.helper.fingerprint(self.source.uri())
        self.data_bytes = self.args.data_mb << 20
        self.features = {"fail_command": self.probe_fail_command(), "s3_proxy": self.probe_s3_proxy(),
                         "spool_full": self.mount_spool()}
        log("faults: " + ", ".join(name for name, _ in fault_catalogue(self.features)))
        for note in self.notes:
            log(note)

    def stop(self):
        for what in ("source", "target", "minio"):
            server = getattr(self, what, None)
            if server is not None:
                server.stop()
        if getattr(self, "spool_mounted", False):
            subprocess.run(["umount", str(self.spool)], capture_output=True)

    def probe_fail_command(self):
        try:
            self.fail_point({"mode": "off"})
            return True
        except HelperFailed as error:
            self.notes.append(f"fail-command left out: the server refused configureFailPoint ({error.args[0][-200:]})")
            return False

    def fail_point(self, settings, uri=None):
        self.helper.command(uri or self.source.uri(), {"configureFailPoint": "failCommand", **settings})

    def probe_s3_proxy(self):
        if not S3_PROXY.exists():
            reason = f"the S3 faults left out: {S3_PROXY.relative_to(REPO)} is missing"
            if in_ci():
                raise SetupError(reason + " (CI=true: a missing fault injector is a failure)")
            self.notes.append(reason)
            return False
        return True

    def mount_spool(self):
        self.spool = self.work / "spool-full"
        self.spool.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(self.spool)], capture_output=True,
                                text=True)
        if result.returncode != 0:
            reason = (result.stderr.strip() or "mount failed").splitlines()[-1]
            self.notes.append(f"spool-full left out: a 64 KiB tmpfs could not be mounted ({reason}; it needs root)")
            return False
        self.spool_mounted = True
        return True

    # --- running the tool -----------------------------------------------------------

    def env(self, endpoint=None):
        env = {k: v for k, v in os.environ.items() if k not in ("MONGO_URI", "S3_BUCKET", "BACKUP_DIR", "AWS_ROLE_ARN",
                                                                 "AWS_PROFILE", "INGEST_BACKUP_TEST_PAUSE")}
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1",
                   AWS_EC2_METADATA_DISABLED="true", S3_ENDPOINT=endpoint or self.minio.endpoint,
                   S3_ATTEMPT_TIMEOUT=S3_ATTEMPT_TIMEOUT, INGEST_BACKUP_LOCK_TTL=f"{LOCK_TTL_SECONDS}s")
        return env

    def tool(self, args, timeout=600, check=False, endpoint=None, signal_at=None):
        """Runs the tool; returns (exit code or None when it hung, stdout, stderr, seconds)."""
        started = time.monotonic()
        out_file = tempfile.TemporaryFile(dir=self.work)
        err_file = tempfile.TemporaryFile(dir=self.work)
        process = subprocess.Popen([self.binary, *args], stdout=out_file, stderr=err_file, stdin=subprocess.DEVNULL,
                                   env=self.env(endpoint), preexec_fn=die_with_parent)
        signalled = False
        code = None
        while True:
            try:
                code = process.wait(timeout=0.05)
                break
            except subprocess.TimeoutExpired:
                pass
            elapsed = time.monotonic() - started
            if signal_at and not signalled and elapsed >= signal_at[1]:
                process.send_signal(signal_at[0])
                signalled = True
            if elapsed > timeout:
                process.kill()
                process.wait()
                break
        seconds = time.monotonic() - started
        self.last_signalled = signalled
        out_file.seek(0)
        err_file.seek(0)
        stdout, stderr = out_file.read().decode(errors="replace"), err_file.read().decode(errors="replace")
        out_file.close()
        err_file.close()
        if check and code != 0:
            raise SetupError(f"{' '.join(args[:1])} failed ({code}): {stderr[-2000:]}")
        return code, stdout, stderr, seconds

    def complete_backups(self):
        code, stdout, stderr, _ = self.tool(["list", "--store", self.store, "--json", "--quiet"], timeout=120)
        if code != 0:
            raise SetupError(f"list failed ({code}): {stderr[-1000:]}")
        return {b["name"] for b in json.loads(stdout)["backups"] if b["complete"]}

    def check_backup(self, name):
        """Invariant (1) for one complete backup: verify, restore --drop, compare."""
        code, _, stderr, _ = self.tool(["verify", name, "--uri", self.source.uri(), "--store", self.store, "--quiet"],
                                       timeout=self.timeout_for.get("verify", 600))
        if code != 0:
            return f"verify {name} exited {code}: {tail(stderr)}"
        problem = self.restore_and_compare(name)
        return f"restore {name}: {problem}" if problem else None

    def restore_and_compare(self, name):
        code, _, stderr, _ = self.tool(["restore", name, "--uri", self.target.uri(), "--store", self.store, "--drop",
                                        "--quiet"], timeout=self.timeout_for.get("restore", 600))
        if code != 0:
            return f"exited {code}: {tail(stderr)}"
        return self.compare_target()

    def compare_target(self):
        got = self.helper.fingerprint(self.target.uri())
        wrong = [ns for ns in sorted(set(self.expected) | set(got)) if self.expected.get(ns) != got.get(ns)]
        if not wrong:
            return None
        first = wrong[0]
        return (f"{len(wrong)} namespace(s) differ from the source, first {first}: expected {short(self.expected.get(first))}, "
                f"restored {short(got.get(first))}")

    def operation_args(self, operation, uri, spool=None):
        if operation == "backup":
            args = ["backup", "--uri", uri, "--store", self.store, "--json", "--batch-size", "200"]
            if spool:
                args += ["--spool-dir", str(spool), "--spool-memory-mb", "0"]
            return args
        if operation == "verify":
            return ["verify", "latest", "--uri", uri, "--store", self.store, "--json"]
        return ["restore", "latest", "--uri", uri, "--store", self.store, "--drop", "--json"]

    # --- calibration ----------------------------------------------------------------

    def calibrate(self):
        """One clean run of each operation: the durations the signals are drawn within and
        the timeouts are scaled from; the clean backup is the first one checked."""
        for operation in OPERATIONS:
            uri = self.target.uri() if operation == "restore" else self.source.uri()
            code, _, stderr, seconds = self.tool(self.operation_args(operation, uri), timeout=1800)
            if code != 0:
                raise SetupError(f"the clean {operation} failed ({code}): {tail(stderr)}")
            self.typical[operation] = seconds
            # Retries back off 0.5 + 1 + 2 s per read, a Mongo stall costs a heartbeat
            # timeout and an S3 one up to 5 attempts of S3_ATTEMPT_TIMEOUT: generous, yet a
            # hang is still caught.
            self.timeout_for[operation] = 8 * seconds + 180
            log(f"clean {operation}: {seconds:.1f} s (timeout {self.timeout_for[operation]:.0f} s)")
        for name in sorted(self.complete_backups()):
            self.checked[name] = self.check_backup(name)
            if self.checked[name]:
                self.violation(1, None, f"the clean backup {name}: {self.checked[name]}")

    # --- one run ----------------------------------------------------------------------

    def run(self, index):
        plan = draw(self.args.seed, index, self.features, self.data_bytes)
        operation, fault = plan["operation"], plan["fault"]
        before = self.complete_backups()
        mongo = self.target if operation == "restore" else self.source
        uri, endpoint, spool, signal_at = mongo.uri(), None, None, None
        proxy = s3proxy = None
        fired = None
        try:
            if fault in ("mongo-cut", "mongo-stall"):
                proxy = MongoProxy(mongo.port, fault.split("-")[1], plan["after"])
                uri = mongo.uri(proxy.port)
            elif fault == "fail-command":
                commands = ["insert"] if operation == "restore" else ["find", "getMore"]
                data = {"failCommands": commands, "appName": "ingest-backup"}
                if plan["error"] == "closeConnection":
                    data["closeConnection"] = True
                else:
                    data["errorCode"] = plan["error"]
                mode = plan["times"] if plan["times"] == "alwaysOn" else {"times": plan["times"]}
                self.fail_point({"mode": mode, "data": data}, uri=mongo.uri())
            elif fault.startswith("s3-"):
                rule = f"{fault[3:]}:{plan['action']}:{plan['count']}"
                s3proxy = S3Proxy(self.minio.port, rule, self.work)
                endpoint = s3proxy.endpoint
            elif fault in ("sigterm", "sigkill"):
                signal_at = (signal.SIGTERM if fault == "sigterm" else signal.SIGKILL, plan["at"] * self.typical[operation])
            elif fault == "spool-full":
                spool = self.spool
            code, stdout, stderr, seconds = self.tool(self.operation_args(operation, uri, spool),
                                                      timeout=self.timeout_for[operation], endpoint=endpoint,
                                                      signal_at=signal_at)
        finally:
            if proxy:
                proxy.stop()
                fired = proxy.fired > 0
            if s3proxy:
                stats = s3proxy.stop()
                if isinstance(stats, dict):
                    fired = injected(stats)
            if fault == "fail-command":
                self.fail_point({"mode": "off"}, uri=mongo.uri())
        if fault in ("sigterm", "sigkill"):
            fired = self.last_signalled  # false when the run ended before its moment
        elif fault == "spool-full":
            fired = "No space left on device" in stderr
        return self.judge(index, plan, before, code, stdout, stderr, seconds, fired)

    def judge(self, index, plan, before, code, stdout, stderr, seconds, fired):
        operation = plan["operation"]
        record = {"index": index, "plan": plan, "code": code, "seconds": round(seconds, 1), "fired": fired,
                  "violations": []}

        def violated(number, message):
            record["violations"].append(number)
            self.violation(number, index, f"{operation} under {describe(plan)}: {message}")

        if code is None:
            violated(4, f"still running after {self.timeout_for[operation]:.0f} s; killed. stderr: {tail(stderr)}")
        after = self.complete_backups()
        lost, new = before - after, after - before
        if lost:
            violated(2, f"complete backups disappeared: {sorted(lost)}")
        reported = None
        if operation == "backup" and code == 0:
            try:
                reported = json.loads(stdout)["name"]
            except (ValueError, KeyError):
                violated(1, f"exit 0 without a --json result: {stdout[-300:]}")
            if reported and reported not in after:
                violated(1, f"the backup it reported, {reported}, is not complete")
        if new and code != 0:
            if code == -signal.SIGKILL and fault_is(plan, "sigkill"):
                record["note"] = f"killed after completing {sorted(new)}"
            else:
                violated(2, f"failed (exit {code}) yet left complete backup(s) {sorted(new)}")
        elif operation != "backup" and new:
            violated(2, f"a {operation} made new complete backup(s) {sorted(new)}")
        if operation == "restore" and code == 0:
            problem = self.compare_target()
            if problem:
                violated(1, f"exit 0 but {problem}")
        for name in sorted(after - set(self.checked)):
            self.checked[name] = self.check_backup(name)
            if self.checked[name]:
                violated(1, self.checked[name])
        if record["violations"]:
            record["outcome"] = "violation"
        else:
            record["outcome"] = "survived" if code == 0 else "failed clean"
        record["retried"] = stderr.count("Transient error: trying again.")
        if code not in (None, 0, 1) and not (code < 0 and fault_is(plan, "sigkill")):
            # Not an invariant: exit status 2 means bad usage or configuration, which an
            # injected fault is not.
            record["odd_exit"] = f"run {index}: {operation} under {describe(plan)} exited {code}: {tail(stderr, 200)}"
        record["stderr"] = tail(stderr, 600)
        self.results.append(record)
        fired_text = "" if fired is None else (" (fired)" if fired else " (never fired)")
        log(f"run {index}: {operation} under {describe(plan)}{fired_text}: {record['outcome']} (exit {code}, "
            f"{seconds:.1f} s)")
        return record

    def violation(self, number, index, message):
        replay = (f"python3 benches/soak.py --seed {self.args.seed} --only-run {index}" if index is not None
                  else f"python3 benches/soak.py --seed {self.args.seed} --runs 0")
        entry = {"invariant": number, "run": index, "message": message, "replay": replay}
        self.violations.append(entry)
        log(f"VIOLATION of ({number}) {INVARIANTS[number]}: run {index}, seed {self.args.seed}: {message}\n"
            f"      replay: {replay}")

    # --- the end ----------------------------------------------------------------------

    def final_check(self):
        """Invariant (3): a clean backup, prune --stale-after 0s, then no open upload and no
        archive without its sidecar."""
        code, _, stderr, _ = self.tool(self.operation_args("backup", self.source.uri()), timeout=self.timeout_for["backup"])
        if code != 0:
            self.violation(3, None, f"the final clean backup failed ({code}): {tail(stderr)}")
        prune = ["prune", "--store", self.store, "--stale-after", "0s", "--keep-last", "1000", "--quiet"]
        code, _, stderr, _ = self.tool(prune, timeout=600)
        if code != 0 and "the store is locked" in stderr:
            # A run the soak killed left its lock: it expires after the lock's time to
            # live, and the next prune takes it over, as after any crash.
            log(f"prune waits {LOCK_TTL_SECONDS} s for the lock of a killed run to expire: {tail(stderr, 200)}")
            time.sleep(LOCK_TTL_SECONDS + 5)
            code, _, stderr, _ = self.tool(prune, timeout=600)
        if code != 0:
            self.violation(3, None, f"prune --stale-after 0s failed ({code}): {tail(stderr)}")
        survey = self.helper.s3("survey", self.minio.endpoint, BUCKET, PREFIX + "/")
        if survey["uploads"]:
            self.violation(3, None, f"open multipart uploads after prune: {survey['uploads']}")
        keys = set(survey["keys"])
        for key in sorted(keys):
            name = key[len(PREFIX) + 1:]
            if "/" in name:
                continue
            base = archive_name(name)
            if base and f"{PREFIX}/{base}.manifest.json" not in keys:
                self.violation(3, None, f"archive without its sidecar after prune: {key}")
        for name in sorted(self.complete_backups() - set(self.checked)):
            self.checked[name] = self.check_backup(name)
            if self.checked[name]:
                self.violation(1, None, self.checked[name])
        self.store_objects = len(keys)

    def table(self, started):
        runs = [r for r in self.results]
        count = lambda outcome: sum(1 for r in runs if r["outcome"] == outcome)
        by_invariant = {n: sum(1 for v in self.violations if v["invariant"] == n) for n in INVARIANTS}
        lines = [f"## Soak, seed {self.args.seed}: {len(runs)} runs", "",
                 f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}; {self.args.data_mb} MiB of sample data; "
                 f"{self.version}; {os.cpu_count()} cores; {(time.time() - started) / 60:.0f} min; clean runs: "
                 + ", ".join(f"{op} {self.typical.get(op, 0):.1f} s" for op in OPERATIONS), "",
                 "| Runs | Survived | Failed clean | Violations (1) | (2) | (3) | (4) | Seed |",
                 "|---|---|---|---|---|---|---|---|",
                 f"| {len(runs)} | {count('survived')} | {count('failed clean')} | {by_invariant[1]} | {by_invariant[2]} | "
                 f"{by_invariant[3]} | {by_invariant[4]} | {self.args.seed} |", "",
                 "Invariants: " + "; ".join(f"({n}) {text}" for n, text in INVARIANTS.items()) + ".", "",
                 "| Fault | Runs | Fired | Tool retried | Survived | Failed clean | Violations |", "|---|---|---|---|---|---|---|"]
        faults = sorted({r["plan"]["fault"] for r in runs})
        for fault in faults:
            rows = [r for r in runs if r["plan"]["fault"] == fault]
            fired = sum(1 for r in rows if r["fired"])
            known = any(r["fired"] is not None for r in rows)
            lines.append(f"| {fault} | {len(rows)} | {fired if known else '-'} | {sum(1 for r in rows if r['retried'])} | "
                         f"{sum(1 for r in rows if r['outcome'] == 'survived')} | "
                         f"{sum(1 for r in rows if r['outcome'] == 'failed clean')} | "
                         f"{sum(1 for r in rows if r['outcome'] == 'violation')} |")
        lines += ["", "| Run | Operation | Fault | Exit | Seconds | Outcome |", "|---|---|---|---|---|---|"]
        for r in runs:
            fired = "" if r["fired"] is None else ("" if r["fired"] else " (never fired)")
            lines.append(f"| {r['index']} | {r['plan']['operation']} | {describe(r['plan'])}{fired} | "
                         f"{'hung' if r['code'] is None else r['code']} | {r['seconds']} | {r['outcome']} |")
        if self.notes:
            lines += ["", "Not injected:", ""] + [f"- {note}" for note in self.notes]
        odd = [r["odd_exit"] for r in runs if r.get("odd_exit")]
        if odd:
            lines += ["", "Failed with an exit status other than 1 (not an invariant; 2 means bad usage or configuration):", ""]
            lines += [f"- {text}" for text in odd]
        if self.violations:
            lines += ["", "Violations:", ""]
            for v in self.violations:
                lines.append(f"- ({v['invariant']}) run {v['run']}: {v['message']}  \n  replay: `{v['replay']}`")
        return "\n".join(lines) + "\n"


def fault_is(plan, name):
    return plan["fault"] == name


def injected(stats):
    """Whether the S3 proxy's stats show the rule fired (its contract: a JSON document;
    any positive count of injected faults counts)."""
    for key in ("injected", "fired", "faults"):
        value = stats.get(key)
        if isinstance(value, (int, float)):
            return value > 0
        if isinstance(value, (list, dict)):
            return len(value) > 0 and any((v > 0 if isinstance(v, (int, float)) else bool(v))
                                          for v in (value.values() if isinstance(value, dict) else value))
    return None


def archive_name(name):
    """The backup name of an archive object (NAME.tar.gz, NAME.tar.zst, with .age), else None."""
    for suffix in (".tar.gz.age", ".tar.zst.age", ".tar.gz", ".tar.zst"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def tail(text, n=400):
    text = " ".join(text.strip().split())
    return text[-n:]


def short(value):
    return json.dumps(value)[:200]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    parser.add_argument("--only-run", default=None, metavar="K[,K...]", help="run only these runs of --seed (a replay)")
    parser.add_argument("--out", default=None, help="default: benches/results/soak-<seed>.md")
    parser.add_argument("--binary", default=str(REPO / "target/release/ingest-backup"))
    parser.add_argument("--data-mb", type=int, default=20)
    parser.add_argument("--python", default=os.environ.get("INGEST_TEST_PYTHON"))
    parser.add_argument("--minio", default=os.environ.get("INGEST_TEST_MINIO"))
    args = parser.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1 << 31)
    log(f"seed {args.seed}")
    if args.out is None:
        args.out = str(REPO / f"benches/results/soak-{args.seed}.md")
    missing = [what for what, path in (("INGEST_TEST_PYTHON", args.python), ("INGEST_TEST_MINIO", args.minio),
                                       ("--binary", args.binary)) if not path or not Path(path).exists()]
    if missing:
        message = f"missing {', '.join(missing)} (eval \"$(scripts/test-peers.sh env)\" after scripts/test-peers.sh install)"
        if in_ci():
            log(f"error: {message} (CI=true: a missing peer is a failure)")
            sys.exit(2)
        log(f"SKIPPED: {message}")
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    indexes = [int(k) for k in args.only_run.split(",")] if args.only_run else list(range(args.runs))
    with tempfile.TemporaryDirectory(prefix="ingest-soak-") as work:
        soak = Soak(args, work)
        try:
            soak.start()
            soak.calibrate()
            for index in indexes:
                soak.run(index)
            soak.final_check()
        except SetupError as error:
            log(f"error: {error}")
            sys.exit(2)
        finally:
            soak.stop()
    report = soak.table(started)
    print(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    (out.with_suffix(".json")).write_text(json.dumps({"seed": args.seed, "runs": soak.results, "violations": soak.violations,
                                                       "notes": soak.notes}, indent=2, default=str))
    log(f"table in {out}")
    sys.exit(1 if soak.violations else 0)


if __name__ == "__main__":
    main()
