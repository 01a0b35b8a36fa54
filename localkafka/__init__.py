"""The local broker: a real Apache Kafka (KRaft) from Maven Central jars, for development and tests.

``hookline kafka start|stop|status`` drives it; the test suite and the benchmarks
start their own on free ports. Nothing in the services imports this package.
"""

from localkafka.launcher import (
    BrokerStatus,
    LocalKafka,
    default_cache,
    ensure_jars,
    kafka_version,
    port_taken,
)

__all__ = [
    "BrokerStatus",
    "LocalKafka",
    "default_cache",
    "ensure_jars",
    "kafka_version",
    "port_taken",
]
