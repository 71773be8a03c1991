"""The exception tree. Every error brokerflow raises on purpose is a ``BrokerflowError``.

BrokerflowError
├── ConfigError                  a setting is missing or malformed
├── SchemaError                  a payload does not match its schema (names the field)
│   └── UnknownMessageError      a payload's (type, schemaVersion) is not in the registry
├── StackError                   the local stack could not be provisioned, started or reached
│   ├── MissingPrerequisiteError a tool the stack needs (java, mvn, go, apt) is missing
│   └── KafkaUnavailableError    (kafka_io) no broker answers at the bootstrap servers
├── IllegalTransitionError       (order_state) an order event out of order or duplicated
├── TapeError                    (connectors.tape) a tape file that cannot be read
└── BrapiError                   (connectors.brapi) 401 auth, 402 plan limit, 404 unknown
                                 ticker, 429 rate limited, 5xx unavailable, budget exhausted
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "BrokerflowError",
    "ConfigError",
    "MissingPrerequisiteError",
    "SchemaError",
    "StackError",
    "UnknownMessageError",
]


class BrokerflowError(Exception):
    """Root of the tree: catch this to catch everything brokerflow raises deliberately."""


class ConfigError(BrokerflowError):
    pass


class SchemaError(BrokerflowError, ValueError):
    """A payload failed validation. ``problems`` maps a dotted field path to what is wrong."""

    def __init__(self, model: str, problems: dict[str, str]) -> None:
        self.model = model
        self.problems = problems
        detail = "; ".join(f"{field}: {why}" for field, why in problems.items())
        super().__init__(f"invalid {model}: {detail}")

    @property
    def fields(self) -> list[str]:
        return list(self.problems)

    @classmethod
    def from_validation(cls, model: str, exc: ValidationError) -> SchemaError:
        problems: dict[str, str] = {}
        for error in exc.errors(include_url=False):
            path = ".".join(str(part) for part in error["loc"]) or "<payload>"
            message = error["msg"].removeprefix("Value error, ")
            problems.setdefault(path, message)
        return cls(model, problems)


class UnknownMessageError(SchemaError):
    pass


class StackError(BrokerflowError):
    pass


class MissingPrerequisiteError(StackError):
    """Raised with the tool's name and the command that installs it."""

    def __init__(self, tool: str, install_hint: str) -> None:
        self.tool = tool
        self.install_hint = install_hint
        super().__init__(
            f"{tool} is required but was not found on PATH; install it with: {install_hint}"
        )
