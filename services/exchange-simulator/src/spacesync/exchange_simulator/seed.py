"""The seed file: mailboxes, service accounts and each account's rights per mailbox (YAML or JSON)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Access(StrEnum):
    """What an account may do with a mailbox, from most to least."""

    DELEGATE_WRITE = "delegate_write"  # Editor on the calendar (or FullAccess): read, create, modify, delete
    DELEGATE_READ = "delegate_read"  # Reviewer: read items with details, no writes
    IMPERSONATION = "impersonation"  # ApplicationImpersonation: acts as the mailbox itself, only when impersonating
    FREEBUSY = "freebusy"  # free/busy times only (GetUserAvailability), no folder access
    NONE = "none"


class ServerVersion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    major_version: int = 15
    minor_version: int = 1
    major_build_number: int = 2507
    minor_build_number: int = 6
    version: str = "V2017_07_11"  # Exchange 2016 CU; exchangelib reads the API version from here


class MailboxSeed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    smtp: str
    name: str
    kind: Literal["room", "user"] = "room"

    @field_validator("smtp")
    @classmethod
    def _lower(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("must be an SMTP address (name@domain)")
        return value.strip().lower()


class AccountSeed(BaseModel):
    """A service account: `DOMAIN\\user` or a UPN, its password and its rights."""

    model_config = ConfigDict(extra="forbid")

    username: str
    password: str
    smtp: str | None = None  # the account's own mailbox, if it has one
    rights: dict[str, Access] = Field(default_factory=dict)
    default_access: Access = Access.FREEBUSY  # on mailboxes not named in rights (Exchange's Default permission)
    max_concurrency: int | None = Field(default=None, ge=1)  # EWSMaxConcurrency; None: unlimited

    @field_validator("username")
    @classmethod
    def _username_form(cls, value: str) -> str:
        if "\\" in value:
            domain, _, user = value.partition("\\")
            if not domain or not user:
                raise ValueError("DOMAIN\\user needs both parts")
        elif "@" not in value:
            raise ValueError("must be DOMAIN\\user or a UPN (user@domain)")
        return value

    @field_validator("rights")
    @classmethod
    def _lower_keys(cls, value: dict[str, Access]) -> dict[str, Access]:
        return {smtp.strip().lower(): access for smtp, access in value.items()}

    def access_to(self, smtp: str) -> Access:
        if self.smtp and smtp == self.smtp.lower():
            return Access.DELEGATE_WRITE
        return self.rights.get(smtp, self.default_access)

    @property
    def key(self) -> str:
        """Case-insensitive identity, as Active Directory compares user names."""
        return self.username.lower()


class Seed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server_version: ServerVersion = Field(default_factory=ServerVersion)
    mailboxes: list[MailboxSeed]
    accounts: list[AccountSeed]

    @model_validator(mode="after")
    def _consistent(self) -> Seed:
        known = {m.smtp for m in self.mailboxes}
        if len(known) != len(self.mailboxes):
            raise ValueError("mailbox SMTP addresses must be unique")
        names = [a.key for a in self.accounts]
        if len(set(names)) != len(names):
            raise ValueError("account user names must be unique")
        for account in self.accounts:
            unknown = sorted(set(account.rights) - known)
            if unknown:
                raise ValueError(f"account {account.username}: rights name unknown mailboxes {unknown}")
        return self


class SeedError(ValueError):
    pass


def load_seed(path: Path) -> Seed:
    """Reads a YAML or JSON seed; any problem is one SeedError naming the file and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SeedError(f"seed file {path}: {error.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        return Seed.model_validate(data)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise SeedError(f"seed file {path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {error}") from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
        raise SeedError(f"seed file {path}: {problems}") from None
