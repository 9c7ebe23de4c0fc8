"""The secrets of pcg.yaml, sealed with a passphrase.

A key of 256 bits is derived from the passphrase with scrypt (salt of 16 random bytes per file,
n=2^15, r=8, p=1: about 32 MiB and a tenth of a second, enough to make guessing costly). Each
secret is sealed with AES-256-GCM under a fresh 96-bit nonce; the setting's path in pcg.yaml
is the associated data, so a sealed value moved to another setting does not open. A sealed value
reads ``enc:v1:<base64(nonce || ciphertext || tag)>``. A wrong passphrase (or an edited value)
fails the GCM tag check: :class:`PassphraseError`, never garbage.

The passphrase rules follow the Palette CLI's: 8-32 characters with an upper-case letter, a
lower-case letter, a digit and a special character.
"""

from __future__ import annotations

import base64
import os
import string
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from installer.exceptions import PassphraseError

ENV_PASSPHRASE = "PCG_ENCRYPTION_PASSPHRASE"
PREFIX = "enc:v1:"
_AAD_PREFIX = b"pcg.yaml/v1/"
_NONCE = 12


def check_passphrase(passphrase: str) -> str | None:
    """None if the passphrase may be used to seal, else what it lacks (never the value)."""
    lacks = []
    if not 8 <= len(passphrase) <= 32:
        lacks.append(f"8 to 32 characters (it has {len(passphrase)})")
    if not any(c.isupper() for c in passphrase):
        lacks.append("an upper-case letter")
    if not any(c.islower() for c in passphrase):
        lacks.append("a lower-case letter")
    if not any(c.isdigit() for c in passphrase):
        lacks.append("a digit")
    if not any(c in string.punctuation or c == " " for c in passphrase):
        lacks.append("a special character such as !@#%-_")
    if not lacks:
        return None
    return "the encryption passphrase needs " + ", ".join(lacks)


@dataclass(frozen=True, slots=True)
class KdfParams:
    salt: bytes
    n: int = 2**15
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if len(self.salt) < 16:
            raise PassphraseError("encryption.salt must be at least 16 bytes (base64)")
        if self.n < 2**14 or self.n > 2**20 or self.n & (self.n - 1):
            raise PassphraseError(f"encryption.n={self.n} must be a power of two in [2^14, 2^20]")
        if not (1 <= self.r <= 32 and 1 <= self.p <= 16):
            raise PassphraseError(f"encryption.r={self.r}/p={self.p} are out of range")

    @classmethod
    def fresh(cls) -> KdfParams:
        return cls(salt=os.urandom(16))

    def to_yaml(self) -> dict[str, Any]:
        return {
            "cipher": "AES-256-GCM",
            "kdf": "scrypt",
            "salt": base64.b64encode(self.salt).decode("ascii"),
            "n": self.n,
            "r": self.r,
            "p": self.p,
        }

    @classmethod
    def from_yaml(cls, data: object) -> KdfParams:
        if not isinstance(data, dict):
            raise PassphraseError(
                "pcg.yaml has no 'encryption' section: it was not written by pcg-installer, "
                "or the section was removed; rerun the installer to write a new file"
            )
        if data.get("kdf") != "scrypt" or data.get("cipher") != "AES-256-GCM":
            raise PassphraseError(
                f"encryption kdf={data.get('kdf')!r} cipher={data.get('cipher')!r}: only scrypt "
                "with AES-256-GCM is supported"
            )
        try:
            return cls(
                salt=base64.b64decode(str(data["salt"]), validate=True),
                n=int(data.get("n", 2**15)),
                r=int(data.get("r", 8)),
                p=int(data.get("p", 1)),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise PassphraseError(f"the encryption section of pcg.yaml is damaged: {exc}") from None


@dataclass(frozen=True, slots=True)
class Sealer:
    """Seals and opens the secrets of one pcg.yaml."""

    params: KdfParams
    _key: bytes = field(repr=False)

    @classmethod
    def derive(cls, passphrase: str, params: KdfParams) -> Sealer:
        if not passphrase:
            raise PassphraseError(
                "no encryption passphrase: give it with --encryption-passphrase or the "
                f"environment variable {ENV_PASSPHRASE}"
            )
        kdf = Scrypt(salt=params.salt, length=32, n=params.n, r=params.r, p=params.p)
        return cls(params, kdf.derive(passphrase.encode("utf-8")))

    @classmethod
    def new(cls, passphrase: str) -> Sealer:
        """For writing a file: the passphrase must meet the rules; a fresh salt."""
        problem = check_passphrase(passphrase)
        if problem:
            raise PassphraseError(f"{problem}; choose another with --encryption-passphrase")
        return cls.derive(passphrase, KdfParams.fresh())

    def seal(self, path: str, plaintext: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(self._key).encrypt(nonce, plaintext.encode("utf-8"), _aad(path))
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, path: str, value: object) -> str:
        if not isinstance(value, str) or not value.startswith(PREFIX):
            raise PassphraseError(
                f"{path} in pcg.yaml is not encrypted (it must start with {PREFIX}); secrets "
                "cannot be edited by hand: rerun with --update-passwords to set a new value"
            )
        try:
            raw = base64.b64decode(value[len(PREFIX) :], validate=True)
        except ValueError:
            raise PassphraseError(
                f"{path} in pcg.yaml is damaged (not base64); rerun with --update-passwords"
            ) from None
        if len(raw) < _NONCE + 16:
            raise PassphraseError(f"{path} in pcg.yaml is damaged (too short)")
        try:
            plain = AESGCM(self._key).decrypt(raw[:_NONCE], raw[_NONCE:], _aad(path))
        except InvalidTag:
            raise PassphraseError(
                f"cannot decrypt {path}: the encryption passphrase is wrong (or the value was "
                "edited). Give the passphrase used when the file was written, with "
                f"--encryption-passphrase or {ENV_PASSPHRASE}; if it is lost, rerun with "
                "--update-passwords and a new passphrase"
            ) from None
        return plain.decode("utf-8")


def _aad(path: str) -> bytes:
    return _AAD_PREFIX + path.encode("utf-8")


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)
