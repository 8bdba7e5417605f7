"""The policy chain: every engine call passes it, whatever door it came through.

The engine facade runs its chain at the top of each public call with the call's context
and the :class:`~ferry.policy.Action` asked; what a policy is, and the order of the stages,
is :mod:`ferry.policy`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ferry.call import CallContext
from ferry.policy import Action, Policy, Stage

__all__ = ["PolicyChain"]


class PolicyChain:
    """The policies of one engine, in :class:`Stage` order (stable within a stage)."""

    __slots__ = ("_policies",)

    def __init__(self, policies: Iterable[Policy] = ()) -> None:
        chosen = list(policies)
        for policy in chosen:
            if not isinstance(policy, Policy) or not isinstance(policy.stage, Stage):
                raise TypeError(f"{policy!r} is not a Policy: it needs a Stage `stage` and "
                                "a check(call, action) method")
        self._policies: tuple[Policy, ...] = tuple(sorted(chosen, key=lambda p: p.stage))

    @property
    def policies(self) -> Sequence[Policy]:
        """The policies in the order they run."""
        return self._policies

    def __bool__(self) -> bool:
        return bool(self._policies)

    def check(self, call: CallContext, action: Action) -> None:
        """Run every policy on ``call``; the first refusal propagates."""
        for policy in self._policies:
            policy.check(call, action)
