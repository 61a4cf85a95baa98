"""DBbrain's side of the emulator: its instances, their sessions, and the kills under way.

DbbrainEmulator is the CloudApiServer for service "dbbrain", version 2021-05-27; what each
action does is in actions.py. The state it adds is what tests set up and read: which instances
exist, where each one's sessions come from, and the kill tasks and prepared kills.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from standins.dbbrain.actions import ACTIONS, describe_instances
from standins.dbbrain.calls import ApiError, Call
from standins.dbbrain.kills import KillTasks, PreparedKills, copy_task
from standins.dbbrain.server import Answer, CloudApiServer
from standins.sessions import Sessions, SimulatedSessions

API_VERSION = "2021-05-27"
SERVICE = "dbbrain"
DEFAULT_KEYS = {"AKIDEMULATOR": "emulator-secret"}
SQL_EXEC_TTL = 10.0  # seconds a KillMySqlThreads SqlExecId stays good, as DBbrain
DEFAULT_REGION = "ap-guangzhou"  # where instances nobody placed live


class DbbrainEmulator(CloudApiServer):
    service = SERVICE
    version = API_VERSION
    actions = ACTIONS

    def __init__(
        self,
        keys: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        instances: Iterable[str] | None = None,
        backends: Mapping[str, Sessions] | None = None,
        kill_interval: float = 1.0,
        default_region: str = DEFAULT_REGION,
    ) -> None:
        super().__init__(DEFAULT_KEYS if keys is None else keys, host, port)
        # With an allow-list, other instance ids get ResourceNotFound; by default any is accepted.
        # Instances given a backend are configured, so they form (or join) the allow-list.
        configured = None if instances is None and backends is None else set(instances or ())
        self.instances = None if configured is None else configured | set(backends or ())
        # Instances without a backend have no sessions (an empty process list).
        self.backends: dict[str, Sessions] = dict(backends or {})
        self.kill_interval = kill_interval
        self.sql_exec_ttl = SQL_EXEC_TTL
        self.kill_tasks = KillTasks(
            self._cond,
            backend_of=lambda instance_id: self.backends.get(instance_id),
            interval=lambda: self.kill_interval,
        )
        self.prepared_kills = PreparedKills(self._cond)
        self.default_region = default_region
        # Where placed instances live: instance id → region, account, name, product, health.
        self.places: dict[str, dict[str, Any]] = {}
        # DBbrain's diagnosis events by instance, as DescribeDBDiagEvents lists them.
        self.diag_events: dict[str, list[dict[str, Any]]] = {}

    def stop(self) -> None:
        """Stop serving, end every kill task's thread and close the backends' connections."""
        super().stop()
        self.kill_tasks.stop_workers()
        with self._cond:
            backends = list(self.backends.values())
        for backend in backends:
            backend.close()

    # --- set-up and observation for tests ---------------------------------------------------
    def reset(self) -> None:
        """Forget calls, scripts and tasks, ending their threads (backends, keys, delay stay)."""
        self.kill_tasks.forget()
        with self._cond:
            super().reset()
            self.prepared_kills.forget()
            self.diag_events = {}

    def set_process_list(self, instance_id: str, rows: Iterable[dict[str, Any]]) -> None:
        """Give the instance simulated sessions (replacing its backend); killed rows vanish."""
        self.set_backend(instance_id, SimulatedSessions(rows))

    def set_backend(self, instance_id: str, backend: Sessions) -> None:
        with self._cond:
            old = self.backends.get(instance_id)
            self.backends[instance_id] = backend
            if self.instances is not None:
                self.instances.add(instance_id)
        if old is not None and old is not backend:
            old.close()

    def place(
        self,
        instance_id: str,
        region: str,
        account: str = "default",
        *,
        name: str | None = None,
        product: str = "mysql",
        health_score: int = 100,
        event_count: int = 0,
    ) -> None:
        """Put an instance in a region and an account: DescribeDiagDBInstances lists it there,
        and calls about it must come with that region and a key of that account."""
        with self._cond:
            self.places[instance_id] = {
                "InstanceId": instance_id, "InstanceName": name or instance_id,
                "Region": region, "Product": product, "HealthScore": health_score,
                "EventCount": event_count, "Account": account,
            }  # fmt: skip
            if self.instances is not None:
                self.instances.add(instance_id)

    def place_of(self, instance_id: str) -> dict[str, Any]:
        """A placed instance's row; any other one lives in the default region and account."""
        with self._cond:
            found = self.places.get(instance_id)
        return found or {
            "InstanceId": instance_id, "InstanceName": instance_id, "Region": self.default_region,
            "Product": "mysql", "HealthScore": 100, "EventCount": 0, "Account": "default",
        }  # fmt: skip

    def active_task(self, instance_id: str, product: str = "mysql") -> dict[str, Any] | None:
        with self._cond:
            task = self.kill_tasks.active(instance_id, product)
            return copy_task(task) if task else None

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """Every task ever created, oldest first (copies); ``Killed`` lists its thread ids."""
        return self.kill_tasks.all()

    # --- for the actions --------------------------------------------------------------------
    def _dispatch(self, call: Call) -> Answer:
        """Calls about one instance must reach its region, with a key of its account."""
        if call.action == "DescribeDiagDBInstances":
            return describe_instances(self, call.params, self.account_of_key(call.secret_id))
        instance_id = call.params.get("InstanceId")
        if isinstance(instance_id, str):
            place = self.place_of(instance_id)
            region = call.headers.get("X-TC-Region", "")
            if not region:
                raise ApiError("MissingParameter", "The request is missing `Region`.")
            account = self.account_of_key(call.secret_id)
            if region != place["Region"] or account != place["Account"]:
                raise ApiError(
                    "ResourceNotFound", f"Instance {instance_id} is not found in {region}."
                )
        return super()._dispatch(call)

    def listed(self, account: str, product: str) -> list[dict[str, Any]]:
        """What DescribeDiagDBInstances lists for `account`: placed instances and, in the
        default account, every instance given sessions."""
        with self._cond:
            ids = set(self.places) | (set(self.backends) if account == "default" else set())
        rows = [self.place_of(i) for i in sorted(ids)]
        return [r for r in rows if r["Account"] == account and r["Product"] == product]

    def backend_for(self, instance_id: str) -> Sessions | None:
        """The instance's backend (None: no sessions); ResourceNotFound if not configured."""
        with self._cond:
            if self.instances is not None and instance_id not in self.instances:
                raise ApiError("ResourceNotFound", f"Instance {instance_id} is not found.")
            return self.backends.get(instance_id)
