"""Per-CA revocation settings: how each uploaded CA's certificates are checked.

Defaults are what a careful admin would choose (``docs/config.md``, "Revocation"):

- ``mode`` ``crl``: check the CRL named by each certificate's distribution points (or the
  override), the most widely published revocation source in device PKIs;
- fail closed: when no answer can be had, the device is refused with
  REVOCATION_UNAVAILABLE; fail-open allows are logged as such;
- ``max_staleness`` 1 hour: a CRL past its nextUpdate is still used for an hour of grace
  (publishing is often late), then REVOCATION_STALE;
- ``timeout`` 2 s: the most a login ever waits on a CRL download or an OCSP answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from certbound.errors import ReasonCode
from certbound.storage.models import CARevocation


class Mode(enum.StrEnum):
    OFF = "off"
    CRL = "crl"
    OCSP = "ocsp"
    OCSP_THEN_CRL = "ocsp-then-crl"


MAX_TIMEOUT_SECONDS = 30.0
# A CRL used a year past its nextUpdate is no revocation check at all.
MAX_STALENESS_SECONDS = 365 * 24 * 3600


class RevocationSourceError(Exception):
    """A revocation source (a CRL, an OCSP exchange) that gave no usable answer;
    ``problem`` is a short machine word its module lists in ``PROBLEMS``."""

    def __init__(self, problem: str, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message

    @property
    def reason(self) -> ReasonCode:
        """The reason code a caller reports when this source was its only answer."""
        return ReasonCode.REVOCATION_UNAVAILABLE


@dataclass(frozen=True, slots=True)
class RevocationPolicy:
    mode: Mode = Mode.CRL
    fail_open: bool = False
    crl_url: str | None = None
    ocsp_url: str | None = None
    max_staleness: dt.timedelta = dt.timedelta(hours=1)
    timeout: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.timeout <= MAX_TIMEOUT_SECONDS:
            raise ValueError(f"timeout must be in (0, {MAX_TIMEOUT_SECONDS:g}] seconds")
        if not dt.timedelta(0) <= self.max_staleness <= dt.timedelta(seconds=MAX_STALENESS_SECONDS):
            raise ValueError(f"max_staleness must be 0 to {MAX_STALENESS_SECONDS} seconds")
        for name, url in (("crl_url", self.crl_url), ("ocsp_url", self.ocsp_url)):
            if url is not None:
                check_url(url, name, allow_file=name == "crl_url")

    def replace(self, **changes: Any) -> RevocationPolicy:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "failMode": "open" if self.fail_open else "closed",
            "crlUrl": self.crl_url,
            "ocspUrl": self.ocsp_url,
            "maxStalenessSeconds": int(self.max_staleness.total_seconds()),
            "timeoutSeconds": self.timeout,
        }


DEFAULT_POLICY = RevocationPolicy()


def check_url(url: str, name: str, *, allow_file: bool) -> None:
    """http(s) URLs only; ``file:`` too for CRLs (a CRL synced to disk)."""
    schemes = {"http", "https", "file"} if allow_file else {"http", "https"}
    parts = urlsplit(url)
    if parts.scheme not in schemes or (parts.scheme != "file" and not parts.netloc):
        allowed = ", ".join(sorted(schemes))
        raise ValueError(f"{name} must be an absolute URL ({allowed}): {url!r}")


def load(session: Session, ca_id: str) -> RevocationPolicy:
    """The CA's policy (the defaults when none was set)."""
    row = session.get(CARevocation, ca_id)
    if row is None:
        return DEFAULT_POLICY
    return RevocationPolicy(
        mode=Mode(row.mode),
        fail_open=row.fail_open,
        crl_url=row.crl_url,
        ocsp_url=row.ocsp_url,
        max_staleness=dt.timedelta(seconds=row.max_staleness_seconds),
        timeout=row.timeout_seconds,
    )


def store(session: Session, ca_id: str, policy: RevocationPolicy) -> None:
    row = session.get(CARevocation, ca_id) or CARevocation(ca_id=ca_id)
    row.mode = policy.mode.value
    row.fail_open = policy.fail_open
    row.crl_url = policy.crl_url
    row.ocsp_url = policy.ocsp_url
    row.max_staleness_seconds = int(policy.max_staleness.total_seconds())
    row.timeout_seconds = policy.timeout
    session.add(row)
