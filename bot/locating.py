"""Where an instance is, asked while filing, and which instances a person may pick."""

from __future__ import annotations

import logging

from bot.access import Access
from bot.cloud import CloudError
from bot.estate import Estate, InstanceInfo, UnknownInstance
from bot.killtask import PRODUCTS, KillTaskSpec
from bot.outcomes import Outcome
from bot.policy import Target

log = logging.getLogger(__name__)


def locate_for_filing(
    estate: Estate | None, spec: KillTaskSpec
) -> tuple[str | None, str | None] | Outcome:
    """The instance's (account, region); an Outcome when DBbrain does not list it. When
    DBbrain cannot be asked just now, the request is filed with the region unknown: the start
    looks it up again, and a failure then shows on the card."""
    if estate is None:
        return None, None
    try:
        where = estate.locate(spec.instance_id, spec.product, quick=True)
    except UnknownInstance as exc:
        text = (
            f"{spec.instance_id} is not an instance DBbrain lists ({exc}), so nothing was "
            "filed. Check the ID, or pick the instance from the list in the form."
        )
        return Outcome(False, text, None, "instance_id")
    except CloudError as error:
        account = estate.account_for(spec.instance_id)
        log.warning(
            "instance_lookup_failed instance=%s code=%s action=%s",
            spec.instance_id, error.code, error.action,
        )  # fmt: skip
        return (account.name if account else None), None
    return where.account.name, where.region


def options_for(
    estate: Estate | None, access: Access, user_id: str, channel_id: str, typed: str
) -> list[InstanceInfo]:
    """The cached instances this person may request, matching what they typed."""
    if estate is None:
        return []
    policy = access.policy
    groups = access.membership.groups_of(user_id, policy.groups)  # once, not per row

    def allowed(info: InstanceInfo) -> bool:
        product = info.product if info.product in PRODUCTS else "mysql"
        target = Target(info.instance_id, product)
        return policy.check("request", user_id, groups, channel_id, target).allowed

    found = estate.options(typed, allowed)
    estate.refresh_soon()  # reads DBbrain only when the list is old
    return found
