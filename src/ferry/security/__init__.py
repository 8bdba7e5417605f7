"""Security policies: who is calling (authentication) and with what rights.

The package implements :class:`~ferry.policy.Policy` objects and the stores they read; it
imports only the leaves (:mod:`ferry.call`, :mod:`ferry.policy`, :mod:`ferry.errors`), never
the engine or a transport, and ``ferry.server`` plugs the policies in from the settings.

- :mod:`~ferry.security.grants`: ``role:pattern`` grants, the format of ``call.grants``;
- :mod:`~ferry.security.api_keys`: API keys kept as hashes in a keys file (``ferry keys``);
- :mod:`~ferry.security.jwt`: JWT bearer tokens (HS256, RS256/ES256 from a JWKS file);
- :mod:`~ferry.security.authn`: the :class:`Authenticate` policy, with its cache;
- :mod:`~ferry.security.roles`: the :class:`Authorize` policy (roles on model patterns);
- :mod:`~ferry.security.audit`: the audit log (:class:`AuditLog`, the :class:`Audit` policy);
- :mod:`~ferry.security.tls`: the TLS certificate, key and client CA of both ports
  (:class:`~ferry.security.tls.ServerTls`, reloaded on SIGHUP), imported where used.
"""

from ferry.security.api_keys import KeyRecord, KeyStore
from ferry.security.audit import Audit, AuditLog, audit_key_change
from ferry.security.authn import Authenticate
from ferry.security.grants import Grant, Role, format_grant, parse_grant, parse_grants
from ferry.security.jwt import JwtVerifier, VerifiedToken
from ferry.security.roles import Authorize

__all__ = [
    "Audit",
    "AuditLog",
    "Authenticate",
    "Authorize",
    "Grant",
    "JwtVerifier",
    "KeyRecord",
    "KeyStore",
    "Role",
    "VerifiedToken",
    "audit_key_change",
    "format_grant",
    "parse_grant",
    "parse_grants",
]
