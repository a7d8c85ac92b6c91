"""Fixtures: a simulator per test, real exchangelib accounts against it, every EWS answer checked against the schema.

The schema folder comes from SPACESYNC_EWS_SCHEMA_DIR (.ci/run points it at ../shared/ews/schema); without it the
schema check is skipped with a message and every other check still runs.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ews_helpers import PASSWORD, SEED, AccountFactory
from exchangelib import DELEGATE, NTLM, Account, Configuration, Credentials, FailFast, close_connections
from lxml import etree

from spacesync.exchange_simulator.embedded import EmbeddedSimulator
from spacesync.exchange_simulator.ews.soap import SOAP
from spacesync.exchange_simulator.seed import Seed


class SchemaCheck:
    """Validates every EWS answer's body element and header elements against messages.xsd."""

    def __init__(self, schema: etree.XMLSchema | None) -> None:
        self.schema = schema
        self.checked = 0
        self.failures: list[str] = []

    def __call__(self, operation: str, payload: bytes) -> None:
        if self.schema is None:
            return
        root = etree.fromstring(payload)
        sections = [root.find(f"{{{SOAP}}}{name}") for name in ("Header", "Body")]
        parts = [child for section in sections if section is not None for child in section]
        for element in parts:
            if etree.QName(element).localname == "Fault":
                continue  # SOAP faults are not described by messages.xsd
            self.checked += 1
            if not self.schema.validate(element):
                self.failures.append(f"{operation}: {self.schema.error_log}")


@pytest.fixture(scope="session")
def ews_schema() -> etree.XMLSchema | None:
    folder = os.environ.get("SPACESYNC_EWS_SCHEMA_DIR")
    if not folder:
        warnings.warn("SPACESYNC_EWS_SCHEMA_DIR is not set: EWS answers are not checked against messages.xsd",
                      stacklevel=1)
        return None
    return etree.XMLSchema(file=str(Path(folder) / "for-lxml" / "messages.xsd"))


@pytest.fixture
def seed() -> Seed:
    return Seed.model_validate(SEED)


@pytest.fixture
def simulator(seed: Seed, ews_schema: etree.XMLSchema | None) -> Iterator[EmbeddedSimulator]:
    check = SchemaCheck(ews_schema)
    with EmbeddedSimulator(seed) as sim:
        sim.state.response_observers.append(check)
        yield sim
    assert not check.failures, "answers that do not validate against messages.xsd:\n" + "\n".join(check.failures)


@pytest.fixture
def account(simulator: EmbeddedSimulator) -> Iterator[AccountFactory]:
    """`account("room1@example.org", user="DOMAIN\\writer", auth=NTLM, access=DELEGATE)` with real exchangelib."""
    made: list[Account] = []

    def make(mailbox: str = "room1@example.org", user: str = "DOMAIN\\writer", password: str = PASSWORD,
             auth: str = NTLM, access: str = DELEGATE, retry_policy: Any = None, max_connections: int = 4) -> Account:
        config = Configuration(
            service_endpoint=simulator.ews_url, credentials=Credentials(user, password), auth_type=auth,
            retry_policy=retry_policy or FailFast(), max_connections=max_connections,
        )
        created = Account(mailbox, config=config, access_type=access, autodiscover=False)
        made.append(created)
        return created

    yield make
    # exchangelib caches protocols per (endpoint, credentials) for the process: close and forget them.
    close_connections()

