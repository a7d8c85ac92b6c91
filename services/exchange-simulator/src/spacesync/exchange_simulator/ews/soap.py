"""SOAP envelopes as Exchange writes them: ServerVersionInfo header, response messages, faults."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from lxml import etree

from spacesync.exchange_simulator.seed import ServerVersion

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
ERRORS = "http://schemas.microsoft.com/exchange/services/2006/errors"  # fault detail elements
NSMAP = {"s": SOAP, "m": M, "t": T}

Element = etree._Element


def m(tag: str) -> str:
    return f"{{{M}}}{tag}"


def t(tag: str) -> str:
    return f"{{{T}}}{tag}"


class EwsError(Exception):
    """An error Exchange reports inside a ResponseMessage (ResponseClass="Error")."""

    def __init__(self, code: str, message: str, values: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.values = values or {}


class SoapFault(Exception):
    """An error Exchange reports as a SOAP fault, failing the whole request (HTTP 500)."""

    def __init__(self, code: str, message: str, values: dict[str, str] | None = None,
                 fault_code: str = "a:ErrorInternalServerError") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.values = values or {}
        self.fault_code = fault_code


# The messages real Exchange uses, so logs and exceptions read the same as in the field.
MESSAGES = {
    "ErrorNonExistentMailbox": "The SMTP address has no mailbox associated with it.",
    "ErrorAccessDenied": "Access is denied. Check credentials and try again.",
    "ErrorImpersonateUserDenied": "The account does not have permission to impersonate the requested user.",
    "ErrorItemNotFound": "The specified object was not found in the store.",
    "ErrorMailRecipientNotFound": "No mailbox with such guid.",
    "ErrorSubscriptionNotFound": "The specified subscription was not found.",
    "ErrorServerBusy": "The server cannot service this request right now. Try again later.",
    "ErrorIrresolvableConflict": "The send or update operation could not be performed because the change key "
                                 "passed in the request does not match the current change key for the item.",
    "ErrorInvalidIdMalformed": "Id is malformed.",
    "ErrorFolderNotFound": "The specified folder could not be found in the store.",
    "ErrorInvalidOperation": "The operation is not valid for this item.",
    "ErrorCalendarEndDateIsEarlierThanStartDate": "EndDate is earlier than StartDate",
    "ErrorSchemaValidation": "The request failed schema validation.",
    "ErrorInvalidSubscription": "The subscription is invalid.",
    "ErrorExpiredSubscription": "The subscription has expired.",
    "ErrorInvalidWatermark": "The watermark used for creating this subscription was not found.",
}


def error(code: str, message: str | None = None, **values: str) -> EwsError:
    return EwsError(code, message or MESSAGES.get(code, code), values)


def fault(code: str, message: str | None = None, **values: str) -> SoapFault:
    return SoapFault(code, message or MESSAGES.get(code, code), values)


def envelope(version: ServerVersion, body_child: Element | None) -> Element:
    root = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"s": SOAP})
    header = etree.SubElement(root, f"{{{SOAP}}}Header")
    etree.SubElement(
        header, t("ServerVersionInfo"), nsmap={"h": T},
        MajorVersion=str(version.major_version), MinorVersion=str(version.minor_version),
        MajorBuildNumber=str(version.major_build_number), MinorBuildNumber=str(version.minor_build_number),
        Version=version.version,
    )
    body = etree.SubElement(root, f"{{{SOAP}}}Body")
    if body_child is not None:
        body.append(body_child)
    return root


def response(operation: str, messages: Iterable[Element]) -> Element:
    """`<m:{operation}Response><m:ResponseMessages>...`: one message per requested object."""
    outer = etree.Element(m(f"{operation}Response"), nsmap={"m": M, "t": T})
    container = etree.SubElement(outer, m("ResponseMessages"))
    container.extend(messages)
    return outer


def success(message_tag: str) -> Element:
    message = etree.Element(m(message_tag), ResponseClass="Success")
    etree.SubElement(message, m("ResponseCode")).text = "NoError"
    return message


def error_message(message_tag: str, failure: EwsError, container: str | None = None) -> Element:
    """An error message; `container` names the (empty) element the schema requires after it, e.g. Items."""
    message = etree.Element(m(message_tag), ResponseClass="Error")
    etree.SubElement(message, m("MessageText")).text = failure.message
    etree.SubElement(message, m("ResponseCode")).text = failure.code
    etree.SubElement(message, m("DescriptiveLinkKey")).text = "0"
    if failure.values:
        xml = etree.SubElement(message, m("MessageXml"))
        for name, value in failure.values.items():
            etree.SubElement(xml, t("Value"), Name=name).text = value
    if container is not None:
        etree.SubElement(message, m(container))
    return message


def fault_envelope(version: ServerVersion, failure: SoapFault) -> Element:
    body_fault = etree.Element(f"{{{SOAP}}}Fault", nsmap={"s": SOAP})
    code = etree.SubElement(body_fault, "faultcode", nsmap={"a": M})
    code.text = failure.fault_code
    etree.SubElement(body_fault, "faultstring", attrib={"{http://www.w3.org/XML/1998/namespace}lang": "en-US"}).text = (
        failure.message
    )
    detail = etree.SubElement(body_fault, "detail")
    etree.SubElement(detail, f"{{{ERRORS}}}ResponseCode", nsmap={"e": ERRORS}).text = failure.code
    etree.SubElement(detail, f"{{{ERRORS}}}Message", nsmap={"e": ERRORS}).text = failure.message
    if failure.values:
        xml = etree.SubElement(detail, t("MessageXml"), nsmap={"t": T})
        for name, value in failure.values.items():
            etree.SubElement(xml, t("Value"), Name=name).text = value
    return envelope(version, body_fault)


def serialize(root: Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def utc_text(moment: datetime) -> str:
    """Exchange writes times in UTC with a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None, field: str) -> datetime:
    """An xs:dateTime from a request; one without an offset is taken as UTC (exchangelib always sends one)."""
    if not text:
        raise error("ErrorSchemaValidation", f"{field} is missing.")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise error("ErrorSchemaValidation", f"{field}: '{text}' is not a valid dateTime.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def text_of(parent: Element, path: str) -> str | None:
    found = parent.find(path, NSMAP)
    return None if found is None else (found.text or "")
