"""Authorization: what an authenticated caller may do, by role and model-name pattern.

The authenticating policy (:mod:`ferry.security.authn`) sets ``call.grants``: the caller's
``(role, pattern)`` pairs, e.g. ``("infer", "digits*")``. :class:`Authorize` runs next in
the chain (:attr:`~ferry.policy.Stage.AUTHORIZE`) and decides each call from them:

=================================================  ==========  ===========================
call (:class:`~ferry.policy.Kind`)                 role        on
=================================================  ==========  ===========================
``MODEL_METADATA``, ``MODEL_READY``                ``read``    the model's name
``SERVER_METADATA``                                ``read``    any pattern
``INDEX``                                          ``read``    ``*`` exactly (see below)
``INFER``                                          ``infer``   the model's name
``LOAD``, ``UNLOAD``                               ``admin``   the model's name
``LIVE``, ``READY``                                (none)      open, see below
=================================================  ==========  ===========================

**Roles imply one another**: ``admin`` implies ``infer`` and ``read``, ``infer`` implies
``read`` (a client needs a model's metadata to build its requests), so ``infer:digits``
alone lets a client read and call ``digits``.

**Patterns** are shell-style, matched with :func:`fnmatch.fnmatchcase` against the whole
model name (case-sensitive, like model names): ``digits``, ``digits*``, ``fraud-v[0-9]``,
``*``. The version does not matter: a grant on a model covers all its versions.

**The repository index** lists every model of the repository. A policy decides before the
engine works and cannot filter the engine's answer, so the index needs ``read`` on the
pattern ``*`` itself (``read:*``, ``infer:*`` or ``admin:*``); a caller scoped to some
models is refused it rather than shown the others' names.

**Health** (``LIVE``, ``READY``): when the authenticator let the call through without a
principal (its ``open_health``, so that probes need no credentials), it stays open. A
caller who did present credentials needs some grant, of any role.

**Internal calls** (``call.protocol == "internal"``: SIGHUP reloads, the repository watch)
always pass.

**401 or 403.** A call that needs a principal and has none raises
:class:`~ferry.errors.AuthenticationError` (401 / ``UNAUTHENTICATED``; only reached when the
authenticator let a non-health call through anonymously, which it should not). A principal
without the grant gets :class:`~ferry.errors.PermissionDeniedError` (403 /
``PERMISSION_DENIED``). The chain runs before the engine looks anything up, so the refusal
and its message are the same whether the model exists or not: a refused caller learns
nothing about models it may not see.

Decisions are cached per grants tuple (the authenticator hands out one shared tuple per
credential) and per (role, model name), both bounded, so a check is a couple of dict
look-ups once warm.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any, NoReturn

from ferry.call import CallContext
from ferry.errors import AuthenticationError, PermissionDeniedError, quote_name
from ferry.policy import Action, Kind, Stage
from ferry.security.grants import Role

__all__ = ["IMPLIED", "ROLE_OF", "Authorize"]

#: The role each call kind needs (LIVE and READY need none: see the module docstring).
_READ, _INFER, _ADMIN = Role.READ.value, Role.INFER.value, Role.ADMIN.value
ROLE_OF: dict[Kind, str] = {
    Kind.MODEL_METADATA: _READ,
    Kind.MODEL_READY: _READ,
    Kind.SERVER_METADATA: _READ,
    Kind.INDEX: _READ,
    Kind.INFER: _INFER,
    Kind.LOAD: _ADMIN,
    Kind.UNLOAD: _ADMIN,
}

#: The roles a granted role gives: admin ⊇ infer ⊇ read.
IMPLIED: dict[str, frozenset[str]] = {
    _ADMIN: frozenset({_ADMIN, _INFER, _READ}),
    _INFER: frozenset({_INFER, _READ}),
    _READ: frozenset({_READ}),
}

#: How many distinct grants tuples, and model names per tuple, the caches keep.
_MAX_GRANTS = 1024
_MAX_NAMES = 1024

_HEALTH = (Kind.LIVE, Kind.READY)
_INFER_KIND = Kind.INFER


class _Compiled:
    """One grants tuple, compiled: per role, its patterns; decisions made so far."""

    __slots__ = ("any", "decided", "everything", "grants", "patterns")

    def __init__(self, grants: tuple[tuple[str, str], ...]) -> None:
        self.grants = grants  # kept alive: the cache is keyed by its id()
        patterns: dict[str, list[str]] = {role: [] for role in IMPLIED}
        for role, pattern in grants:
            for implied in IMPLIED.get(role, ()):
                patterns[implied].append(pattern)
        self.patterns = {role: tuple(found) for role, found in patterns.items()}
        self.everything = frozenset(role for role, found in self.patterns.items()
                                    if "*" in found)
        self.any = frozenset(role for role, found in self.patterns.items() if found)
        self.decided: dict[tuple[str, str], bool] = {}

    def allows(self, role: str, model: str) -> bool:
        if role in self.everything:
            return True
        key = (role, model)
        decided = self.decided.get(key)
        if decided is None:
            decided = any(fnmatchcase(model, pattern) for pattern in self.patterns[role])
            if len(self.decided) >= _MAX_NAMES:
                self.decided.clear()  # client-chosen names: never grow without bound
            self.decided[key] = decided
        return decided


class Authorize:
    """The authorizing policy: refuse a call the caller's grants do not cover.

    Args:
        audit: called as ``audit("permission_denied", call, model=..., reason=...)`` for
            each refusal (e.g. an :class:`~ferry.security.audit.AuditLog`); None: not
            recorded.
    """

    stage = Stage.AUTHORIZE

    def __init__(self, audit: Callable[..., None] | None = None) -> None:
        self._audit = audit
        self._compiled: dict[int, _Compiled] = {}

    def check(self, call: CallContext, action: Action) -> None:
        """Let ``call`` do ``action`` if its grants cover it; else raise 401 or 403."""
        kind = action.kind
        grants = call.grants
        if kind is _INFER_KIND and grants is not None and call.principal is not None:
            # The hit path of every inference request: the caller's compiled grants are
            # cached, and a grant on '*' (or a decision made before) settles it.
            compiled = self._compiled.get(id(grants))
            if compiled is not None and compiled.grants is grants and action.model is not None \
                    and (_INFER in compiled.everything
                         or compiled.decided.get((_INFER, action.model))):
                return
        if call.protocol == "internal":
            return
        if kind in _HEALTH and call.principal is None:
            return  # the authenticator let a health probe through without credentials
        if call.principal is None:
            raise AuthenticationError(
                f"{kind.value} needs credentials",
                hint="send Authorization: Bearer <API key or token>")
        grants = call.grants or ()
        compiled = self._compile(grants)
        if kind in _HEALTH:
            if compiled.any:
                return
            self._refuse(call, action, "needs a grant of any role")
        role = ROLE_OF[kind]
        if action.model is None:
            # The server's metadata: any read grant. The index: read on every model.
            if role in (compiled.everything if kind is Kind.INDEX else compiled.any):
                return
            self._refuse(call, action, f"needs the {role!r} role on '*'"
                         if kind is Kind.INDEX else f"needs the {role!r} role")
        elif compiled.allows(role, action.model):
            return
        self._refuse(call, action, f"needs the {role!r} role on it")

    def _compile(self, grants: tuple[tuple[str, str], ...]) -> _Compiled:
        compiled = self._compiled.get(id(grants))
        if compiled is None or compiled.grants is not grants:
            compiled = _Compiled(grants)
            if len(self._compiled) >= _MAX_GRANTS:
                self._compiled.clear()
            self._compiled[id(grants)] = compiled
        return compiled

    def _refuse(self, call: CallContext, action: Action, needs: str) -> NoReturn:
        # The message names only what the caller asked: identical for a model that exists
        # and one that does not.
        what = action.kind.value
        if action.model is not None:
            what = f"{what} of model {quote_name(action.model)}"
        reason = f"{what} is not allowed for this caller ({needs})"
        if self._audit is not None:
            fields: dict[str, Any] = {"model": action.model, "reason": reason,
                                      "outcome": "refused"}
            if action.version:
                fields["version"] = action.version
            self._audit("permission_denied", call, **fields)
        raise PermissionDeniedError(reason)
