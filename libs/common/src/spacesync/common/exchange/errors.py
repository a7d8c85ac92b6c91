"""What went wrong, in words a library admin can act on: exchangelib's (and requests') exceptions -> ExchangeError.

exchangelib hides the network cause of many failures: a refused connection, a DNS failure, a read timeout and a
dropped connection all become `ErrorTimeoutExpired` ("Reraised from ConnectionError(...)"), and with more than one
session in the pool that in turn becomes `ErrorServerBusy` ("Reraised from ErrorTimeoutExpired(...)"), which is
not throttling at all. The original exceptions survive in the `__context__`/`__cause__` chain (and in urllib3's
`MaxRetryError.reason`), so the cause is read from there first. Messages name the host, the user name and the
mailbox, never the password.
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from exchangelib import errors as ews

from spacesync.common.events.catalog import ExchangeAccess, ExchangeAuth
from spacesync.common.exchange.model import (
    ConnectionProblem,
    DelegateSubscriptionRefused,
    ExchangeError,
    ExchangeServer,
    Rejected,
)
from spacesync.common.exchange.transport import HttpFailure, Unauthorized

Problem = ConnectionProblem

# Back-off when the server asks for one without saying how long (exchangelib's own default is 10 s).
DEFAULT_BACK_OFF = 10.0

CA_HINT = ("If Exchange uses a certificate from an internal CA, give Spacesync that CA as a PEM file "
           "(SPACESYNC_EXCHANGE_CA_BUNDLE).")


@dataclass(frozen=True)
class Call:
    """The call that failed: for the message."""

    server: ExchangeServer
    operation: str
    mailbox: str | None = None

    @property
    def where(self) -> str:
        parts = urlsplit(self.server.endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{self.server.host}:{port}"

    @property
    def who(self) -> str:
        return f"'{self.server.username}'"

    @property
    def auth(self) -> str:
        return "Basic" if self.server.auth_type == ExchangeAuth.BASIC else "NTLM"

    def of_mailbox(self) -> str:
        return self.mailbox or "the mailbox"


def causes(error: BaseException, limit: int = 40) -> list[BaseException]:
    """`error` and everything it was raised from or during, breadth first (urllib3 reasons and exception args too)."""
    found: list[BaseException] = []
    seen: set[int] = set()
    queue: list[BaseException] = [error]
    while queue and len(found) < limit:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        found.append(current)
        linked: list[object] = [current.__cause__, current.__context__, getattr(current, "reason", None),
                                *current.args]
        queue.extend(item for item in linked if isinstance(item, BaseException))
    return found


def _first(chain: Iterable[BaseException], *kinds: type[BaseException]) -> BaseException | None:
    return next((error for error in chain if isinstance(error, kinds)), None)


def tls_problem(call: Call, error: BaseException) -> ExchangeError:
    where = call.where
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = error.verify_message or error.reason or str(error)
        return ExchangeError(Problem.TLS, f"The TLS certificate of {where} is not trusted ({reason}). Check that the "
                                          f"Server/Host field names the host the certificate was issued for. "
                                          f"{CA_HINT}")
    reason = getattr(error, "reason", None) or str(error) or type(error).__name__
    if "WRONG_VERSION_NUMBER" in str(reason).upper() or "record layer failure" in str(reason).lower():
        return ExchangeError(Problem.TLS, f"{where} does not speak TLS ({reason}): it may serve plain http, "
                                          f"or https on another port. Check the scheme and port of the Server/Host "
                                          f"field.")
    return ExchangeError(Problem.TLS, f"The TLS handshake with {where} failed ({reason}). Check the scheme and port "
                                      f"of the Server/Host field. {CA_HINT}")


def dns_problem(call: Call, error: BaseException) -> ExchangeError:
    host = call.server.host
    if isinstance(error, socket.gaierror) and error.errno == socket.EAI_AGAIN:
        return ExchangeError(Problem.NOT_REACHABLE, f"The DNS server did not answer for {host} (temporary failure). "
                                                    f"Check this server's DNS settings; Spacesync will try again.")
    return ExchangeError(Problem.HOST_NOT_FOUND, f"The host name {host} could not be resolved (DNS). Check the "
                                                 f"Server/Host field for typos and that this server's DNS knows "
                                                 f"{host}.")


def network_problem(call: Call, chain: list[BaseException]) -> ExchangeError | None:
    """The network-level cause in `chain`, if there is one."""
    where, host = call.where, call.server.host
    tls = _first(chain, ssl.SSLCertVerificationError) or _first(
        chain, ssl.SSLError, requests.exceptions.SSLError, urllib3.exceptions.SSLError)
    if tls is not None:
        return tls_problem(call, tls)
    unresolved = _first(chain, socket.gaierror) or _first(chain, urllib3.exceptions.NameResolutionError)
    if unresolved is not None:
        return dns_problem(call, unresolved)
    if _first(chain, ConnectionRefusedError) is not None:
        return ExchangeError(Problem.NOT_REACHABLE, f"{where} refused the connection: nothing listens on that port. "
                                                    f"Check the port in the Server/Host field, that Exchange (IIS) "
                                                    f"runs, and firewalls between Spacesync and {host}.")
    connect_timeout = _first(chain, urllib3.exceptions.ConnectTimeoutError, requests.exceptions.ConnectTimeout)
    if connect_timeout is not None and not isinstance(connect_timeout, urllib3.exceptions.NewConnectionError):
        return ExchangeError(Problem.TIMEOUT, f"{where} did not accept a connection in time. Check that the host "
                                              f"is up and that no firewall silently drops traffic from Spacesync.")
    if _first(chain, urllib3.exceptions.NewConnectionError) is not None or _unreachable(chain):
        return ExchangeError(Problem.NOT_REACHABLE, f"{where} cannot be reached (no route to the host). Check the "
                                                    f"Server/Host field, the network and firewalls.")
    if _first(chain, urllib3.exceptions.ReadTimeoutError, requests.exceptions.ReadTimeout, TimeoutError) is not None:
        return ExchangeError(Problem.TIMEOUT, f"Exchange at {where} accepted the connection but did not answer in "
                                              f"time ({call.operation}). The server may be overloaded, or the "
                                              f"address may not be an Exchange server.")
    dropped = _first(chain, http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError,
                     BrokenPipeError, urllib3.exceptions.ProtocolError, requests.exceptions.ChunkedEncodingError,
                     requests.exceptions.ConnectionError)
    if dropped is not None:
        return ExchangeError(Problem.NOT_REACHABLE, f"{where} closed the connection without answering "
                                                    f"({call.operation}). Exchange may be restarting, or a proxy or "
                                                    f"load balancer in front of it drops the requests.")
    return None


def _unreachable(chain: list[BaseException]) -> bool:
    codes = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
    return any(isinstance(error, OSError) and error.errno in codes for error in chain)


def wrong_credentials(call: Call, error: BaseException) -> ExchangeError:
    if isinstance(error, Unauthorized) and error.locked_out:
        return ExchangeError(Problem.WRONG_CREDENTIALS, f"Exchange at {call.where} says the account {call.who} is "
                                                        f"locked out. Unlock it in Active Directory, then check the "
                                                        f"password.")
    hint = ""
    offers = error.offers if isinstance(error, Unauthorized) else ""
    if offers:
        scheme = call.auth.lower()
        offered = [part.strip().split(" ")[0] for part in offers.split(",") if part.strip()]
        if offered and not any(name.lower() in (scheme, "negotiate" if scheme == "ntlm" else scheme)
                               for name in offered):
            hint = (f" The server does not offer {call.auth} authentication (it offers "
                    f"{', '.join(dict.fromkeys(offered))}): change the authentication type.")
    return ExchangeError(Problem.WRONG_CREDENTIALS, f"Exchange at {call.where} rejected the user name {call.who} or "
                                                    f"its password ({call.auth}).{hint} Check the user name "
                                                    f"(DOMAIN\\user or user@domain) and the password; repeated "
                                                    f"failures can lock the account.")


def access_denied(call: Call, error: BaseException) -> ExchangeError:
    mailbox = call.of_mailbox()
    if isinstance(error, ews.ErrorImpersonateUserDenied | ews.ErrorImpersonationDenied | ews.ErrorImpersonationFailed):
        return ExchangeError(Problem.ACCESS_DENIED, f"The account {call.who} may not impersonate {mailbox}. Grant it "
                                                    f"the ApplicationImpersonation role for {mailbox}, or use "
                                                    f"delegate access.")
    how = ("grant it the ApplicationImpersonation role for that mailbox"
           if call.server.access == ExchangeAccess.IMPERSONATION
           else "grant it Editor on the calendar, FullAccess, or use impersonation")
    if isinstance(error, ews.ErrorFolderNotFound):
        return ExchangeError(Problem.ACCESS_DENIED, f"The account {call.who} cannot see the calendar of {mailbox} "
                                                    f"(folder not found): {how}.")
    return ExchangeError(Problem.ACCESS_DENIED, f"Exchange denied the account {call.who} access to {mailbox} "
                                                f"({call.operation}): {how}.")


def http_problem(call: Call, error: HttpFailure) -> ExchangeError:
    where, status = call.where, error.status
    if status == 403:
        return ExchangeError(Problem.ACCESS_DENIED, f"{call.server.endpoint} answered HTTP 403 Forbidden for "
                                                    f"{call.who}: EWS may be disabled for this account "
                                                    f"(EWSEnabled) or blocked by an access policy.")
    if status == 429:  # a load balancer or proxy in front of Exchange rate-limits
        return throttled(call, None)
    if status == 408:
        return ExchangeError(Problem.TIMEOUT, f"{where} timed out the request (HTTP 408, {call.operation}).")
    if status >= 500:
        return ExchangeError(Problem.SERVER_ERROR, f"Exchange at {where} failed with HTTP {status} "
                                                   f"({call.operation}): {error.excerpt[:120] or 'no details'}")
    return ExchangeError(Problem.NOT_EWS, f"{call.server.endpoint} answered HTTP {status}, not Exchange Web "
                                          f"Services. Check the Server/Host field: the EWS URL usually ends in "
                                          f"/EWS/Exchange.asmx.")


def not_ews(call: Call, detail: str) -> ExchangeError:
    return ExchangeError(Problem.NOT_EWS, f"{call.server.endpoint} answers, but not as Exchange Web Services "
                                          f"({detail}). Check the Server/Host field: the EWS URL usually ends in "
                                          f"/EWS/Exchange.asmx.")


def throttled(call: Call, back_off: float | None) -> ExchangeError:
    seconds = back_off if back_off is not None and back_off >= 0 else DEFAULT_BACK_OFF
    return ExchangeError(Problem.THROTTLED, f"Exchange at {call.where} is busy or throttles {call.who} and asked "
                                            f"Spacesync to wait {seconds:g} s. If this persists, raise the EWS "
                                            f"throttling policy of the account or lower the connections per server.",
                         back_off=seconds)


def server_error(call: Call, error: BaseException) -> ExchangeError:
    code = type(error).__name__
    text = " ".join(str(error).split())[:200]
    return ExchangeError(Problem.SERVER_ERROR, f"Exchange at {call.where} failed {call.operation}"
                                               f"{' for ' + call.mailbox if call.mailbox else ''}: {code}: {text}")


_MAILBOX_NOT_FOUND = (ews.ErrorNonExistentMailbox, ews.ErrorMailRecipientNotFound, ews.ErrorInvalidSmtpAddress)
_DENIED = (ews.ErrorAccessDenied, ews.ErrorImpersonateUserDenied, ews.ErrorImpersonationDenied,
           ews.ErrorImpersonationFailed, ews.ErrorFolderNotFound)
# Exchange refusing the request itself: the same request fails again (not transient).
_REJECTED = (ews.ErrorQuotaExceeded, ews.ErrorMessageSizeExceeded, ews.ErrorSchemaValidation,
             ews.ErrorInvalidPropertyRequest, ews.ErrorInvalidPropertySet, ews.ErrorInvalidExtendedPropertyValue,
             ews.ErrorInvalidRestriction, ews.ErrorInvalidOperation, ews.ErrorIncorrectUpdatePropertyCount,
             ews.ErrorInvalidIdMalformed, ews.ErrorInvalidIdEmpty, ews.ErrorInvalidPropertyForOperation,
             ews.ErrorInvalidValueForProperty, ews.ErrorInvalidServerVersion)
_BUSY = (ews.ErrorServerBusy, ews.ErrorTooManyObjectsOpened, ews.ErrorExceededConnectionCount, ews.RateLimitError)


def classify(error: BaseException, call: Call) -> ExchangeError | None:
    """The ExchangeError for an exception from an exchangelib call; None for an exception that is not about
    Exchange (a bug: let it propagate)."""
    if isinstance(error, ExchangeError):
        return error
    if type(error) is ews.TransportError and isinstance(error.__context__, ews.EWSError):
        # exchangelib's version probe (the first request of a protocol whose version is not configured) turns
        # every error answer into TransportError("No valid version headers found in response (...)").
        return classify(error.__context__, call)
    if isinstance(error, ews.UnauthorizedError):
        return wrong_credentials(call, error)
    if isinstance(error, _MAILBOX_NOT_FOUND):
        return ExchangeError(Problem.MAILBOX_NOT_FOUND, f"Exchange at {call.where} has no mailbox "
                                                        f"{call.of_mailbox()}. Check the resource's e-mail address.")
    if isinstance(error, _DENIED):
        return access_denied(call, error)
    if isinstance(error, ews.ErrorSubscriptionDelegateAccessNotSupported):
        return DelegateSubscriptionRefused(
            f"Exchange at {call.where} refuses calendar notifications to {call.who}, which reaches the rooms with "
            f"delegate access (ErrorSubscriptionDelegateAccessNotSupported): notifications need "
            f"ApplicationImpersonation (location access: impersonation); this room is read by polling.")
    chain = causes(error)
    network = network_problem(call, chain)
    if network is not None:
        return network
    if isinstance(error, _BUSY):
        if _first(chain, ews.ErrorInternalServerTransientError) is not None:
            return server_error(call, _first(chain, ews.ErrorInternalServerTransientError) or error)
        return throttled(call, getattr(error, "back_off", None))
    if isinstance(error, HttpFailure):
        return http_problem(call, error)
    if isinstance(error, ews.RedirectError):
        return ExchangeError(Problem.NOT_EWS, f"{call.server.endpoint} redirects to {error.url}: enter the EWS URL "
                                              f"itself (usually https://<host>/EWS/Exchange.asmx).")
    if isinstance(error, ews.SOAPError) or type(error) is ews.TransportError:
        return not_ews(call, " ".join(str(error).split())[:120])
    if isinstance(error, ews.MalformedResponseError):
        if "No Body element" in str(error):
            return not_ews(call, "no SOAP body")
        return server_error(call, error)
    if isinstance(error, _REJECTED) or type(error).__name__.startswith("ErrorCalendar"):
        text = " ".join(str(error).split())[:200]
        return Rejected(f"Exchange at {call.where} refused {call.operation}"
                        f"{' for ' + call.mailbox if call.mailbox else ''}: {type(error).__name__}: {text}")
    if isinstance(error, ews.ErrorTimeoutExpired):
        return ExchangeError(Problem.TIMEOUT, f"Exchange at {call.where} timed out on {call.operation} "
                                              f"(ErrorTimeoutExpired).")
    if isinstance(error, ews.EWSError | requests.RequestException | OSError):
        return server_error(call, error)
    return None
