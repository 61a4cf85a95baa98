"""What each DBbrain action does, registered in ACTIONS (action name → handler).

A handler checks its parameters the way DBbrain does, acts on the emulator's state and answers
(response fields, effect); the effect is the word tests read in ``Call.effect``. Handlers take
the emulator's lock themselves, never across backend I/O. A new action is one function here
and one line in ACTIONS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from standins.dbbrain.calls import ApiError
from standins.dbbrain.matching import KillFilter, killable, session_seconds
from standins.dbbrain.params import check_params, check_product, invalid, missing
from standins.dbbrain.server import Answer
from standins.sessions import Sessions, SessionsError

if TYPE_CHECKING:
    from standins.dbbrain.emulator import DbbrainEmulator

DbbrainHandler = Callable[["DbbrainEmulator", dict[str, Any]], Answer]


def _unreachable(e: SessionsError) -> ApiError:
    return ApiError("ResourceUnavailable", f"The instance cannot be reached: {e}")


def _list(backend: Sessions) -> list[dict[str, str]]:
    try:
        return backend.list()
    except SessionsError as e:
        raise _unreachable(e) from e


def create_kill_task(emu: DbbrainEmulator, params: dict[str, Any]) -> Answer:
    texts = ("InstanceId", "Host", "DB", "Command", "Info", "User", "Product")
    spec = dict.fromkeys(texts, str) | {"Duration": int, "Time": int, "Infos": list}
    check_params(params, spec, ("InstanceId", "Duration"))
    product = check_product(params, {"mysql", "cynosdb"})
    duration = params["Duration"]
    if duration != -1 and duration <= 0:
        raise ApiError("InvalidParameterValue", "Duration must be -1 or greater than 0.")
    if "Info" in params and "Infos" in params:
        raise ApiError("InvalidParameter", "Info and Infos cannot be used together.")
    kill_filter = KillFilter.from_params(params)
    emu.backend_for(params["InstanceId"])
    emu.kill_tasks.start(params, product, kill_filter)
    return {"Status": 1}, "created"


def cancel_kill_task(emu: DbbrainEmulator, params: dict[str, Any]) -> Answer:
    check_params(params, {"InstanceId": str, "Product": str}, ("InstanceId",))
    product = check_product(params, {"mysql", "cynosdb"})
    emu.backend_for(params["InstanceId"])
    if not emu.kill_tasks.cancel(params["InstanceId"], product):
        return {"Status": 1}, "nothing-active"  # DBbrain answers success here too
    return {"Status": 1}, "cancelled"


def describe_process_list(emu: DbbrainEmulator, params: dict[str, Any]) -> Answer:
    texts = ("InstanceId", "User", "Host", "DB", "State", "Command", "Info", "Product")
    ints = ("ID", "Time", "Limit")
    spec = dict.fromkeys(texts, str) | dict.fromkeys(ints, int) | {"StatDimensions": list}
    check_params(params, spec, ("InstanceId",))
    check_product(params, {"mysql", "mariadb", "cynosdb", "dcdb"})
    backend = emu.backend_for(params["InstanceId"])
    limit = params.get("Limit", 20)
    if limit <= 0:
        raise ApiError("InvalidParameterValue", "Limit must be greater than 0.")
    keys = ("ID", "User", "Host", "DB", "State", "Command")
    exact = {k: str(params[k]) for k in keys if k in params}
    rows = [
        row
        for row in (_list(backend) if backend else [])
        if all(row[k] == v for k, v in exact.items())
        and params.get("Info", "") in row["Info"]
        and session_seconds(row["Time"]) >= params.get("Time", 0)
    ]
    return {"ProcessList": rows[:limit]}, None


def kill_threads(emu: DbbrainEmulator, params: dict[str, Any]) -> Answer:
    """KillMySqlThreads: Stage Prepare names the threads, Stage Commit kills them."""
    texts = ("InstanceId", "Stage", "SqlExecId", "Product")
    spec = dict.fromkeys(texts, str) | {"Threads": list, "RecordHistory": bool}
    check_params(params, spec, ("InstanceId", "Stage"))
    target = (params["InstanceId"], check_product(params, {"mysql", "cynosdb"}))
    backend = emu.backend_for(params["InstanceId"])
    if params["Stage"] == "Prepare":
        return _prepare(emu, params, target)
    if params["Stage"] != "Commit":
        raise invalid("Stage", "must be Prepare or Commit")
    return _commit(emu, params, target, backend)


def _prepare(emu: DbbrainEmulator, params: dict[str, Any], target: tuple[str, str]) -> Answer:
    if "Threads" not in params:
        raise missing("Threads")
    threads = params["Threads"]
    if not threads or min(threads) <= 0:
        raise invalid("Threads", "must be a non-empty list of thread ids")
    exec_id = emu.prepared_kills.prepare(target, threads)
    return {"Threads": list(threads), "SqlExecId": exec_id}, "prepared"


def _commit(
    emu: DbbrainEmulator,
    params: dict[str, Any],
    target: tuple[str, str],
    backend: Sessions | None,
) -> Answer:
    if "SqlExecId" not in params:
        raise missing("SqlExecId")
    prepared = emu.prepared_kills.take(params["SqlExecId"], target)
    if prepared is None:
        raise invalid("SqlExecId", "is unknown or was prepared for another instance")
    if time.time() - prepared["PreparedAt"] > emu.sql_exec_ttl:
        return {"Threads": []}, "expired"
    # As DBbrain with RecordHistory (its default): kill only sessions that still exist.
    rows = {row["ID"]: row for row in _list(backend)} if backend else {}
    killed = []
    for thread_id in prepared["Threads"]:
        row = rows.get(str(thread_id))
        if backend is None or row is None or not killable(backend, row):
            continue
        try:
            if backend.kill(thread_id):
                killed.append(thread_id)
        except SessionsError as e:
            raise _unreachable(e) from e
    return {"Threads": killed}, "killed"


def describe_instances(emu: DbbrainEmulator, params: dict[str, Any], account: str) -> Answer:
    """DescribeDiagDBInstances for the caller's account, in pages. Asked about named
    instances, it answers for any instance the emulator accepts (placed or not)."""
    spec = {"IsSupported": bool, "Product": str, "Offset": int, "Limit": int}
    check_params(params, spec | {"InstanceIds": list, "InstanceNames": list, "Regions": list},
                 ("IsSupported", "Product"))  # fmt: skip
    product = check_product(params, {"mysql", "cynosdb", "mariadb", "dcdb"})
    limit = params.get("Limit", 20)
    if not 1 <= limit <= 100:
        raise ApiError("InvalidParameterValue", "Limit must be from 1 to 100.")
    if "InstanceIds" in params:
        accepted = [i for i in params["InstanceIds"] if emu.instances is None or i in emu.instances]
        # An instance never placed is whatever product it is asked about.
        rows = [emu.place_of(i) | ({} if i in emu.places else {"Product": product})
                for i in accepted]  # fmt: skip
        rows = [r for r in rows if r["Account"] == account and r["Product"] == product]
    else:
        rows = emu.listed(account, product)
    if "Regions" in params:
        rows = [r for r in rows if r["Region"] in params["Regions"]]
    offset = params.get("Offset", 0)
    items = [{k: v for k, v in r.items() if k != "Account"} | {"Status": 0}
             for r in rows[offset : offset + limit]]  # fmt: skip
    return {"TotalCount": len(rows), "Items": items}, None


def describe_diag_events(emu: DbbrainEmulator, params: dict[str, Any]) -> Answer:
    """DescribeDBDiagEvents: the events tests put in ``emu.diag_events``, within the times."""
    texts = ("StartTime", "EndTime", "Product")
    spec = dict.fromkeys(texts, str) | {"InstanceIds": list, "Severities": list}
    spec |= {"DiagItems": list, "Offset": int, "Limit": int}
    check_params(params, spec, ("StartTime", "EndTime"))
    start, end = params["StartTime"], params["EndTime"]
    if start > end:
        raise ApiError("InvalidParameterValue", "StartTime must be before EndTime.")
    wanted = set(params.get("InstanceIds") or ())
    with emu._cond:
        events = [
            dict(event)
            for instance_id, found in emu.diag_events.items()
            if not wanted or instance_id in wanted
            for event in found
            if start <= event.get("StartTime", start) <= end
        ]
    limit = params.get("Limit", 20)
    return {"TotalCount": len(events), "Items": events[:limit]}, None


ACTIONS: dict[str, DbbrainHandler] = {
    "DescribeDBDiagEvents": describe_diag_events,
    "CreateKillTask": create_kill_task,
    "CancelKillTask": cancel_kill_task,
    "DescribeMySqlProcessList": describe_process_list,
    "KillMySqlThreads": kill_threads,
}
