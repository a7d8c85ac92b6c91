"""ConvertId (exchangelib's version probe) and GetFolder (root, calendar) with EffectiveRights."""

from __future__ import annotations

from lxml import etree

from spacesync.exchange_simulator.calendar import decode_id, encode_id
from spacesync.exchange_simulator.ews.context import Handler, Need, RequestContext
from spacesync.exchange_simulator.ews.soap import (
    NSMAP,
    Element,
    EwsError,
    error,
    error_message,
    response,
    success,
    t,
)

# Distinguished folders the simulator has: (display name, folder class, element, parent).
FOLDERS = {
    "root": ("Root", None, "Folder", None),
    "msgfolderroot": ("Top of Information Store", "IPF.Note", "Folder", "root"),
    "calendar": ("Calendar", "IPF.Appointment", "CalendarFolder", "msgfolderroot"),
}
_RIGHTS = ("CreateAssociated", "CreateContents", "CreateHierarchy", "Delete", "Modify", "Read", "ViewPrivateItems")


def folder_id(mailbox: str, name: str) -> str:
    return encode_id("folder", mailbox, name)


def resolve_folder(context: RequestContext, element: Element) -> tuple[str, str]:
    """(mailbox SMTP, folder name) of a DistinguishedFolderId or FolderId element."""
    if etree.QName(element).localname == "DistinguishedFolderId":
        name = element.get("Id", "")
        address = element.find("t:Mailbox/t:EmailAddress", NSMAP)
        mailbox = (address.text or "").strip().lower() if address is not None else context.own_mailbox
        if not mailbox:
            raise error("ErrorNonExistentMailbox", SmtpAddress="")
    else:
        parts = decode_id(element.get("Id", ""))
        if not parts or parts[0] != "folder" or len(parts) != 3:
            raise error("ErrorInvalidIdMalformed")
        mailbox, name = parts[1], parts[2]
    context.mailbox(mailbox)
    if name not in FOLDERS:
        raise error("ErrorFolderNotFound")
    return mailbox, name


def calendar_of(context: RequestContext, parent: Element | None, need: Need) -> str:
    """The mailbox whose calendar a ParentFolderId/SavedItemFolderId names, checked for `need`."""
    target = parent[0] if parent is not None and len(parent) else None
    if target is None:
        mailbox = context.own_mailbox
        if not mailbox:
            raise error("ErrorNonExistentMailbox", SmtpAddress="")
        name = "calendar"
    else:
        mailbox, name = resolve_folder(context, target)
    if name != "calendar":
        raise error("ErrorInvalidOperation", "The simulator keeps calendar items only, in the calendar folder.")
    context.require(mailbox, need)
    return mailbox


def _folder_element(context: RequestContext, mailbox: str, name: str) -> Element:
    display, folder_class, tag, parent = FOLDERS[name]
    folder = etree.Element(t(tag))
    etree.SubElement(folder, t("FolderId"), Id=folder_id(mailbox, name), ChangeKey="AQAAAA==")
    if parent is not None:
        etree.SubElement(folder, t("ParentFolderId"), Id=folder_id(mailbox, parent), ChangeKey="AQAAAA==")
    if folder_class is not None:
        etree.SubElement(folder, t("FolderClass")).text = folder_class
    etree.SubElement(folder, t("DisplayName")).text = display
    count = len(context.calendars.mailboxes[mailbox]) if name == "calendar" else 0
    etree.SubElement(folder, t("TotalCount")).text = str(count)
    etree.SubElement(folder, t("ChildFolderCount")).text = "0" if name == "calendar" else "1"
    granted = context.granted(mailbox)
    rights = etree.SubElement(folder, t("EffectiveRights"))
    for right in _RIGHTS:
        allowed = granted >= Need.READ if right in ("Read", "ViewPrivateItems") else granted >= Need.WRITE
        etree.SubElement(rights, t(right)).text = "true" if allowed else "false"
    if tag == "Folder":
        etree.SubElement(folder, t("UnreadCount")).text = "0"
    return folder


def get_folder(context: RequestContext, request: Element) -> Element:
    messages = []
    folder_ids = request.find("m:FolderIds", NSMAP)
    for target in folder_ids if folder_ids is not None else []:
        try:
            mailbox, name = resolve_folder(context, target)
            # The calendar folder itself is visible with free/busy rights; the hierarchy needs folder rights.
            context.require(mailbox, Need.FREEBUSY if name == "calendar" else Need.FOLDER)
            message = success("GetFolderResponseMessage")
            etree.SubElement(message, f"{{{NSMAP['m']}}}Folders").append(_folder_element(context, mailbox, name))
        except EwsError as failure:
            message = error_message("GetFolderResponseMessage", failure)
        messages.append(message)
    return response("GetFolder", messages)


def convert_id(context: RequestContext, request: Element) -> Element:
    # exchangelib sends a dummy id only to read the version header; ids are not converted here.
    sources = request.find("m:SourceIds", NSMAP)
    count = max(1, len(sources) if sources is not None else 0)
    return response("ConvertId", [
        error_message("ConvertIdResponseMessage", error("ErrorInvalidIdMalformed")) for _ in range(count)
    ])


HANDLERS: dict[str, Handler] = {"GetFolder": get_folder, "ConvertId": convert_id}
