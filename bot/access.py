"""Who may do what: the policy asked for one person and one action, with the refusal audited.

Group membership comes from the membership port (Slack's user groups), so the policy module
itself stays free of Slack. The policy is replaced whole on reload; each question reads it once.
"""

from __future__ import annotations

from typing import Protocol

from bot.audit import entry
from bot.killtask import KillTaskSpec, broad_reason
from bot.outcomes import Outcome
from bot.policy import Decision, Policy, Target
from bot.requests import KillRequest
from bot.rules import Requirement
from bot.store import Store


class Membership(Protocol):
    def groups_of(self, user_id: str, groups: frozenset[str]) -> frozenset[str]: ...

    def unanswered(self, groups: frozenset[str]) -> frozenset[str]: ...


class Access:
    def __init__(self, policy: Policy, membership: Membership, store: Store):
        self.policy = policy
        self.membership = membership
        self.store = store

    def is_member(self, user_id: str) -> bool:
        policy = self.policy
        return policy.is_member(user_id, self.membership.groups_of(user_id, policy.groups))

    def check(
        self, verb: str, user_id: str, channel_id: str, target: Target | None = None
    ) -> Decision:
        policy = self.policy
        groups = self.membership.groups_of(user_id, policy.groups)
        return policy.check(verb, user_id, groups, channel_id, target)

    def may_kill_all(self, request: KillRequest) -> bool:
        """Whether the requester or an approver holds `kill_all` here (a large one-shot)."""
        target = Target(request.spec.instance_id, request.spec.product)
        people = {request.requester_id, *request.approvers}
        return any(
            self.check("kill_all", person, request.channel_id, target).allowed for person in people
        )

    def counts(self, user_id: str, needed: Requirement) -> bool:
        """Whether this person's approval counts under the rules' `from` lists."""
        if not needed.from_:
            return True
        return needed.counts(user_id, self.membership.groups_of(user_id, needed.groups))

    @staticmethod
    def not_counted(needed: Requirement) -> Decision:
        groups = " and ".join("/".join(sorted(ids)) for ids in needed.from_)
        return Decision(
            False,
            f"your approval does not count for this request: it matches the rule for "
            f"{'; '.join(needed.because)}, which counts approvals only from {groups}; ask one "
            "of them to approve",
        )

    def check_spec(self, verb: str, user_id: str, channel_id: str, spec: KillTaskSpec) -> Decision:
        """The verb itself, and `kill_all` too when the spec reaches (nearly) every session."""
        target = Target(spec.instance_id, spec.product, spec.duration)
        decision = self.check(verb, user_id, channel_id, target)
        broad = broad_reason(spec)
        if decision.allowed and broad:
            wide = self.check("kill_all", user_id, channel_id, target)
            if not wide.allowed:
                return Decision(
                    False,
                    f"this request needs `kill_all` because {broad} ({wide.reason}); "
                    "add a filter such as user=, db= or command=",
                    field="info" if "prefix" in broad else None,
                )
        return decision

    def deny(
        self, user_id: str, action: str, decision: Decision, request: KillRequest | None = None,
        channel_id: str | None = None, instance_id: str | None = None,
    ) -> Outcome:  # fmt: skip
        self.store.audit(
            entry(
                request, user_id, action, "denied", channel_id=channel_id,
                instance_id=instance_id, detail=decision.reason,
            )
        )  # fmt: skip
        reason = decision.reason
        if self.membership.unanswered(self.policy.groups):
            reason += (
                " (Slack could not be asked who is in the policy's user groups, so group "
                "membership did not count; try again in a minute)"
            )
        return Outcome(False, f"Not allowed: {reason}.", request, decision.field)

    def precheck(
        self, user_id: str, channel_id: str, spec: KillTaskSpec, break_glass: bool = False
    ) -> Decision:
        """Everything `file` would refuse for, without storing anything (for the modal)."""
        decision = self.check_spec("request", user_id, channel_id, spec)
        if decision.allowed and break_glass:
            target = Target(spec.instance_id, spec.product, spec.duration)
            decision = self.check("break_glass", user_id, channel_id, target)
            if decision.allowed and not spec.reason:
                return Decision(
                    False, "break-glass needs a reason= so the record says why", None, "reason"
                )
        return decision
