"""A real Apache Kafka broker (KRaft, one combined broker+controller node) for tests, benchmarks and local use.

The jars come from Maven Central through deploy/kafka/pom.xml (`make kafka-jars`), cached under
`${CRMBONUS_KAFKA_CACHE:-${XDG_CACHE_HOME:-~/.cache}/crmbonus}/kafka-<version>/lib`; a second run fetches
nothing. Each broker gets a working directory with its own test CA, a broker certificate for
127.0.0.1/localhost signed by it, a SCRAM-SHA-512 user with a random password, and three listeners
on free ports of 127.0.0.1:

    PLAINTEXT   no authentication                        -> `plaintext` ("kafka://127.0.0.1:PORT")
    SASL_SSL    TLS (CA in `ca_file`) + SCRAM-SHA-512   -> `sasl_ssl_bootstrap` ("127.0.0.1:PORT")
    CONTROLLER  KRaft's own (never for clients)

    with ApacheKafka() as kafka:          # or: async with ApacheKafka() as kafka
        use(kafka.plaintext)
        kafka.kill()                      # SIGKILL, as a crash would
        kafka.start()                     # same storage, same ports, same user; or: await kafka.start_async()

Auto topic creation is off: whatever needs a topic creates it (or refuses to run without it).

`python -m tests.apache_kafka` (`make kafka`) runs one in the foreground until Ctrl-C;
`python -m tests.apache_kafka jars` (`make kafka-jars`) only fetches the jars.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "deploy" / "kafka" / "pom.xml"
HOST = "127.0.0.1"
JAVA_MIN = 17  # Kafka 4.x brokers need Java 17 or later
SCRAM = "SCRAM-SHA-512"

# the JVM flags of Kafka's own bin/kafka-run-class.sh, less its 1 GiB heap
JVM_FLAGS = ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
             "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true")
#: That heap, fixed (bin/kafka-server-start.sh: -Xmx1G -Xms1G), for a broker that serves more than a
#: test: `python -m tests.apache_kafka` (`make kafka`) and the benchmark. A small start lets G1
#: collect again and again under a burst (6 of the broker's ~18 µs a published record, measured)
STANDALONE_HEAP = "1g"

LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- the broker's log, to {log} only (nothing on the terminal) -->
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName="{log}" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="kafka.network.RequestChannel$" level="warn"/>
    <Logger name="org.apache.kafka.clients.NetworkClient" level="warn"/>
    <Root level="info"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


class KafkaUnavailable(RuntimeError):
    """Java, Maven or openssl is missing (or too old): the caller should skip, with this message."""


class KafkaError(RuntimeError):
    """The jars could not be fetched, or the broker did not format, start or answer (with its log tail)."""


def pom_version(pom: Path = POM) -> str:
    """The Kafka version deploy/kafka/pom.xml asks for (the pom is the one place it is written)."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if not found:
        raise KafkaError(f"{pom} has no <kafka.version>")
    return found.group(1).strip()


KAFKA_VERSION = pom_version()


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    root = os.environ.get("CRMBONUS_KAFKA_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "crmbonus")
    return Path(root) / f"kafka-{version}"


def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def cached_lib(pom: Path = POM) -> Path | None:
    """The lib dir if a complete copy for this very pom is cached (its stamp holds the pom's digest)."""
    cache = cache_dir(pom_version(pom))
    stamp = cache / "lib.stamp"
    lib = cache / "lib"
    if stamp.is_file() and stamp.read_text().strip() == _pom_digest(pom) and lib.is_dir():
        return lib
    return None


@functools.cache
def java_version() -> int | None:
    """The major version of `java` on PATH, None without one."""
    if shutil.which("java") is None:
        return None
    done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major  # "1.8.0" is Java 8


def unavailable(pom: Path = POM) -> str | None:
    """Why no Apache Kafka broker can run here (a skip reason), or None when one can."""
    major = java_version()
    if major is None:
        return "Apache Kafka tier skipped: no `java` on PATH (Debian: default-jdk-headless; `make java-deps`)"
    if major < JAVA_MIN:
        return f"Apache Kafka tier skipped: Kafka {pom_version(pom)} needs Java {JAVA_MIN}+, `java` is {major}"
    if shutil.which("openssl") is None:
        return "Apache Kafka tier skipped: no `openssl` on PATH (for the test CA and broker certificate)"
    if cached_lib(pom) is None and shutil.which("mvn") is None:
        return ("Apache Kafka tier skipped: the Kafka jars are not cached and there is no `mvn` to fetch them "
                "(Debian: maven; `make java-deps`)")
    return None


def ensure_jars(pom: Path = POM, *, quiet: bool = True) -> Path:
    """The directory of the broker's jars; runs Maven once to fetch and copy them when not cached.

    Maven's own cache is ~/.m2 (MAVEN_OPTS=-Dmaven.repo.local=DIR points it elsewhere). The copy
    goes to a temporary directory renamed into place, and the stamp is written last, so an
    interrupted fetch is redone, never half-used; a lock keeps two processes from fetching at once.
    """
    lib = cached_lib(pom)
    if lib is not None:
        return lib
    if shutil.which("mvn") is None:
        raise KafkaUnavailable("the Kafka jars are not cached and there is no `mvn` to fetch them")
    cache = cache_dir(pom_version(pom))
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lib = cached_lib(pom)  # another process may have fetched while this one waited
        if lib is not None:
            return lib
        staging = Path(tempfile.mkdtemp(prefix="lib.", dir=cache))
        command = ["mvn", "-B", *(["-q"] if quiet else []), "-f", str(pom),
                   "dependency:copy-dependencies", f"-DoutputDirectory={staging}"]
        done = subprocess.run(command, capture_output=quiet, text=True, timeout=1800)
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            output = ((done.stdout or "") + (done.stderr or ""))[-4000:]
            raise KafkaError(f"`{' '.join(command)}` exited {done.returncode}\n{output}")
        if not any(staging.glob("kafka_2.13-*.jar")):
            raise KafkaError(f"Maven copied no kafka_2.13 jar into {staging}")
        target = cache / "lib"
        stamp = cache / "lib.stamp"
        stamp.unlink(missing_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        stamp.write_text(_pom_digest(pom) + "\n")
        return target


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (held together while picked, so never the same one twice)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind((HOST, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def kafka_uuid() -> str:
    """A cluster id as Kafka writes them: 16 random bytes, URL-safe base64 without padding, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _run(command: list[str], what: str, cwd: Path, timeout: float = 120) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise KafkaError(f"{what}: `{' '.join(command)}` exited {done.returncode}\n"
                         f"{(done.stdout + done.stderr)[-4000:]}")


def make_certificates(directory: Path, store_password: str) -> tuple[Path, Path]:
    """A CA of its own (ca.pem, for clients) and a PKCS12 keystore for the broker whose certificate it signed.

    EC P-256 keys (instant to make); the broker's certificate names localhost and 127.0.0.1, says
    serverAuth, and carries the key identifiers strict X.509 checks ask for.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(["openssl", "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-sha256",
          "-subj", "/CN=crmbonus test CA",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign",
          "-addext", "subjectKeyIdentifier=hash"], "making the test CA", directory)
    _run(["openssl", "req", "-new", *key, "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=localhost"],
         "making the broker's key", directory)
    (directory / "broker.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n")
    _run(["openssl", "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
          "-out", "broker.pem", "-days", "30", "-sha256", "-extfile", "broker.ext"],
         "signing the broker's certificate", directory)
    _run(["openssl", "pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem",
          "-name", "broker", "-out", "broker.p12", "-passout", f"pass:{store_password}"],
         "writing the broker's PKCS12 keystore", directory)
    (directory / "ca.key").unlink()  # nothing is signed after this
    return directory / "ca.pem", directory / "broker.p12"


@dataclass
class _State:
    """What a working directory keeps across starts (and across processes: kafka.json)."""

    version: str
    cluster_id: str
    plaintext_port: int
    sasl_ssl_port: int
    controller_port: int
    username: str
    password: str
    store_password: str


class ApacheKafka:
    """One Apache Kafka broker process; see the module docstring. Not thread-safe.

    `workdir`: reuse (or create) this directory, keeping it afterwards; default a temporary one,
    removed on exit unless `keep`. A directory that holds a kafka.json from an earlier run starts
    again on its storage, ports and credentials. `ports` = (plaintext, sasl_ssl, controller) for a
    new directory; default free ones.
    """

    def __init__(self, workdir: Path | str | None = None, *, heap: str = "512m", heap_min: str | None = None,
                 username: str = "crmbonus", ports: tuple[int, int, int] | None = None, startup_timeout: float = 120.0,
                 stop_timeout: float = 30.0, keep: bool = False, pom: Path = POM) -> None:
        self.heap = heap
        #: the JVM's initial heap (-Xms); None: 64 MB or `heap` if smaller, which a test suite's brief
        #: broker likes; a benchmark gives Kafka's own fixed heap (-Xms = -Xmx), else G1 grows a
        #: small heap by collecting again and again under load
        self.heap_min = heap_min
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.pom = pom
        self._requested_username = username
        self._requested_ports = ports
        self._own_workdir = workdir is None
        self._keep = keep or workdir is not None
        made = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="crmbonus-kafka-"))
        self.workdir = made.resolve()
        self._state: _State | None = None
        self._lib: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None  # launch to first answer, of the latest start
        self._started_at = 0.0
        atexit.register(self._kill_at_exit)

    # -- what clients need ------------------------------------------------------------------------

    @property
    def state(self) -> _State:
        if self._state is None:
            raise KafkaError("the broker was never started")
        return self._state

    @property
    def version(self) -> str:
        return pom_version(self.pom)

    @property
    def plaintext(self) -> str:
        """crmbonus's broker syntax for the PLAINTEXT listener: kafka://127.0.0.1:PORT."""
        return f"kafka://{self.plaintext_bootstrap}"

    @property
    def plaintext_bootstrap(self) -> str:
        return f"{HOST}:{self.state.plaintext_port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        return f"{HOST}:{self.state.sasl_ssl_port}"

    @property
    def username(self) -> str:
        return self.state.username

    @property
    def password(self) -> str:
        return self.state.password

    @property
    def ca_file(self) -> Path:
        """The test CA's certificate (PEM): what a SASL_SSL client trusts."""
        return self.workdir / "tls" / "ca.pem"

    def aiokafka_options(self, listener: str = "plaintext", *, password: str | None = None) -> dict[str, Any]:
        """Keyword arguments for an aiokafka client of `listener` ("plaintext" or "sasl_ssl")."""
        if listener == "plaintext":
            return {"bootstrap_servers": self.plaintext_bootstrap}
        if listener != "sasl_ssl":
            raise ValueError(f"listener {listener!r} is neither 'plaintext' nor 'sasl_ssl'")
        return {"bootstrap_servers": self.sasl_ssl_bootstrap, "security_protocol": "SASL_SSL",
                "sasl_mechanism": SCRAM, "sasl_plain_username": self.username,
                "sasl_plain_password": self.password if password is None else password,
                "ssl_context": create_ssl_context(cafile=str(self.ca_file))}

    @property
    def log_file(self) -> Path:
        """The broker's log4j2 log (every start appends to it)."""
        return self.workdir / "server.log"

    @property
    def stdout_file(self) -> Path:
        """The JVM's own stdout/stderr (crashes before log4j2 is up, OutOfMemoryError...)."""
        return self.workdir / "stdout.log"

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        for path in (self.stdout_file, self.log_file):
            if path.is_file() and path.stat().st_size:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(parts) or f"(no output in {self.workdir})"

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> ApacheKafka:
        """Start the broker (formatting a new working directory first) and return once it answers."""
        self._launch()
        pool = concurrent.futures.ThreadPoolExecutor(1)  # a loop of its own: fine inside a running one too
        try:
            pool.submit(asyncio.run, self._wait_ready()).result()
        except BaseException:  # Ctrl-C while waiting, too: the probe sees the broker gone and ends
            self.kill()
            raise
        finally:
            pool.shutdown(wait=True)
        return self

    async def start_async(self) -> ApacheKafka:
        """start() for a running loop: jars, format and launch in a thread, then the first answer awaited here."""
        await asyncio.to_thread(self._launch)
        try:
            await self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after `stop_timeout` seconds."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)

    async def stop_async(self) -> None:
        await asyncio.to_thread(self.stop)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no flush, no controlled shutdown. start() again recovers the log."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(30)

    def close(self) -> None:
        """stop(), and remove a temporary working directory (unless keep)."""
        self.stop()
        atexit.unregister(self._kill_at_exit)
        if self._own_workdir and not self._keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ApacheKafka:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> ApacheKafka:
        try:
            return await self.start_async()
        except BaseException:
            await asyncio.to_thread(self.close)
            raise

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await asyncio.to_thread(self.close)

    def _kill_at_exit(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()

    # -- the work ---------------------------------------------------------------------------------

    def _launch(self) -> None:
        if self.running:
            raise KafkaError(f"the broker is already running (pid {self.pid})")
        reason = unavailable(self.pom)
        if reason is not None:
            raise KafkaUnavailable(reason)
        if self._lib is None:
            self._lib = ensure_jars(self.pom)
        if self._state is None:
            self._state = self._load_or_format()
        (self.workdir / "server.properties").write_text(self._server_properties(self._state))  # this version's
        self._write_log4j()
        initial = self.heap_min or f"{min(64, _megabytes(self.heap))}m"
        command = ["java", f"-Xms{initial}", f"-Xmx{self.heap}", *JVM_FLAGS,
                   f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.xml'}",
                   f"-Dkafka.logs.dir={self.workdir}",
                   "-cp", f"{self._lib}/*", "kafka.Kafka", str(self.workdir / "server.properties")]
        self._started_at = time.monotonic()
        with self.stdout_file.open("ab") as out:
            # a session of its own: Ctrl-C in a terminal reaches Python, which stops the broker in order
            self._process = subprocess.Popen(command, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)

    def _load_or_format(self) -> _State:
        saved = self.workdir / "kafka.json"
        if saved.is_file():
            state = _State(**json.loads(saved.read_text()))
            if state.version != self.version:
                raise KafkaError(f"{self.workdir} holds Kafka {state.version}'s storage, this is {self.version}")
            ports = (state.plaintext_port, state.sasl_ssl_port, state.controller_port)
            if self._requested_ports is not None and tuple(self._requested_ports) != ports:
                raise KafkaError(f"{self.workdir} was made for ports {ports}, not {self._requested_ports}: "
                                 "remove it (make clean) or use another working directory")
            return state
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.workdir / "data", ignore_errors=True)  # a format that never finished (no kafka.json)
        plaintext, sasl_ssl, controller = self._requested_ports or free_ports(3)
        state = _State(version=self.version, cluster_id=kafka_uuid(), plaintext_port=plaintext,
                       sasl_ssl_port=sasl_ssl, controller_port=controller, username=self._requested_username,
                       password=secrets.token_hex(16), store_password=secrets.token_hex(16))
        make_certificates(self.workdir / "tls", state.store_password)
        properties = self.workdir / "server.properties"
        properties.write_text(self._server_properties(state))
        # --standalone: a dynamic KRaft quorum (controller.quorum.bootstrap.servers) whose one voter is this node
        _run(["java", "-Xmx256m", f"-Dlog4j2.configurationFile={self._write_log4j()}", "-cp", f"{self._lib}/*",
              "kafka.tools.StorageTool", "format", "--config", str(properties), "--cluster-id", state.cluster_id,
              "--standalone", "--add-scram", f"{SCRAM}=[name={state.username},password={state.password}]"],
             "formatting the broker's storage", self.workdir)
        saved.write_text(json.dumps(asdict(state), indent=2) + "\n")  # written last: a half-made directory is redone
        saved.chmod(0o600)
        return state

    def _write_log4j(self) -> Path:
        path = self.workdir / "log4j2.xml"
        path.write_text(LOG4J2_XML.format(log=self.log_file))
        return path

    def _server_properties(self, s: _State) -> str:
        data = self.workdir / "data"
        keystore = self.workdir / "tls" / "broker.p12"
        listeners = f"PLAINTEXT://{HOST}:{s.plaintext_port},SASL_SSL://{HOST}:{s.sasl_ssl_port}," \
                    f"CONTROLLER://{HOST}:{s.controller_port}"
        return f"""\
# written by tests/apache_kafka.py: one node, broker and controller in one process (KRaft combined mode)
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers={HOST}:{s.controller_port}
controller.listener.names=CONTROLLER
listeners={listeners}
advertised.listeners={listeners}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT

# SASL_SSL: TLS with the test CA's certificate, then SCRAM-SHA-512 (the user is added by the storage format)
sasl.enabled.mechanisms={SCRAM}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location={keystore}
listener.name.sasl_ssl.ssl.keystore.password={s.store_password}
listener.name.sasl_ssl.ssl.key.password={s.store_password}
listener.name.sasl_ssl.ssl.client.auth=none

log.dirs={data}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
# the product creates its topics (or refuses to run without them)
auto.create.topics.enable=false

# internal topics on one node: replication 1, few partitions (50 each by default: slow to create here)
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# a killed broker's registration lingers until its session times out (9 s by default): only then may
# the restarted one register again, so a kill -9 and start costs that much; heartbeats 1 s, session 4 s
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000

# a partition's offset and time indexes are sparse files of log.index.size.max.bytes (10 MB by
# default), mmapped; the first write to each faults in the disk's read-ahead of zeros, 8 MB on these
# VMs (/sys/block/*/queue/read_ahead_kb): 18 fresh partitions cost the broker ~1.3 s of kernel CPU,
# 13 µs a record of a 100,000-record burst into new topics (perf: memset in ext4_mpage_readpages),
# where a topic that already holds data costs 0.4. With 1 MB indexes, 0.5 (measured); a segment
# then rolls when its index fills, at ~512 MB of log instead of log.segment.bytes' 1 GB
log.index.size.max.bytes=1048576

# a small machine
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
"""

    async def _wait_ready(self) -> None:
        """Until an admin client lists topics on PLAINTEXT; KafkaError with the log tail if it never does."""
        deadline = self._started_at + self.startup_timeout
        last: BaseException | None = None
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise KafkaError(f"the broker exited ({code}) before answering\n{self.log_tail()}")
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise KafkaError(f"the broker did not answer on {self.plaintext_bootstrap} within "
                                 f"{self.startup_timeout:.0f} s (last error: {last!r}); killed it\n{self.log_tail()}")
            if not await _port_open(self.state.plaintext_port):  # nothing listens yet: no client, no log noise
                await asyncio.sleep(0.1)  # polling interval
                continue
            admin = AIOKafkaAdminClient(bootstrap_servers=self.plaintext_bootstrap, request_timeout_ms=5000,
                                        retry_backoff_ms=100)
            try:
                await asyncio.wait_for(self._list_topics(admin), min(left, 10))
            except Exception as error:  # not up yet: refused, timed out, not ready
                last = error
                await asyncio.sleep(0.2)  # polling interval
                continue
            finally:
                await admin.close()
            self.startup_seconds = time.monotonic() - self._started_at
            return

    @staticmethod
    async def _list_topics(admin: AIOKafkaAdminClient) -> None:
        await admin.start()
        await admin.list_topics()


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _megabytes(heap: str) -> int:
    found = re.fullmatch(r"(\d+)([kKmMgG]?)", heap)
    if not found:
        raise ValueError(f"heap {heap!r} is not like 512m or 1g")
    number, unit = int(found.group(1)), found.group(2).lower()
    return {"k": number // 1024, "m": number, "g": number * 1024, "": number // (1024 * 1024)}[unit]


def _rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.apache_kafka", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=("run", "jars"), default="run",
                        help="run: a broker in the foreground until Ctrl-C (default); jars: only fetch the jars")
    parser.add_argument("--workdir", type=Path, help="keep storage, certificates and credentials here "
                        "(started again on the next run); default a temporary directory removed on exit")
    parser.add_argument("--port", type=int, help="PLAINTEXT on PORT, SASL_SSL on PORT+1, CONTROLLER on PORT+2 "
                        "(a new working directory only); default free ports")
    parser.add_argument("--heap", default=STANDALONE_HEAP, help=f"the broker's -Xmx (default {STANDALONE_HEAP}, "
                        "as Kafka's own kafka-server-start.sh)")
    parser.add_argument("--heap-min", default=STANDALONE_HEAP, help=f"the broker's -Xms (default {STANDALONE_HEAP})")
    args = parser.parse_args(argv)

    if args.command == "jars":
        began = time.monotonic()
        try:
            lib = ensure_jars()
        except (KafkaUnavailable, KafkaError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"Kafka {KAFKA_VERSION}: {len(list(lib.glob('*.jar')))} jars in {lib} "
              f"({time.monotonic() - began:.1f} s)")
        return 0

    ports = (args.port, args.port + 1, args.port + 2) if args.port else None
    kafka = ApacheKafka(args.workdir, heap=args.heap, heap_min=args.heap_min, ports=ports)
    print(f"starting Apache Kafka {kafka.version} in {kafka.workdir} ...", flush=True)
    try:
        kafka.__enter__()
    except (KafkaUnavailable, KafkaError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    # from here on Ctrl-C, SIGTERM and the broker's own exit (SIGCHLD) are waited for, not handled
    waited = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    try:
        print(f"""\
Apache Kafka {kafka.version} is up (pid {kafka.pid}; answered {kafka.startup_seconds:.1f} s after launch; \
RSS {_rss_mib(kafka.pid or 0) or 0:.0f} MiB)
  PLAINTEXT  {kafka.plaintext}   (CRMBONUS_BROKER={kafka.plaintext})
  SASL_SSL   {kafka.sasl_ssl_bootstrap}   SCRAM-SHA-512 username {kafka.username} password {kafka.password}
  CA file    {kafka.ca_file}
  log        {kafka.log_file}
Ctrl-C stops it.""", flush=True)
        while kafka.running:
            if signal.sigwait(waited) != signal.SIGCHLD:
                print("stopping ...", flush=True)
                return 0
        print(f"the broker exited by itself\n{kafka.log_tail()}", file=sys.stderr)
        return 1
    finally:
        kafka.close()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, waited)


if __name__ == "__main__":
    sys.exit(main())
