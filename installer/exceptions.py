"""The installer's errors. Every message says what was wrong, with the value (never a secret),
and what to do about it. A failed preflight is a report (installer.preflight), not an error.

::

    InstallerError
     ├── ConfigError (ValueError)            a pcg.yaml or an answer is wrong; .problems lists all
     │    └── PassphraseError                 the passphrase is missing, too weak, or wrong
     ├── PaletteError                         talking to Palette failed
     │    ├── PaletteUnreachable (OSError)     no connection, TLS, timeout
     │    └── PaletteApiError                  an error answer: .status .code (Palette's envelope)
     │         ├── LoginRejected               wrong username or password
     │         ├── SsoUserNotAllowed           the user signs in with SSO only
     │         └── PairingCodeRejected         invalid, expired or already used
     └── InstallFailed                        bootstrap failed; machines released: .hint
          └── InstallInterrupted               Ctrl-C / SIGTERM during the install
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One wrong setting: where (``palette.endpoint``) and what to do."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InstallerError(Exception):
    """Base of every error the installer reports to its user."""


class ConfigError(InstallerError, ValueError):
    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)

    @classmethod
    def from_problems(cls, problems: Sequence[Problem], source: str = "") -> ConfigError:
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {problem}" for problem in problems)
        return cls(f"{len(problems)} setting(s) to fix{where}:\n{lines}", problems)


class PassphraseError(ConfigError):
    pass


class PaletteError(InstallerError):
    pass


class PaletteUnreachable(PaletteError, OSError):
    pass


class PaletteApiError(PaletteError):
    def __init__(self, message: str, *, status: int, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class LoginRejected(PaletteApiError):
    pass


class SsoUserNotAllowed(PaletteApiError):
    pass


class PairingCodeRejected(PaletteApiError):
    pass


class InstallFailed(InstallerError):
    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class InstallInterrupted(InstallFailed):
    pass
