"""The connection test, step by step, so the admin learns which step failed: DNS, TCP, TLS, then EWS itself.

exchangelib would report a DNS failure, a refused connection and a timeout alike (ErrorTimeoutExpired), so the
network steps are done here first, each bounded by what is left of the test's time budget. The EWS step is
exchangelib's version probe (ConvertId with a dummy id): it needs valid credentials and an EWS server (the answer's
ServerVersionInfo header), creates nothing, and works with every Exchange version and with the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from concurrent.futures import Executor
from typing import Any
from urllib.parse import urlsplit

import requests.utils
from exchangelib.version import Version

from spacesync.common.exchange.errors import Call, dns_problem, tls_problem
from spacesync.common.exchange.model import ConnectionProblem, ExchangeError
from spacesync.common.exchange.transport import (
    GatewayProtocol,
    configuration,
    fresh_protocol,
    http_timeout,
)

Problem = ConnectionProblem


def tls_context(verify_tls: bool, ca_bundle: str | None) -> ssl.SSLContext:
    """The same trust as the gateway's HTTP adapter: the CA bundle, the system's CAs, or none. A CA bundle that
    cannot be read is a configuration error (ValueError naming the file), found when the gateway starts."""
    if not verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if not ca_bundle:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"SPACESYNC_EXCHANGE_CA_BUNDLE: {ca_bundle} is not a readable PEM file of CA certificates "
                         f"({error})") from None


class Budget:
    """What is left of the test's time, on the event loop's clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = asyncio.get_running_loop().time() + seconds

    def left(self) -> float:
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    async def run(self, work: Any, call: Call, what: str) -> Any:
        try:
            return await asyncio.wait_for(work, self.left())
        except TimeoutError:
            raise ExchangeError(Problem.TIMEOUT, f"{what} {call.where} took longer than the test allows "
                                                 f"({self.seconds:g} s).") from None


def server_name(version: Version) -> str:
    """'Exchange 2016 (15.1.2507)' from the version the server reported."""
    build = version.build
    if build is None:
        return f"Exchange (API {version.api_version})"
    names = {(15, 0): "2013", (15, 1): "2016", (15, 2): "2019", (14, 0): "2010", (14, 1): "2010 SP1",
             (14, 2): "2010 SP2", (14, 3): "2010 SP3", (8, 0): "2007", (8, 1): "2007 SP1"}
    name = names.get((build.major_version, build.minor_version))
    if (build.major_version, build.minor_version) == (15, 2) and build.major_build >= 2562:
        name = "Server Subscription Edition or 2019"
    elif build.major_version == 15 and build.minor_version >= 20:
        name = "Online"
    label = f"Exchange {name}" if name else "Exchange"
    return f"{label} ({build.major_version}.{build.minor_version}.{build.major_build})"


async def reach(call: Call, budget: Budget, executor: Executor, context: ssl.SSLContext) -> None:
    """DNS, TCP connect and (for https) the TLS handshake with the endpoint's host; raises ExchangeError."""
    if requests.utils.get_environ_proxies(call.server.endpoint):
        return  # an HTTP(S)_PROXY carries the requests: only the EWS step can tell
    loop = asyncio.get_running_loop()
    parts = urlsplit(call.server.endpoint)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await budget.run(loop.run_in_executor(
            executor, _resolve, host, port), call, "Resolving the host name of")
    except (socket.gaierror, UnicodeError) as error:  # UnicodeError: not a valid (IDNA) host name
        raise dns_problem(call, error) from None
    writer = await _connect(call, budget, addresses, port)
    try:
        if parts.scheme == "https":
            try:
                await budget.run(writer.start_tls(context, server_hostname=host), call, "The TLS handshake with")
            except (ssl.SSLError, ConnectionError, OSError) as error:
                if isinstance(error, ssl.SSLError):
                    raise tls_problem(call, error) from None
                raise ExchangeError(Problem.TLS, f"{call.where} closed the connection during the TLS handshake: it "
                                                 f"may serve plain http, or https on another port. Check the "
                                                 f"Server/Host field.") from None
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


def _resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


async def _connect(call: Call, budget: Budget, addresses: list[tuple[Any, ...]], port: int) -> asyncio.StreamWriter:
    refused: OSError | None = None
    for family, _, _, _, address in addresses:
        try:
            opened: tuple[asyncio.StreamReader, asyncio.StreamWriter] = await budget.run(
                asyncio.open_connection(address[0], port, family=family), call, "Connecting (TCP) to")
            return opened[1]
        except OSError as error:
            refused = error
    if isinstance(refused, ConnectionRefusedError):
        raise ExchangeError(Problem.NOT_REACHABLE, f"{call.where} refused the connection: nothing listens on that "
                                                   f"port. Check the port in the Server/Host field, that Exchange "
                                                   f"(IIS) runs, and firewalls between Spacesync and "
                                                   f"{call.server.host}.")
    raise ExchangeError(Problem.NOT_REACHABLE, f"{call.where} cannot be reached ({refused}). Check the Server/Host "
                                               f"field, the network and firewalls.")


def ews_version(protocol_cls: type[GatewayProtocol], call: Call, max_connections: int,
                seconds: float) -> Version:
    """exchangelib's version probe on a protocol of its own (fresh connections, so a fresh authentication), in a
    worker thread. Each HTTP request waits at most `seconds`."""
    protocol = fresh_protocol(protocol_cls, configuration(call.server, max_connections))
    try:
        with http_timeout(seconds):
            version: Version = Version.guess(protocol)
            return version
    finally:
        protocol.close()
