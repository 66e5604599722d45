#!/usr/bin/env python3
"""End-to-end benchmark: ingest-backup beside the official mongodump pipelines, on the
same data, the same server and the same MinIO, in one run.

Run by hand (not by CI), through its wrapper, which installs the peers and builds:

    benches/e2e.sh --size-mb 100 --repeat 3
    benches/e2e.sh --size-mb 100,500,2000 --shape sample,one-large,many-small --repeat 3
    benches/e2e.sh --server secantus,ferretdb --size-mb 100 --repeat 3

For every server, size and shape it loads the data once into a fresh server, then runs,
--repeat times each:

    read-floor           one bare driver scan of every collection, bytes discarded (pymongo,
                         raw BSON); its byte total is the data set's BSON size
    range-scan-floor     a bare parallel range scan by the same driver: every collection over
                         --split-min-mb cut into --cursors _id ranges (boundaries from $sample),
                         each range read with find(min, max, hint _id) on its own thread,
                         --cursors threads in all, smaller collections read whole; the floor
                         the split backup is compared with
    oplog-floor          the two oplog queries any consistent dump makes (newest entry; the
                         window from it), by the same driver: what the server charges for
                         point-in-time consistency, apart from the data (replica sets only)
    ingest-backup        ingest-backup backup to s3://bucket/ours
    ingest-backup-zstd   the same with --compression zstd (level 3)
    ingest-backup-split  the same with --split-min-mb (collections over it read as _id ranges
                         on parallel cursors); skipped when the binary lacks the flag
    ingest-backup-split-forced  the same, splitting even where the server's plan shows no
                         index bounds (which the tool declines: INGEST_BACKUP_TEST_SPLIT_UNBOUNDED=1)
    original-scripts     mongodump --out, tar -czf, aws s3 cp (the original ingest backup
                         scripts' pipeline)
    archive-pipe         mongodump --archive --gzip | aws s3 cp - s3://... (best shell practice)
    verify               ingest-backup verify latest (archive + live comparison)
    restore              ingest-backup restore latest into a fresh server
    mongorestore         mongorestore of original-scripts' dump directory into a fresh server

Servers (--server): secantus, a SecantusDB replica-set member in memory, and ferretdb,
FerretDB v1 on SQLite, standalone: no oplog, so oplog-floor is skipped and mongodump runs
without --oplog there, and mongorestore runs with --noIndexRestore (FerretDB refuses the
`ns` field mongorestore adds to index specs). A pipeline that fails against FerretDB is
skipped for that server with a note instead of stopping the run.

Shapes (--shape): sample (the tool's sample ingest data set), one-large (90% of the bytes
in one collection, the other 10% in 9 small ones) and many-small (1000 equal
collections); the last two hold ~1 KiB documents with integer _id.

(--pipelines picks a subset, for the largest sizes) and records, per run, wall seconds,
client CPU seconds (user + system of the command and its children) and CPU seconds per
GiB of BSON in the data set, peak RSS of the largest process, temp disk and archive size.
The medians go to a Markdown table (stdout and --out-dir/results.md), every run to
results.json, and, when matplotlib is importable, plots to --out-dir/*.png.

Only the standard library is needed, plus pymongo (in the test-peer virtualenv) for the
floors and the data shapes.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from local_processes import SetupError, die_with_parent, free_port, stop_process, wait_for_port

ACCESS_KEY = "benchadmin"
SECRET_KEY = "bench-secret-key-1234"
BUCKET = "bench"
GIB = 1 << 30

ORDER = ["read-floor", "range-scan-floor", "oplog-floor", "ingest-backup", "ingest-backup-zstd", "ingest-backup-split", "ingest-backup-split-forced", "original-scripts",
         "archive-pipe", "verify", "restore", "mongorestore"]
SERVERS = ["secantus", "ferretdb"]
SHAPES = ["sample", "one-large", "many-small"]
METRICS = ("wall", "cpu", "cpu_per_gib", "rss_mib", "archive_bytes", "temp_disk")
# results.json files written before the pipeline was renamed, for --replot.
RENAMED = {"seed-pipeline": "original-scripts"}


class CommandFailed(Exception):
    """A measured command exited with an error."""


class Server:
    """A server process on a free port, stopped by stop() or on leaving a with block."""

    kind = ""
    replica_set = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.process.poll() is None:
            stop_process(self.process)
        self.log.close()


class Secantus(Server):
    """A SecantusDB replica-set server in memory on a free port."""

    kind = "secantus"
    replica_set = True

    def __init__(self, python, work, size_mb):
        self.port = free_port()
        self.log = open(Path(work) / f"secantus-{self.port}.log", "w")
        # In memory, WiredTiger's cache holds the whole data set (documents, indexes,
        # oplog); SecantusDB's 1 GiB default fails a 1000 MiB load with WT_CACHE_FULL.
        cache = f"{1 + size_mb * 3 // 1024}G"
        self.process = subprocess.Popen(
            [python, "-m", "secantus", "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", ":memory:",
             "--cache-size", cache],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        try:
            wait_for_port(self.port, self.process, "SecantusDB")
        except SetupError:
            self.stop()
            raise
        time.sleep(1)

    @property
    def uri(self):
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"


class FerretDb(Server):
    """FerretDB v1 on SQLite, standalone (no oplog), as tests/common/ferretdb.rs starts it:
    a fresh SQLite directory per start, free ports, telemetry off. The directory is
    removed when it stops."""

    kind = "ferretdb"
    replica_set = False

    def __init__(self, binary, work):
        self.dir = Path(tempfile.mkdtemp(prefix="ferretdb-", dir=work))
        data = self.dir / "data"
        data.mkdir()
        self.port = free_port()
        debug_port = free_port()
        while debug_port == self.port:
            debug_port = free_port()
        self.log = open(self.dir / "ferretdb.log", "w")
        self.process = subprocess.Popen(
            [binary, "--handler=sqlite", f"--sqlite-url=file:{data}/", f"--listen-addr=127.0.0.1:{self.port}",
             f"--debug-addr=127.0.0.1:{debug_port}", f"--state-dir={self.dir}", "--telemetry=disable", "--log-level=warn"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        try:
            wait_for_port(self.port, self.process, "FerretDB")
        except SetupError:
            self.stop()
            raise

    @property
    def uri(self):
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true&serverSelectionTimeoutMS=5000"

    def stop(self):
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_server(kind, args, work, size_mb):
    """A fresh, empty server of the given kind."""
    if kind == "ferretdb":
        return FerretDb(args.ferretdb, work)
    return Secantus(args.python, work, size_mb)


class Minio:
    """A MinIO server on a free port with the benchmark bucket."""

    def __init__(self, binary, work):
        self.port = free_port()
        self.data = Path(work) / "minio-data"
        self.data.mkdir()
        env = dict(os.environ, MINIO_ROOT_USER=ACCESS_KEY, MINIO_ROOT_PASSWORD=SECRET_KEY,
                   MINIO_BROWSER="off", MINIO_UPDATE="off")
        self.process = subprocess.Popen(
            [binary, "server", "--quiet", "--address", f"127.0.0.1:{self.port}",
             "--console-address", f"127.0.0.1:{free_port()}", str(self.data)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
        try:
            wait_for_port(self.port, self.process, "MinIO")
            time.sleep(1)
            subprocess.run(["aws", "--endpoint-url", self.endpoint, "s3", "mb", f"s3://{BUCKET}"],
                           env=self.env(), check=True, stdout=subprocess.DEVNULL)
        except BaseException:
            self.stop()
            raise

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self):
        return dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                    AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", S3_ENDPOINT=self.endpoint)

    def stop(self):
        stop_process(self.process)


def timed(command, env=None, cwd=None):
    """Runs a shell command under GNU time; returns wall, cpu and peak RSS (MiB), and its
    stdout and stderr. Raises CommandFailed when it fails."""
    stats = tempfile.NamedTemporaryFile(delete=False)
    stats.close()
    start = time.monotonic()
    result = subprocess.run(["/usr/bin/time", "-o", stats.name, "-f", "%U %S %M", "bash", "-o", "pipefail", "-c", command],
                            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.monotonic() - start
    if result.returncode != 0:
        os.unlink(stats.name)
        raise CommandFailed(f"command failed ({result.returncode}): {command}\n{result.stderr.decode(errors='replace')[-2000:]}")
    user, system, rss_kib = Path(stats.name).read_text().split()[-3:]
    os.unlink(stats.name)
    return {"wall": wall, "cpu": float(user) + float(system), "rss_mib": int(rss_kib) / 1024,
            "stdout": result.stdout, "stderr": result.stderr}


def du(path):
    path = Path(path)
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def layout(shape, size_mb):
    """(collection, documents) of a generated shape, ~1 KiB documents."""
    documents = max(1, size_mb * 1024)
    if shape == "one-large":
        large = max(1, round(documents * 0.9))
        small = max(1, (documents - large) // 9)
        return [("large", large)] + [(f"small-{i}", small) for i in range(1, 10)]
    per = max(1, documents // 1000)
    return [(f"c{c:04d}", per) for c in range(1000)]


def load(shape, size_mb, server, binary, python):
    """Loads a data set of about size_mb MiB in the given shape."""
    if shape == "sample":
        compat = ["--compat", "ferretdb"] if server.kind == "ferretdb" else []
        subprocess.run([binary, "sample-data", "--uri", server.uri, "--size-mb", str(size_mb), *compat], check=True)
        return
    script = f"""
import pymongo
client = pymongo.MongoClient({server.uri!r})
db = client["bench"]
payload = "x" * 900
for name, count in {layout(shape, size_mb)!r}:
    coll = db[name]
    batch = []
    for i in range(count):
        batch.append({{"_id": i, "n": i, "payload": payload}})
        if len(batch) == 1000:
            coll.insert_many(batch, ordered=False); batch = []
    if batch:
        coll.insert_many(batch, ordered=False)
"""
    subprocess.run([python, "-c", script], check=True)


READ_FLOOR = """
import sys, pymongo
from bson.raw_bson import RawBSONDocument
client = pymongo.MongoClient(sys.argv[1], document_class=RawBSONDocument)
total = 0
for name in client.list_database_names():
    if name in ("local", "config", "admin"):
        continue
    db = client[name]
    for info in db.list_collections():
        if info.get("type", "collection") != "collection":
            continue
        for doc in db[info["name"]].find():
            total += len(doc.raw)
print(total)
"""


RANGE_SCAN_FLOOR = """
import sys, time, pymongo
from concurrent.futures import ThreadPoolExecutor
from bson.raw_bson import RawBSONDocument
from pymongo.errors import PyMongoError

uri, cursors, split_min = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
raw = pymongo.MongoClient(uri, document_class=RawBSONDocument, maxPoolSize=cursors + 2)
meta = pymongo.MongoClient(uri)
HINT = [("_id", 1)]


def note(message):
    print(f"range-scan-floor: {message}", file=sys.stderr, flush=True)


def why(error):
    return (getattr(error, "details", None) or {}).get("errmsg") or str(error)


fallbacks = {}  # reason -> collections read by one plain scan for it


def fall_back(db, name, reason):
    fallbacks.setdefault(reason, []).append(f"{db}.{name}")


def size_of(db, name):
    try:
        return meta[db].command("collStats", name)["size"]
    except (PyMongoError, KeyError) as error:
        note(f"{db}.{name}: collStats failed ({why(error)}); treated as over the split size")
        return split_min + 1


def boundaries(db, name):
    # cursors - 1 evenly spaced _id values of a sorted $sample, or a reason they cannot be used.
    coll = meta[db][name]
    try:
        ids = [d["_id"] for d in coll.aggregate([{"$sample": {"size": 100 * cursors}}, {"$project": {"_id": 1}}, {"$sort": {"_id": 1}}])]
    except PyMongoError as error:
        return None, f"$sample refused ({why(error)})"
    unique = [i for n, i in enumerate(ids) if n == 0 or ids[n - 1] != i]
    picks = []
    for k in range(1, cursors):
        if unique:
            candidate = unique[k * len(unique) // cursors]
            if not picks or picks[-1] != candidate:
                picks.append(candidate)
    if not picks:
        return None, "$sample returned no _id values"
    # The server must honour min and max: from the first boundary the first document is
    # that boundary, and the empty range [b, b) holds nothing.
    try:
        first = list(coll.find({}, {"_id": 1}, min={"_id": picks[0]}, hint=HINT).limit(1))
        empty = list(coll.find({}, {"_id": 1}, min={"_id": picks[0]}, max={"_id": picks[0]}, hint=HINT).limit(1))
    except PyMongoError as error:
        return None, f"find with min/max refused ({why(error)})"
    if not first or first[0]["_id"] != picks[0] or empty:
        return None, "find ignored min/max (a probe read documents outside its range)"
    return picks, None


def scan(db, name, lo=None, hi=None):
    bounds = {}
    if lo is not None:
        bounds["min"] = {"_id": lo}
    if hi is not None:
        bounds["max"] = {"_id": hi}
    if bounds:
        bounds["hint"] = HINT
    return sum(len(doc.raw) for doc in raw[db][name].find({}, **bounds))


started = time.monotonic()
tasks = []
split = 0
for db in meta.list_database_names():
    if db in ("local", "config", "admin"):
        continue
    for info in meta[db].list_collections():
        if info.get("type", "collection") != "collection":
            continue
        name = info["name"]
        picks = None
        if cursors > 1 and size_of(db, name) >= split_min:
            picks, reason = boundaries(db, name)
            if picks is None:
                fall_back(db, name, reason)
        if picks:
            split += 1
            edges = [None] + picks + [None]
            tasks.extend((db, name, lo, hi) for lo, hi in zip(edges, edges[1:]))
        else:
            tasks.append((db, name, None, None))
planned = time.monotonic()
with ThreadPoolExecutor(max_workers=cursors) as pool:
    total = sum(pool.map(lambda task: scan(*task), tasks))
for reason, names in fallbacks.items():
    note(f"{reason}: {len(names)} collection(s) read by one plain scan each ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''})")
note(f"{split} collection(s) split, {len(tasks)} cursor(s) on {cursors} thread(s)")
# Bytes read, then seconds spent choosing the ranges (collStats, $sample, probes) and reading them.
print(total, f"{planned - started:.3f}", f"{time.monotonic() - planned:.3f}")
"""


OPLOG_FLOOR = """
import sys, pymongo
from bson.raw_bson import RawBSONDocument
oplog = pymongo.MongoClient(sys.argv[1], document_class=RawBSONDocument).local["oplog.rs"]
newest = oplog.find_one({}, sort=[("$natural", -1)])
total = sum(len(entry.raw) for entry in oplog.find({"ts": {"$gte": newest["ts"]}}))
print(total)
"""


class Run:
    """One repetition: the measurements so far, and notes of what was skipped and why."""

    def __init__(self, args, source, notes):
        self.args = args
        self.source = source
        self.notes = notes
        self.results = {}

    def note(self, message):
        message = f"{self.source.kind}: {message}"
        if message not in self.notes:
            self.notes.append(message)
            print(f"e2e: {message}", file=sys.stderr)

    def measure(self, pipeline, action, required=False):
        """Runs action() (which returns measurements) unless the pipeline failed on this
        server earlier. A failure against FerretDB skips the pipeline for that server with
        a note; anywhere else it ends the benchmark."""
        failed = self.args.failed.setdefault(self.source.kind, set())
        if pipeline in failed:
            return None
        try:
            measured = action()
        except CommandFailed as error:
            if required or self.source.kind != "ferretdb":
                sys.exit(f"e2e: {pipeline} on {self.source.kind}: {error}")
            failed.add(pipeline)
            self.note(f"{pipeline} failed and is skipped for this server: {str(error).splitlines()[-1][:300]}")
            return None
        self.results[pipeline] = measured
        return measured


def run_once(shape, size_mb, args, source, minio, work, run, notes):
    """One repetition of the chosen pipelines; returns {pipeline: measurements}."""
    this = Run(args, source, notes)
    wanted = set(args.pipelines)
    env = minio.env()
    scratch = Path(work) / f"run-{run}"
    scratch.mkdir()
    read_floor = Path(work) / "read_floor.py"
    read_floor.write_text(READ_FLOOR)
    floor = this.measure("read-floor", lambda: timed(f"{args.python} {read_floor} '{source.uri}'"), required=True)
    floor["bson_bytes"] = int(floor["stdout"].split()[-1])
    if "range-scan-floor" in wanted:
        script = Path(work) / "range_scan_floor.py"
        script.write_text(RANGE_SCAN_FLOOR)
        split_min = args.split_min_mb << 20
        ranged = this.measure("range-scan-floor",
                              lambda: timed(f"{args.python} {script} '{source.uri}' {args.cursors} {split_min}"))
        if ranged:
            for line in ranged["stderr"].decode(errors="replace").splitlines():
                if line.startswith("range-scan-floor:"):
                    this.note(line)
            scanned, plan, reads = ranged["stdout"].decode().split()[-3:]
            scanned = int(scanned)
            ranged["plan_seconds"], ranged["read_seconds"] = float(plan), float(reads)
            print(f"e2e: range-scan-floor: {plan} s choosing ranges, {reads} s reading", file=sys.stderr)
            if scanned != floor["bson_bytes"]:
                this.note(f"range-scan-floor read {scanned} bytes, the read floor {floor['bson_bytes']}")
    if "oplog-floor" in wanted:
        if not source.replica_set:
            this.note("oplog-floor skipped: the server is standalone, with no oplog")
        else:
            oplog_floor = Path(work) / "oplog_floor.py"
            oplog_floor.write_text(OPLOG_FLOOR)
            this.measure("oplog-floor", lambda: timed(f"{args.python} {oplog_floor} '{source.uri}'"))

    spool = scratch / "spool"

    def backup(store, extra="", environment=None):
        measured = timed(f"{args.binary} backup --uri '{source.uri}' --store s3://{BUCKET}/{store} --spool-dir {spool}{extra} --json",
                         env=dict(env, **(environment or {})))
        report = json.loads(measured["stdout"])
        measured["archive_bytes"] = report["archive_bytes"]
        measured["temp_disk"] = report["peak_spool_disk_bytes"]
        measured["documents"] = report["documents"]
        return measured

    ours = this.measure("ingest-backup", lambda: backup(f"ours-{run}"), required=True)
    if "ingest-backup-zstd" in wanted:
        this.measure("ingest-backup-zstd", lambda: backup(f"zstd-{run}", " --compression zstd"))
    if "ingest-backup-split" in wanted:
        split = this.measure("ingest-backup-split", lambda: backup(f"split-{run}", f" --split-min-mb {args.split_min_mb}"))
        # A server that ignores a range bound would make a split backup hold documents twice.
        if split and split["documents"] != ours["documents"]:
            this.note(f"ingest-backup-split backed up {split['documents']} documents, ingest-backup {ours['documents']}")
    if "ingest-backup-split-forced" in wanted:
        # Splitting even where the server's plan shows no index bounds (the tool declines
        # there): what declining saves on a server that scans the whole collection per range.
        forced = this.measure("ingest-backup-split-forced", lambda: backup(f"forced-{run}", f" --split-min-mb {args.split_min_mb}",
                                                                            {"INGEST_BACKUP_TEST_SPLIT_UNBOUNDED": "1"}))
        if forced and forced["documents"] != ours["documents"]:
            this.note(f"ingest-backup-split-forced backed up {forced['documents']} documents, ingest-backup {ours['documents']}")

    name = "2018-04-04T11_37"
    dump = scratch / "data/db/dump" / name
    run_mongodump_pipelines(this, minio, scratch, run, name, dump, wanted)
    if "verify" in wanted:
        this.measure("verify", lambda: timed(f"{args.binary} verify latest --uri '{source.uri}' --store s3://{BUCKET}/ours-{run}",
                                             env=env))
    if "restore" in wanted:
        def restore():
            with start_server(source.kind, args, work, size_mb) as target:
                return timed(f"{args.binary} restore latest --uri '{target.uri}' --store s3://{BUCKET}/ours-{run}", env=env)
        this.measure("restore", restore)
    if "mongorestore" in wanted and "original-scripts" in this.results:
        # FerretDB refuses the `ns` field mongorestore adds to every index spec (see
        # tests/ferretdb.rs): documents only there.
        no_indexes = ""
        if source.kind == "ferretdb":
            no_indexes = " --noIndexRestore"
            this.note("mongorestore runs with --noIndexRestore (FerretDB refuses the index specs it sends)")

        def mongorestore():
            with start_server(source.kind, args, work, size_mb) as target:
                return timed(f"{args.tools}/mongorestore --uri='{target.uri}'{no_indexes} {dump}")
        this.measure("mongorestore", mongorestore)
    shutil.rmtree(scratch)
    gib = floor["bson_bytes"] / GIB
    for measured in this.results.values():
        measured.pop("stdout", None)
        measured.pop("stderr", None)
        measured["cpu_per_gib"] = measured["cpu"] / gib if gib else 0.0
    return this.results


def run_mongodump_pipelines(this, minio, scratch, run, name, dump, wanted):
    """The original ingest backup scripts' pipeline (whose dump directory mongorestore
    reuses) and the archive pipe, each when wanted. Against a standalone server mongodump
    runs without --oplog, which needs a replica set."""
    args, source = this.args, this.source
    env = minio.env()
    oplog = " --oplog" if source.replica_set else ""
    if "original-scripts" in wanted:
        def original():
            measured = timed(
                f"{args.tools}/mongodump --uri='{source.uri}'{oplog} --out={dump}"
                f" && tar -czf {name}.tar.gz data/db/dump/{name}"
                f" && aws --endpoint-url {minio.endpoint} s3 cp --quiet {name}.tar.gz s3://{BUCKET}/original-{run}/{name}.tar.gz",
                env=env, cwd=scratch)
            measured["archive_bytes"] = du(scratch / f"{name}.tar.gz")
            measured["temp_disk"] = du(scratch / "data") + measured["archive_bytes"]
            return measured
        this.measure("original-scripts", original)
    if "archive-pipe" in wanted:
        def pipe():
            measured = timed(
                f"{args.tools}/mongodump --uri='{source.uri}'{oplog} --archive --gzip"
                f" | aws --endpoint-url {minio.endpoint} s3 cp --quiet - s3://{BUCKET}/pipe-{run}/{name}.archive.gz",
                env=env)
            listing = subprocess.run(["aws", "--endpoint-url", minio.endpoint, "s3", "ls", f"s3://{BUCKET}/pipe-{run}/"],
                                     env=env, stdout=subprocess.PIPE, check=True).stdout.decode().split()
            measured["archive_bytes"] = int(listing[2]) if len(listing) > 2 else 0
            measured["temp_disk"] = 0
            return measured
        this.measure("archive-pipe", pipe)


def medians(runs):
    """Per pipeline measured in every run, the median of each metric."""
    table = {}
    for pipeline in (p for p in ORDER if all(p in r for r in runs)):
        rows = [r[pipeline] for r in runs]
        table[pipeline] = {key: statistics.median(row.get(key, 0) for row in rows) for key in METRICS}
    return table


def markdown(server, shape, size_mb, bson_bytes, table, repeat, notes):
    floor = table["read-floor"]["wall"]
    consistent = floor + table["oplog-floor"]["wall"] if "oplog-floor" in table else None
    ranged = table["range-scan-floor"]["wall"] if "range-scan-floor" in table else None
    original = table["original-scripts"]["wall"] if "original-scripts" in table else None

    def ratio(value, base):
        return f"{value / base:.2f}" if base else "-"

    lines = [f"### {server}: {shape}, {size_mb} MiB ({bson_bytes / 1e6:.1f} MB of BSON; median of {repeat})", "",
             "| Pipeline | Wall s | x read floor | x range-scan floor | x read + oplog floor | x original scripts | CPU s | CPU s/GiB"
             " | Peak RSS MiB | Temp disk MB | Archive MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for pipeline in (p for p in ORDER if p in table):
        row = table[pipeline]
        lines.append(f"| {pipeline} | {row['wall']:.1f} | {ratio(row['wall'], floor)} | {ratio(row['wall'], ranged)} | "
                     f"{ratio(row['wall'], consistent)} | {ratio(row['wall'], original)} | {row['cpu']:.1f} | {row['cpu_per_gib']:.1f} | "
                     f"{row['rss_mib']:.0f} | {row['temp_disk'] / 1e6:.1f} | {row['archive_bytes'] / 1e6:.1f} |")
    if notes:
        lines.append("")
        lines.extend(f"- {note}" for note in notes)
    return "\n".join(lines) + "\n"


def plot(all_results, out_dir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("e2e: matplotlib not importable; skipping plots", file=sys.stderr)
        return
    for result in all_results:
        result.setdefault("server", "secantus")
        for old, new in RENAMED.items():
            if old in result["medians"]:
                result["medians"][new] = result["medians"].pop(old)
    for metric, label in (("wall", "wall time (s)"), ("rss_mib", "peak RSS (MiB)"), ("cpu_per_gib", "client CPU s per GiB of BSON")):
        for server, shape in sorted({(r["server"], r["shape"]) for r in all_results}):
            rows = sorted((r for r in all_results if r["server"] == server and r["shape"] == shape), key=lambda r: r["size_mb"])
            if len(rows) < 2:
                continue
            pipelines = [p for p in ORDER if all(metric in r["medians"].get(p, {}) for r in rows)]
            if not pipelines:
                continue
            figure, axes = plt.subplots()
            for pipeline in pipelines:
                axes.plot([r["size_mb"] for r in rows], [r["medians"][pipeline][metric] for r in rows], marker="o", label=pipeline)
            axes.set_xlabel("data set (MiB)")
            axes.set_ylabel(label)
            axes.set_title(f"{label}, {server}, {shape}")
            axes.legend()
            figure.savefig(Path(out_dir) / f"{server}-{shape}-{metric}.png", dpi=100)
            plt.close(figure)


def split_supported(binary):
    """Whether this ingest-backup has `backup --split-min-mb`."""
    result = subprocess.run([binary, "backup", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return b"--split-min-mb" in result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="secantus", help="comma-separated: " + ", ".join(SERVERS))
    parser.add_argument("--size-mb", default="100", help="comma-separated data set sizes in MiB")
    parser.add_argument("--shape", default="sample", help="comma-separated: " + ", ".join(SHAPES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pipelines", default=",".join(ORDER),
                        help="comma-separated subset of: " + ", ".join(ORDER) + " (read-floor and ingest-backup always run; "
                             "mongorestore needs original-scripts' dump)")
    parser.add_argument("--cursors", type=int, default=4,
                        help="range-scan-floor: threads and ranges per split collection (default 4, the tool's --parallel)")
    parser.add_argument("--split-min-mb", type=int, default=1,
                        help="collections over this many MiB are split, by ingest-backup-split and range-scan-floor alike")
    parser.add_argument("--binary", default="target/release/ingest-backup")
    parser.add_argument("--python", default=os.environ.get("INGEST_TEST_PYTHON"))
    parser.add_argument("--tools", default=os.environ.get("INGEST_TEST_MONGO_TOOLS"))
    parser.add_argument("--minio", default=os.environ.get("INGEST_TEST_MINIO"))
    parser.add_argument("--ferretdb", default=os.environ.get("INGEST_TEST_FERRETDB"), help="the FerretDB binary (--server ferretdb)")
    parser.add_argument("--out-dir", default="target/e2e")
    parser.add_argument("--replot", nargs="+", metavar="RESULTS_JSON",
                        help="plot earlier runs' results.json files together into --out-dir, running nothing")
    args = parser.parse_args()
    if args.replot:
        merged = [result for path in args.replot for result in json.loads(Path(path).read_text())]
        Path(args.out_dir).mkdir(parents=True, exist_ok=True)
        plot(merged, args.out_dir)
        return
    # SIGTERM unwinds like Ctrl-C, so every server is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.pipelines = args.pipelines.split(",")
    unknown = set(args.pipelines) - set(ORDER)
    if unknown:
        sys.exit(f"e2e: unknown pipelines {sorted(unknown)}; choose from {ORDER}")
    if "mongorestore" in args.pipelines and "original-scripts" not in args.pipelines:
        sys.exit("e2e: mongorestore restores original-scripts' dump; add original-scripts to --pipelines")
    servers = args.server.split(",")
    if set(servers) - set(SERVERS):
        sys.exit(f"e2e: unknown servers {sorted(set(servers) - set(SERVERS))}; choose from {SERVERS}")
    shapes = args.shape.split(",")
    if set(shapes) - set(SHAPES):
        sys.exit(f"e2e: unknown shapes {sorted(set(shapes) - set(SHAPES))}; choose from {SHAPES}")
    if args.cursors < 1:
        sys.exit("e2e: --cursors must be at least 1")
    needed = ["python", "tools", "minio"] + (["ferretdb"] if "ferretdb" in servers else [])
    for flag in needed:
        if not getattr(args, flag):
            sys.exit(f"e2e: --{flag} is not set (run through benches/e2e.sh, which installs the peers)")
    args.binary = str(Path(args.binary).resolve())
    for split_pipeline in ("ingest-backup-split", "ingest-backup-split-forced"):
        if split_pipeline in args.pipelines and not split_supported(args.binary):
            print(f"e2e: {args.binary} has no backup --split-min-mb; skipping {split_pipeline}", file=sys.stderr)
            args.pipelines.remove(split_pipeline)
    args.failed = {}
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    all_results = []
    report = [f"Machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"]
    with tempfile.TemporaryDirectory(prefix="ingest-e2e-") as work:
        minio = Minio(args.minio, work)
        try:
            for server in servers:
                for shape in shapes:
                    for size_mb in (int(s) for s in args.size_mb.split(",")):
                        notes = []
                        with start_server(server, args, work, size_mb) as source:
                            print(f"e2e: {server}: loading {shape} {size_mb} MiB", file=sys.stderr)
                            load(shape, size_mb, source, args.binary, args.python)
                            runs = []
                            for run in range(args.repeat):
                                print(f"e2e: {server}: {shape} {size_mb} MiB run {run + 1}/{args.repeat}", file=sys.stderr)
                                runs.append(run_once(shape, size_mb, args, source, minio, work,
                                                     f"{server}-{shape}-{size_mb}-{run}", notes))
                        table = medians(runs)
                        bson_bytes = statistics.median(r["read-floor"]["bson_bytes"] for r in runs)
                        all_results.append({"server": server, "shape": shape, "size_mb": size_mb, "bson_bytes": bson_bytes,
                                            "runs": runs, "medians": table, "notes": notes})
                        section = markdown(server, shape, size_mb, bson_bytes, table, args.repeat, notes)
                        print(section, flush=True)
                        report.append(section)
                        # Written after every size, so a failure later keeps what was measured.
                        (out_dir / "results.json").write_text(json.dumps(all_results, indent=2))
                        (out_dir / "results.md").write_text("\n".join(report))
        finally:
            minio.stop()
    (out_dir / "results.json").write_text(json.dumps(all_results, indent=2))
    (out_dir / "results.md").write_text("\n".join(report))
    plot(all_results, out_dir)
    print(f"e2e: results in {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main()
    except SetupError as error:
        sys.exit(f"e2e: {error}")
