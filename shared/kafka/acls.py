"""Who may do what on Kafka (issue 19): one SCRAM principal per process and per upstream producer,
`admin` for the tools, and the ACLs the StandardAuthorizer enforces.

- A service writes its own topic and the dead-letter topic (intake also the `upstream.*` topics:
  its webhook and its CRM corrections write there), reads the topics it consumes and uses its
  own consumer group. No service uses transactions, so no transactional-id ACL.
- The console writes only dead letters; it reads what its read model consumes.
- A producer writes its `upstream.*` topic and reads nothing.
- `admin` is a super user (topic creation, ACLs, replay, dlq, audit, tests); so is the brokers'
  own certificate name on the controller listener.
Nobody else reads a customer topic: with no ACL the authorizer denies
(`allow.everyone.if.no.acl.found=false`).

The bindings are literal names with the settings' topic prefix, so an isolated namespace (tests,
benchmarks, fault runs) gets the same rules on its own topics and groups.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    CreateAclsResponse_v1,
    DeleteAclsRequest_v1,
    DeleteAclsResponse_v1,
    DescribeAclsRequest,
    DescribeAclsResponse_v0,
    DescribeAclsResponse_v1,
    DescribeAclsResponse_v2,
)
from aiokafka.protocol.api import Request

from shared.events.catalog import (
    COMPLAINTS,
    DEADLETTER,
    FOLLOWUP,
    INTAKE,
    NOTIFIER,
    PRODUCER_TOPICS,
    QUALITY,
    SERVICE_TOPIC,
    UPSTREAM_TOPICS,
)
from shared.settings import PROCESSES, Settings

ADMIN = "admin"
PRODUCERS: tuple[str, ...] = tuple(PRODUCER_TOPICS)
PRINCIPALS: tuple[str, ...] = (*PROCESSES, *PRODUCERS, ADMIN)
# The brokers' certificate (CN) on the mutual-TLS controller listener: a super user, like admin.
BROKER_CN = "aftersales-kafka-broker"

# What each process consumes (its services.<name>.app subscriptions; docs/api/*.asyncapi.yaml).
# tests/unit/test_kafka_acls.py checks this against both.
CONSUMES: dict[str, tuple[str, ...]] = {
    "intake": UPSTREAM_TOPICS,
    "followup": (INTAKE, COMPLAINTS, QUALITY),
    "complaints": (INTAKE, FOLLOWUP, QUALITY),
    "quality": (INTAKE, FOLLOWUP, COMPLAINTS),
    "notifier": (INTAKE, FOLLOWUP, COMPLAINTS, QUALITY, NOTIFIER),
    "console": (INTAKE, FOLLOWUP, COMPLAINTS, NOTIFIER),
}


def publishes(process: str) -> tuple[str, ...]:
    """The topics a process writes."""
    own = (SERVICE_TOPIC[process],) if process in SERVICE_TOPIC else ()
    return (*own, *(UPSTREAM_TOPICS if process == "intake" else ()), DEADLETTER)


# Kafka's enums (org.apache.kafka.common.resource / acl)
TOPIC, GROUP = 2, 3
ANY_PATTERN, LITERAL = 1, 3
ANY_OPERATION, READ, WRITE, DESCRIBE = 1, 3, 4, 8
ANY_PERMISSION, ALLOW = 1, 3
OPERATION_NAMES = {READ: "READ", WRITE: "WRITE", DESCRIBE: "DESCRIBE"}


@dataclass(frozen=True, order=True)
class Acl:
    resource_type: int
    resource: str
    principal: str
    operation: int

    def __str__(self) -> str:
        kind = "topic" if self.resource_type == TOPIC else "group"
        return f"User:{self.principal} {OPERATION_NAMES[self.operation]} {kind} {self.resource}"


def acls(settings: Settings) -> list[Acl]:
    """Every ALLOW binding of the platform, with the settings' topic prefix."""
    rules: set[Acl] = set()
    for process in PROCESSES:
        for topic in publishes(process):
            rules.add(Acl(TOPIC, settings.topic(topic), process, WRITE))
        for topic in CONSUMES[process]:
            rules.add(Acl(TOPIC, settings.topic(topic), process, READ))
        # its consumer group (services.<name>: `<prefix><name>`), and the console's rebuild
        rules.add(Acl(GROUP, f"{settings.topic_prefix}{process}", process, READ))
    for producer, topic in PRODUCER_TOPICS.items():
        rules.add(Acl(TOPIC, settings.topic(topic), producer, WRITE))
    return sorted(rules)


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 30

    def __init__(self, rules: Iterable[Acl]) -> None:
        self._rows = [(r.resource_type, r.resource, LITERAL, f"User:{r.principal}", "*", r.operation, ALLOW)
                      for r in rules]

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(self._rows)


class _DeleteAcls(Request[DeleteAclsRequest_v1]):  # type: ignore[misc]
    API_KEY = 31

    def __init__(self, resources: Iterable[tuple[int, str]]) -> None:
        self._filters = [(kind, name, LITERAL, None, None, ANY_OPERATION, ANY_PERMISSION) for kind, name in resources]

    def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
        return request_struct_class(self._filters)


def secured(settings: Settings) -> bool:
    """Whether the broker authenticates (and so authorizes) this settings' clients."""
    return settings.kafka_security_protocol.startswith("SASL")


async def create_acls(admin: AIOKafkaAdminClient, rules: list[Acl]) -> None:
    """Create the bindings (idempotent: an existing binding is left as it is)."""
    if not rules:
        return
    response = await admin._send_request(_CreateAcls(rules))  # noqa: SLF001 - aiokafka has no ACL API
    assert isinstance(response, CreateAclsResponse_v1)
    failed = [(rule, message or code) for rule, (code, message) in zip(rules, response.creation_responses, strict=True)
              if code]
    if failed:
        raise RuntimeError(f"Kafka refused {len(failed)} ACL(s): " + "; ".join(f"{r}: {why}" for r, why in failed[:5]))


async def wait_until_enforced(admin: AIOKafkaAdminClient, rules: list[Acl], timeout: float = 30.0) -> None:
    """Wait until the broker's authorizer holds every binding. CreateAcls answers once the
    controller has committed them; a broker applies the metadata a moment later, and a client
    started in between is refused (TopicAuthorizationFailedError on its first metadata request)."""
    wanted: dict[tuple[int, str], set[tuple[str, int]]] = {}
    for rule in rules:
        wanted.setdefault((rule.resource_type, rule.resource), set()).add((f"User:{rule.principal}", rule.operation))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while wanted:
        for resource in list(wanted):
            if wanted[resource] <= await _described(admin, resource):
                del wanted[resource]
        if not wanted:
            return
        if loop.time() > deadline:
            missing = ", ".join(f"{kind}:{name}" for kind, name in sorted(wanted)[:5])
            raise TimeoutError(f"the broker did not enforce the ACLs on {missing} within {timeout}s")
        await asyncio.sleep(0.1)


async def _described(admin: AIOKafkaAdminClient, resource: tuple[int, str]) -> set[tuple[str, int]]:
    """The ALLOW bindings (principal, operation) the broker holds on a literal resource."""
    kind, name = resource
    request = DescribeAclsRequest(kind, name, LITERAL, None, None, ANY_OPERATION, ANY_PERMISSION)
    response = await admin._send_request(request)  # noqa: SLF001
    assert isinstance(response, DescribeAclsResponse_v0 | DescribeAclsResponse_v1 | DescribeAclsResponse_v2)
    if response.error_code:
        raise RuntimeError(f"Kafka refused to describe ACLs on {name}: {response.error_message or response.error_code}")
    return {(principal, operation) for _type, _name, *_pattern, entries in response.resources
            for principal, _host, operation, permission in entries if permission == ALLOW}


async def delete_acls(admin: AIOKafkaAdminClient, resources: list[tuple[int, str]]) -> None:
    """Remove every binding on these (type, literal name) resources."""
    if not resources:
        return
    response = await admin._send_request(_DeleteAcls(resources))  # noqa: SLF001
    assert isinstance(response, DeleteAclsResponse_v1)
    errors = [code for code, *_ in response.filter_responses if code]
    if errors:
        raise RuntimeError(f"Kafka refused to delete ACLs (error codes {sorted(set(errors))})")


def new_credentials() -> str:
    """A fresh password for every principal, as AFTERSALES_KAFKA_CREDENTIALS."""
    return ",".join(f"{principal}={secrets.token_urlsafe(32)}" for principal in PRINCIPALS)
