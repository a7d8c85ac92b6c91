"""Secrets at rest and in events: Fernet (AES-128-CBC + HMAC-SHA256) with keys from the environment.

SPACESYNC_SECRET_KEYS holds one or more Fernet keys, comma-separated: the first encrypts, all decrypt,
so a key can be rotated by prepending the new one. Generate a key with
`python -m spacesync.common.secrets`.
"""

from __future__ import annotations

from typing import Annotated

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class SecretError(ValueError):
    """A token that no configured key can open (wrong key, or not a token)."""


class SecretSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACESYNC_", extra="ignore")

    secret_keys: SecretStr = Field(description="Comma-separated Fernet keys; the first one encrypts")


class SecretBox:
    def __init__(self, keys: SecretStr | str) -> None:
        text = keys.get_secret_value() if isinstance(keys, SecretStr) else keys
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if not parts:
            raise SecretError("no secret key configured (SPACESYNC_SECRET_KEYS)")
        try:
            self._fernet = MultiFernet([Fernet(part) for part in parts])
        except ValueError:
            raise SecretError("SPACESYNC_SECRET_KEYS: each key must be 32 url-safe base64-encoded bytes "
                              "(python -m spacesync.common.secrets makes one)") from None

    @classmethod
    def from_env(cls) -> SecretBox:
        return cls(SecretSettings().secret_keys)

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise SecretError("cannot decrypt: the token was made with another key, or is not a token") from None

    def __repr__(self) -> str:
        return "SecretBox(<keys hidden>)"


def _usable(keys: SecretStr) -> SecretStr:
    SecretBox(keys)  # SecretError (a ValueError) says what is wrong, never the key
    return keys


# A settings field: a bad key stops the service at start-up, naming the variable.
SecretKeys = Annotated[SecretStr, AfterValidator(_usable),
                       Field(description="Fernet keys, comma-separated; the first encrypts, all decrypt")]


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


if __name__ == "__main__":
    print(generate_key())
