"""Basic and NTLM authentication as IIS does it for Exchange.

NTLM authenticates a TCP connection, not a request: after the 3-leg handshake exchangelib sends later requests on
that connection without an Authorization header. So the state lives per connection (keyed weakly by the
transport), and a new connection starts unauthenticated. pyspnego is the NTLM acceptor; it reads passwords from
the file NTLM_USER_FILE names, which is written from the seed and set only around each handshake step.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import spnego
import spnego.exceptions

from spacesync.exchange_simulator.seed import AccountSeed

REALM = 'Basic realm="spacesync-simulator"'


@dataclass
class Challenge:
    """Answer 401 with these WWW-Authenticate values (several headers)."""

    offers: list[str]
    reason: str


@dataclass
class _ConnectionState:
    account: AccountSeed | None = None
    handshake: Any = None  # the pyspnego acceptor between leg 1 and leg 3


@dataclass
class Authenticator:
    accounts: list[AccountSeed]
    offer_ntlm: bool = True
    offer_basic: bool = True
    _connections: weakref.WeakKeyDictionary[object, _ConnectionState] = field(
        default_factory=weakref.WeakKeyDictionary)
    _store: Path | None = None

    def __post_init__(self) -> None:
        lines = []
        for account in self.accounts:
            domain, _, user = account.username.rpartition("\\")
            lines.append(f"{domain}:{user}:{account.password}")
        handle, name = tempfile.mkstemp(prefix="spacesync-ntlm-", suffix=".txt")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        self._store = Path(name)

    def close(self) -> None:
        if self._store is not None:
            self._store.unlink(missing_ok=True)
            self._store = None

    def offers(self) -> list[str]:
        return [*(["NTLM"] if self.offer_ntlm else []), *([REALM] if self.offer_basic else [])]

    def authenticate(self, connection: object, authorization: str | None) -> AccountSeed | Challenge:
        state = self._connections.get(connection)
        if not authorization:
            if state is not None and state.account is not None:
                return state.account
            return Challenge(self.offers(), "no credentials")
        scheme, _, token = authorization.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and self.offer_basic:
            return self._basic(token.strip())
        if scheme in ("ntlm", "negotiate") and self.offer_ntlm:
            if state is None:
                state = self._connections[connection] = _ConnectionState()
            return self._ntlm(state, token.strip())
        return Challenge(self.offers(), f"unsupported scheme {scheme}")

    def account(self, username: str) -> AccountSeed | None:
        wanted = username.lower()
        return next((a for a in self.accounts if a.key == wanted), None)

    def _basic(self, token: str) -> AccountSeed | Challenge:
        try:
            username, _, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return Challenge(self.offers(), "malformed Basic credentials")
        account = self.account(username)
        if account is None or account.password != password:
            return Challenge(self.offers(), f"wrong user name or password for {username}")
        return account

    def _ntlm(self, state: _ConnectionState, token: str) -> AccountSeed | Challenge:
        try:
            message = base64.b64decode(token, validate=True)
        except binascii.Error:
            return Challenge(self.offers(), "malformed NTLM token")
        state.account = None
        try:
            with self._credential_file():
                # Type 1 (negotiate) starts a handshake; anything else continues the one of this connection.
                if message[8:12] == b"\x01\x00\x00\x00" or state.handshake is None:
                    state.handshake = spnego.server(protocol="ntlm")
                answer = state.handshake.step(message)
        except spnego.exceptions.SpnegoError as failure:
            state.handshake = None
            return Challenge(self.offers(), f"NTLM authentication failed: {failure.message}")
        if not state.handshake.complete:
            return Challenge([f"NTLM {base64.b64encode(answer or b'').decode()}"], "NTLM challenge")
        principal = state.handshake.client_principal or ""
        state.handshake = None
        account = self.account(principal.lstrip("\\"))
        if account is None:
            return Challenge(self.offers(), f"no account {principal}")
        state.account = account
        return account

    @contextmanager
    def _credential_file(self) -> Iterator[None]:
        # pyspnego reads NTLM_USER_FILE while it steps: set it only around the (synchronous) step.
        previous = os.environ.get("NTLM_USER_FILE")
        os.environ["NTLM_USER_FILE"] = str(self._store)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("NTLM_USER_FILE", None)
            else:
                os.environ["NTLM_USER_FILE"] = previous
