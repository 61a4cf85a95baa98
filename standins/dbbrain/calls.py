"""The record of one API call, and the error an action answers with.

Every part of the emulator shares these two: the server fills in a Call as it checks and runs a
request, and anything that refuses a request raises ApiError with DBbrain's error code.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Call:
    """One request as received; recorded once its outcome is decided."""

    action: str
    params: dict[str, Any]
    headers: dict[str, str]
    secret_id: str | None = None
    signature_ok: bool = False
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    error_code: str | None = None
    received_at: float = field(default_factory=time.time)
    token: str | None = None
    scripted: dict[str, Any] | None = None  # the scripted answer this call consumed
    # "created", "cancelled", "nothing-active" (cancel without task); KillMySqlThreads:
    # "prepared", "killed", "expired" (a SqlExecId older than SQL_EXEC_TTL)
    effect: str | None = None


class ApiError(Exception):
    """An error reply: ``{"Error": {"Code": code, "Message": message}}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code, self.message = code, message
