"""The cached instance list: what DBbrain listed, per account, shared by every replica."""

from __future__ import annotations

import contextlib

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from bot.estate import InstanceInfo
from bot.store.cards import CardRows
from bot.store.tables import instances


class InstanceRows(CardRows):
    def cached_instances(self) -> list[InstanceInfo]:
        with self._errors(), self.engine.connect() as conn:
            rows = conn.execute(select(instances)).mappings().all()
        return [InstanceInfo(**row) for row in rows]

    def cached_instance(self, instance_id: str) -> InstanceInfo | None:
        with self._errors(), self.engine.connect() as conn:
            row = (
                conn.execute(select(instances).where(instances.c.instance_id == instance_id))
                .mappings()
                .first()
            )
        return InstanceInfo(**row) if row else None

    def cache_instances(self, rows: list[InstanceInfo], account: str | None) -> None:
        """Store the rows. With `account`, they are that account's whole list: its rows not
        listed any more are dropped. Without, they are single lookups added to the list."""
        now = self._clock()
        ids = [r.instance_id for r in rows]
        # Another replica caching the same instances at the same moment wins: its rows stand.
        with contextlib.suppress(IntegrityError), self._writing() as conn:
            if account is not None:
                conn.execute(delete(instances).where(instances.c.account == account))
            conn.execute(delete(instances).where(instances.c.instance_id.in_(ids)))
            if rows:
                values = [
                    {**r.__dict__, "fetched_at": now}
                    for r in {r.instance_id: r for r in rows}.values()
                ]
                conn.execute(insert(instances), values)
