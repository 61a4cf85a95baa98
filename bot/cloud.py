"""The port to DBbrain: what the service asks of it and the typed errors it gets back.

The gateway (bot.dbbrain) implements this with Tencent's SDK; nothing here imports the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from bot.killtask import KillTaskSpec

DEFAULT_ENDPOINT = "https://dbbrain.tencentcloudapi.com"

# One line per try of a call: the error code (or "ok") and DBbrain's RequestId, if any.
Attempt = tuple[str, str | None]


@dataclass(frozen=True)
class CloudResult:
    request_id: str
    attempts: int = 1
    tries: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class SessionList:
    """DescribeMySqlProcessList's answer: rows as DBbrain gives them (every value a string)."""

    rows: list[dict[str, object]]
    request_id: str


@dataclass(frozen=True)
class KillStage:
    """One stage of KillMySqlThreads: the thread IDs DBbrain named, and the SqlExecId a
    Prepare answers (a Commit answers the threads it killed)."""

    threads: tuple[int, ...]
    request_id: str
    sql_exec_id: str | None = None
    attempts: int = 1


class CloudError(Exception):
    """A DBbrain call that did not succeed, already translated into words a person can act on."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        request_id: str | None = None,
        outcome_unknown: bool = False,
        attempts: int = 1,
        action: str = "CreateKillTask",
        tries: tuple[Attempt, ...] = (),
    ):
        self.action = action
        self.tries = tries
        self.code = code
        self.message = message
        self.request_id = request_id
        self.outcome_unknown = outcome_unknown
        self.attempts = attempts
        super().__init__(f"{code}: {message}")

    def explain(self) -> str:
        """What happened and what to do next, for the card and the thread."""
        code = self.code
        nothing = (
            "Nothing was created." if self.action == "CreateKillTask" else "Nothing was changed."
        )
        if self.action == "AssumeRole":
            return (
                f"STS refused to let the bot assume this account's role ({code}: "
                f"{self.message}). Nothing was sent to DBbrain. An admin needs to check the "
                "role's trust policy and the keys it is assumed with; the bot asks STS again "
                "on the next action."
            )
        if self.action == "Credentials":
            return (
                f"The bot has no cloud keys for this ({self.message}). Nothing was sent to "
                "DBbrain. An admin needs to set them up (README: Accounts and credentials)."
            )
        if self.outcome_unknown and self.action == "KillMySqlThreads":
            return (
                f"A KillMySqlThreads Commit may have reached DBbrain, but no clear answer came "
                f"back ({self.message}), so the bot cannot tell which of these sessions were "
                "killed. "
                "It will not be sent again. Check the sessions with `/killtask preview`, and "
                "file again if they are still there."
            )
        if self.outcome_unknown:
            return (
                f"{self.action} was sent but no clear answer came back ({self.message}), so the "
                "bot cannot tell whether it took effect. It will not be sent again on its own. "
                "Check the instance's "
                "DBbrain console (Diagnosis → Sessions → kill tasks) and stop it there or with "
                "Stop if it runs."
            )
        if code.startswith("AuthFailure"):
            return (
                "Tencent Cloud refused the bot's own cloud credentials "
                f"({code}). {nothing} An admin needs to check the bot's "
                "TENCENTCLOUD_SECRET_ID / SECRET_KEY (or session token) and the server clock."
            )
        if code.startswith(("UnauthorizedOperation", "OperationDenied")):
            return (
                "The bot's cloud account is not allowed to do this "
                f"({code}). Its CAM policy needs dbbrain:{self.action} on this instance. "
                f"{nothing}"
            )
        if code.startswith("RequestLimitExceeded"):
            return (
                "DBbrain kept answering that too many requests were made, even after retries. "
                f"{nothing} Try again in a few seconds."
            )
        if code == "UnsupportedOperation.HasDuplicatedTask":
            return (
                "DBbrain already runs a kill task on this instance (started elsewhere, perhaps "
                "from the console). Stop it first with `/killtask stop <instance>`, then file "
                "again."
            )
        if code == "StoreUnavailable":
            return (
                f"The bot's database did not answer ({self.message}), so nothing was sent to "
                f"DBbrain. {nothing} Try again in a moment."
            )
        if code == "ReadBudgetInUse":
            return (
                "The bot's share of DBbrain's requests for reads was in use by other previews, "
                "so the sessions were not read just now. Nothing was sent; try again in a moment."
            )
        if code.startswith(("InvalidParameter", "MissingParameter", "UnknownParameter")):
            return f"DBbrain refused the request: {self.message}. {nothing}"
        if code.startswith("ResourceNotFound"):
            return f"DBbrain does not know this instance: {self.message}. Check the instance ID."
        if code in ("ClientNetworkError", "ServerNetworkError", "InternalError", "BadResponse"):
            return (
                f"DBbrain could not be reached or failed ({code}: {self.message}). "
                f"{nothing} Try again, and check DBbrain's status if it repeats."
            )
        return f"DBbrain answered {code}: {self.message}"


class Cloud(Protocol):
    """Every call about an instance goes to that instance's own account and region."""

    def create_kill_task(self, spec: KillTaskSpec) -> CloudResult: ...

    def cancel_kill_task(self, instance_id: str, product: str) -> CloudResult: ...

    def list_sessions(
        self, instance_id: str, product: str, filters: dict[str, object], limit: int,
        wait: bool = True,
    ) -> SessionList: ...  # fmt: skip

    def prepare_kill(self, instance_id: str, product: str, threads: list[int]) -> KillStage: ...

    def commit_kill(self, instance_id: str, product: str, sql_exec_id: str) -> KillStage: ...

    def diag_events(
        self, instance_id: str, product: str, start: str, end: str
    ) -> list[dict[str, object]]: ...


def split_endpoint(endpoint: str) -> tuple[str, str]:
    """'http://127.0.0.1:9100' -> ('http', '127.0.0.1:9100'); the SDK wants them apart, and a
    scheme left inside its endpoint would be signed as the Host header."""
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError("must look like https://dbbrain.tencentcloudapi.com or http://host:port")
    return parts.scheme, parts.netloc
