"""Partner API keys: creation, revocation, and bearer authentication.

Key format: `btn_<prefix>_<secret>` (prefix: 10 lower-case base32 chars,
secret: 43 url-safe chars, 256 bits). Only SHA-256(key) is stored. Lookup is
by prefix; the digest comparison is constant time, and an unknown prefix
still costs one comparison so timing does not tell which prefixes exist.
Revocation and expiry are checked on every request (no caching).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from programs.actors import Actor, as_actor

KEY_PREFIX = "btn_"
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_PREFIX_LEN = 10
_DUMMY_HASH = hashlib.sha256(b"baton-no-such-key").hexdigest()
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def _new_key() -> tuple[str, str]:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_LEN))
    return prefix, f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def split_key(raw_key: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    if not raw_key.startswith(KEY_PREFIX):
        return None
    prefix = raw_key[len(KEY_PREFIX) : len(KEY_PREFIX) + _PREFIX_LEN]
    if len(prefix) != _PREFIX_LEN or raw_key[len(KEY_PREFIX) + _PREFIX_LEN :][:1] != "_":
        return None
    return prefix


# --- services ------------------------------------------------------------------------


def api_client_create(
    *,
    organization,
    name: str,
    actor,
    programs=(),
    read_only: bool = False,
    expires_at=None,
):
    """Create an API client and return `(client, raw_key)`.

    The raw key is returned once and never stored; show it to the person who
    asked and forget it. Audited as `api_client.created` (without the key).
    """
    from integrations.models import ApiClient, ApiPermission

    actor = as_actor(actor)
    programs = list(programs)
    for program in programs:
        if program.organization_id != organization.pk:
            raise ValueError(f"program {program.slug} belongs to another organization")
    if not name.strip():
        raise ValueError("an API client needs a name")
    with transaction.atomic():
        prefix, raw_key = _new_key()
        while ApiClient.objects.filter(prefix=prefix).exists():  # pragma: no cover - 2^50
            prefix, raw_key = _new_key()
        client = ApiClient.objects.create(
            organization=organization,
            name=name.strip(),
            prefix=prefix,
            key_hash=hash_key(raw_key),
            permission=ApiPermission.READ if read_only else ApiPermission.WRITE,
            expires_at=expires_at,
            created_by=actor.label[:200],
        )
        if programs:
            client.programs.set(programs)
        from programs.services import audit_record

        audit_record(
            actor=actor,
            action="api_client.created",
            target=client,
            organization=organization,
            metadata={
                "prefix": prefix,
                "permission": client.permission,
                "programs": [p.slug for p in programs],
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return client, raw_key


def api_client_revoke(*, client_id: int, actor, reason: str = ""):
    """Revoke a key; it fails from the next request on. Audited as `api_client.revoked`."""
    from integrations.models import ApiClient
    from programs.services import audit_record

    with transaction.atomic():
        client = ApiClient.objects.select_for_update().get(pk=client_id)
        if client.revoked_at is None:
            client.revoked_at = timezone.now()
            client.save(update_fields=["revoked_at"])
            audit_record(
                actor=actor,
                action="api_client.revoked",
                target=client,
                organization=client.organization_id,
                reason=reason,
                metadata={"prefix": client.prefix},
            )
    return client


# --- authentication ----------------------------------------------------------------------


def authenticate_key(raw_key: str):
    """The usable ApiClient for `raw_key`, or raise AuthenticationFailed.

    One message for every failure (unknown, wrong, revoked, expired) so a
    caller cannot probe which keys exist.
    """

    failed = exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
    prefix = split_key(raw_key)
    client = None
    scope_ids: set[int] = set()
    if prefix is not None:
        client, scope_ids = _client_by_prefix(prefix)
    stored = client.key_hash if client is not None else _DUMMY_HASH
    if not hmac.compare_digest(stored, hash_key(raw_key)) or client is None:
        raise failed
    now = timezone.now()
    if client.revoked_at is not None or client.is_expired(now):
        raise failed
    if client.last_used_at is None or now - client.last_used_at > LAST_USED_RESOLUTION:
        # at most one write a minute per key, off the request's transaction
        type(client).objects.filter(pk=client.pk).update(last_used_at=now)
        client.last_used_at = now
    client.scope_ids = frozenset(scope_ids)
    client.actor = Actor.for_api_client(client)
    return client


def _client_by_prefix(prefix: str):
    """One query: the key, its organization and its program scopes (a LEFT
    JOIN on the scope table gives one row per scoped program). Hand-written
    SQL: it runs on every request, and compiling the equivalent ORM query
    cost more CPU than running it (integrations/rows.py)."""
    from django.db import connection

    from integrations.models import ApiClient
    from integrations.rows import columns, set_related
    from programs.models import Organization

    quote = connection.ops.quote_name
    client_cols = columns(ApiClient, "c")
    org_cols = columns(Organization, "o")
    m2m = ApiClient._meta.get_field("programs")
    scopes = m2m.remote_field.through._meta
    own_col = scopes.get_field(m2m.m2m_field_name()).column
    program_col = scopes.get_field(m2m.m2m_reverse_field_name()).column
    sql = (
        f"SELECT {client_cols.sql}, {org_cols.sql}, s.{quote(program_col)} "  # noqa: S608
        f"FROM {quote(ApiClient._meta.db_table)} c "
        f"JOIN {quote(Organization._meta.db_table)} o ON o.{quote('id')} = c."
        f"{quote('organization_id')} "
        f"LEFT JOIN {quote(scopes.db_table)} s ON s.{quote(own_col)} = c.{quote('id')} "
        f"WHERE c.{quote('prefix')} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [prefix])
        rows = cursor.fetchall()
    if not rows:
        return None, set()
    client = client_cols.load(rows[0])
    set_related(client, "organization", org_cols.load(rows[0], client_cols.width))
    return client, {row[-1] for row in rows if row[-1] is not None}


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer btn_...`. request.user and request.auth are the client."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
            raise exceptions.AuthenticationFailed(
                "Use 'Authorization: Bearer <key>' with one API key."
            )
        client = authenticate_key(token.strip())
        return client, client

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class IsApiClient(permissions.BasePermission):
    """A valid key is present; unsafe methods need a read-write key."""

    message = "This API key is read-only."

    def has_permission(self, request, view):
        client = request.auth
        if client is None or not getattr(client, "is_api_client", False):
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        return client.can_write


def scope_to_client(queryset, client, program_field: str = "program"):
    """Rows of the client's organization and, for a scoped key, its programs only."""
    queryset = queryset.filter(organization_id=client.organization_id)
    if client.scope_ids:
        queryset = queryset.filter(**{f"{program_field}_id__in": client.scope_ids})
    return queryset
