"""Apache Kafka, single-node KRaft, from Maven Central jars: no Docker, no tarball.

Maven resolves ``org.apache.kafka:kafka_2.13`` (the broker), ``kafka-tools`` (ProducerPerformance
and ConsumerPerformance, the machine's limit in benchmarks) and ``slf4j-reload4j`` (the broker jar
ships no logging binding) into one folder; the JDK then runs the same main classes the Apache
scripts run: ``kafka.tools.StorageTool`` to format, ``kafka.Kafka`` to serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from brokerflow.errors import StackError
from brokerflow.stack._proc import ManagedProcess, port_open, require_tool, run_checked, tail

__all__ = ["CLUSTER_ID", "KafkaService", "kafka_health"]

#: Fixed, so a wiped data folder formats to the same cluster (seed 001 uses this id).
CLUSTER_ID = "MkU3OEVBNTcwNTJENDM2Qk"
HEALTH_TOPIC = "__brokerflow_health"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.brokerflow.stack</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.controller=INFO
log4j.logger.kafka.log.LogCleaner=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
"""


def _server_properties(host: str, port: int, controller_port: int, data_dir: Path) -> str:
    return f"""# Written by `brokerflow stack up`; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data_dir}
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
# One broker: the internal topics must accept a replication factor of 1, or transactions and
# consumer groups never become available.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# Tests and workers join groups often; waiting 3 s per rebalance only slows them down.
group.initial.rebalance.delay.ms=0
# Topics come from the catalog; a typo must fail, not create a topic.
auto.create.topics.enable=false
log.retention.hours=168
log.segment.bytes=268435456
num.network.threads=3
num.io.threads=4
"""


class KafkaService:
    name = "kafka"

    def __init__(
        self, stack_dir: Path, version: str, bootstrap: str, cache_dir: Path | None = None
    ) -> None:
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        self.host = host or "127.0.0.1"
        self.port = int(port)
        self.controller_port = self.port + 1
        self.version = version
        self.bootstrap = bootstrap
        self.home = stack_dir / "kafka"
        cache = cache_dir or stack_dir / "cache"
        self.libs = cache / f"kafka-{version}" / "libs"
        self.m2 = cache / "m2"
        self.data_dir = self.home / "data"
        self.log_path = stack_dir / "logs" / "kafka.log"
        self.provision_log = stack_dir / "logs" / "kafka-provision.log"
        self.process = ManagedProcess("kafka", stack_dir / "run", self.log_path)

    # --- provisioning -----------------------------------------------------------------------

    def provisioned(self) -> bool:
        return (self.libs / ".complete").exists()

    def provision(self) -> None:
        """Fetch the broker's jars with Maven (once; later runs reuse the folder)."""
        if self.provisioned():
            return
        require_tool("java", "apt-get install -y openjdk-17-jre-headless")
        mvn = require_tool("mvn", "apt-get install -y maven")
        build = self.libs.parent
        build.mkdir(parents=True, exist_ok=True)
        (build / "pom.xml").write_text(_POM.format(version=self.version))
        run_checked(
            [
                mvn,
                "-B",
                "-q",
                f"-Dmaven.repo.local={self.m2}",
                "-f",
                str(build / "pom.xml"),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={self.libs}",
            ],
            what=f"fetching Kafka {self.version} jars with Maven",
            log=self.provision_log,
        )
        (self.libs / ".complete").write_text(self.version)

    def _java(
        self, main_class: str, *args: str, jvm_opts: Sequence[str] = ("-Xmx256m",)
    ) -> list[str]:
        java = require_tool("java", "apt-get install -y openjdk-17-jre-headless")
        return [
            java,
            *jvm_opts,
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
            "-cp",
            f"{self.libs}/*",
            main_class,
            *args,
        ]

    def configure(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "log4j.properties").write_text(_LOG4J)
        properties = self.home / "server.properties"
        properties.write_text(
            _server_properties(self.host, self.port, self.controller_port, self.data_dir)
        )
        if not (self.data_dir / "meta.properties").exists():
            run_checked(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    CLUSTER_ID,
                    "-c",
                    str(properties),
                    "--ignore-formatted",
                ),
                what="formatting Kafka's KRaft storage",
                log=self.provision_log,
            )
        return properties

    # --- lifecycle --------------------------------------------------------------------------

    def running_pid(self) -> int | None:
        return self.process.pid()

    def answers(self) -> bool:
        return port_open(self.host, self.port)

    def start(self) -> None:
        properties = self.configure()
        heap = os.environ.get("KAFKA_HEAP_OPTS", "-Xms256m -Xmx1g").split()
        jvm_opts = [*heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"]
        self.process.start(
            self._java("kafka.Kafka", str(properties), jvm_opts=jvm_opts), cwd=self.home
        )

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.exited_early():
                raise StackError(
                    f"Kafka exited during start-up; last lines of {self.log_path}:\n"
                    f"{tail(self.log_path, 30)}"
                )
            if self.answers():
                try:
                    asyncio.run(kafka_health(self.bootstrap, timeout_s=15))
                    return
                except StackError:
                    pass
            time.sleep(0.3)
        raise StackError(
            f"Kafka did not become ready within {timeout_s:.0f} s; last lines of {self.log_path}:\n"
            f"{tail(self.log_path, 30)}"
        )

    def stop(self) -> bool:
        return self.process.stop(timeout_s=30)

    def tool(self, main_class: str, *args: str) -> list[str]:
        """Command line for a Kafka tool class (ProducerPerformance, ConsumerPerformance...)."""
        return self._java(main_class, *args, jvm_opts=("-Xmx512m",))


async def kafka_health(bootstrap: str, timeout_s: float = 10.0) -> float:
    """Metadata, then a produce and a consume of one record; returns the round trip in seconds."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError, TopicAlreadyExistsError

    started = time.perf_counter()
    timeout_ms = int(timeout_s * 1000)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms, acks="all"
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        request_timeout_ms=timeout_ms,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            if HEALTH_TOPIC not in await admin.list_topics():
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(
                        [NewTopic(HEALTH_TOPIC, 1, 1, topic_configs={"retention.ms": "3600000"})]
                    )
            await producer.start()
            token = uuid.uuid4().hex.encode()
            sent = await producer.send_and_wait(HEALTH_TOPIC, token, key=b"health")
            await consumer.start()
            partition = TopicPartition(HEALTH_TOPIC, 0)
            consumer.assign([partition])
            consumer.seek(partition, sent.offset)
            record = await consumer.getone()
            if record.value != token:
                raise StackError("Kafka health check read back a different record than it wrote")
    except (TimeoutError, KafkaError, OSError) as exc:
        raise StackError(f"Kafka at {bootstrap} failed its health check: {exc!r}") from exc
    finally:
        for client in (consumer, producer, admin):
            with contextlib.suppress(Exception):
                await (client.stop() if hasattr(client, "stop") else client.close())
    return time.perf_counter() - started
