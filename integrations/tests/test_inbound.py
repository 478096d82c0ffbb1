"""R4 (inbound): the Standard Webhooks verifier, fuzzed; replay protection."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import IntegrityError
from django.utils import timezone

from integrations.inbound import InboundVerificationError, inbound_receipts_purge, verify_inbound
from integrations.models import InboundReceipt
from integrations.signing import generate_secret, sign_headers

pytestmark = pytest.mark.django_db

SCOPE = "vendor:test"


def _signed(secret_list, *, msg_id=None, at=None, body=None):
    body = body if body is not None else json.dumps({"status": "delivered", "n": 1}).encode()
    msg_id = msg_id or f"msg_{random.getrandbits(64):x}"
    headers = sign_headers(
        secrets=secret_list, msg_id=msg_id, timestamp=at or timezone.now(), body=body
    )
    return headers, body


def test_valid_callback_is_accepted_once_then_refused_as_replay():
    # given
    secret = generate_secret()
    headers, body = _signed([secret])
    # when
    payload = verify_inbound(secrets=[secret], headers=headers, body=body, scope=SCOPE)
    # then
    assert payload == {"status": "delivered", "n": 1}
    with pytest.raises(InboundVerificationError) as error:
        verify_inbound(secrets=[secret], headers=headers, body=body, scope=SCOPE)
    assert error.value.code == "replayed"
    # the same id from another sender (scope) is independent
    verify_inbound(secrets=[secret], headers=headers, body=body, scope="vendor:other")


def test_django_style_headers_are_understood():
    # given: request.META spelling
    secret = generate_secret()
    headers, body = _signed([secret])
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    # when / then
    assert verify_inbound(secrets=[secret], headers=meta, body=body, scope=SCOPE)["n"] == 1


def _mutate_bytes(rng, data: bytes) -> bytes:
    if not data:
        return b"x"
    data = bytearray(data)
    choice = rng.randrange(4)
    index = rng.randrange(len(data))
    if choice == 0:
        data[index] ^= 1 << rng.randrange(8)
    elif choice == 1:
        del data[index]
    elif choice == 2:
        data.insert(index, rng.randrange(256))
    else:
        data += b" "
    return bytes(data)


def _mutate_text(rng, text: str) -> str:
    mutated = _mutate_bytes(rng, text.encode()).decode("utf-8", errors="replace")
    return mutated if mutated != text else text + "x"


def test_fuzz_valid_always_accepted_invalid_always_rejected():
    """300 valid messages (rotated secrets, timestamps within ±299 s, random
    bodies) are all accepted; 900 mutations (7+ per message) are all rejected."""
    rng = random.Random(20261125)
    accepted = rejected = 0
    for i in range(300):
        # the verifier's clock is frozen at a whole second: the header carries
        # integer seconds, so offsets are exact (±299 valid, ±301 stale)
        now = timezone.now().replace(microsecond=0)
        clock = time_machine.travel(now, tick=False)
        clock.start()
        current, previous = generate_secret(), generate_secret()
        sender_secrets = rng.choice(
            [[current], [previous], [current, previous], [previous, current]]
        )
        receiver_secrets = [current, previous]  # the overlap window: both valid
        skew = rng.randint(-299, 299)
        body = json.dumps(
            {
                "i": i,
                "text": "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(40))),
            }
        ).encode()
        headers, body = _signed(
            sender_secrets,
            msg_id=f"msg_{i}_{rng.getrandbits(32)}",
            at=now + timedelta(seconds=skew),
            body=body,
        )
        # valid: accepted
        assert (
            verify_inbound(secrets=receiver_secrets, headers=headers, body=body, scope=SCOPE)["i"]
            == i
        )
        accepted += 1
        # invalid variants: each must be rejected
        variants = []
        variants.append((headers, _mutate_bytes(rng, body)))  # body mutation
        h = dict(headers)
        h["webhook-id"] = _mutate_text(rng, h["webhook-id"])
        variants.append((h, body))  # id mutation
        h = dict(headers)
        h["webhook-signature"] = _mutate_text(rng, h["webhook-signature"])
        sig_mutated = (h, body)
        h = dict(headers)
        h["webhook-timestamp"] = str(int(h["webhook-timestamp"]) + rng.choice([-1, 1]))
        variants.append((h, body))  # timestamp changed by 1 s: signature breaks
        for offset in (-301, 301):
            stale, _ = _signed(sender_secrets, at=now + timedelta(seconds=offset), body=body)
            variants.append((stale, body))
        h = dict(headers)
        h.pop(rng.choice(["webhook-id", "webhook-timestamp", "webhook-signature"]))
        variants.append((h, body))  # missing header
        wrong, _ = _signed([generate_secret()], body=body)
        variants.append((wrong, body))  # unknown secret
        for hdrs, bdy in variants:
            with pytest.raises(InboundVerificationError):
                verify_inbound(secrets=receiver_secrets, headers=hdrs, body=bdy, scope=SCOPE)
            rejected += 1
        # a signature mutation may leave one of two signatures intact: only
        # a mutation that leaves no valid signature must be rejected
        hdrs, bdy = sig_mutated
        if not any(
            part in headers["webhook-signature"].split(" ")
            for part in hdrs["webhook-signature"].split(" ")
        ):
            with pytest.raises(InboundVerificationError):
                verify_inbound(secrets=receiver_secrets, headers=hdrs, body=bdy, scope=SCOPE)
            rejected += 1
        clock.stop()
    assert accepted == 300
    assert rejected >= 2100


def test_expired_rotated_secret_is_rejected():
    # given: the partner still signs with a secret we no longer hold
    old, new = generate_secret(), generate_secret()
    headers, body = _signed([old])
    # when / then
    with pytest.raises(InboundVerificationError) as error:
        verify_inbound(secrets=[new], headers=headers, body=body, scope=SCOPE)
    assert error.value.code == "bad_signature"


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("webhook-timestamp", "1.7e9", "bad_timestamp"),
        ("webhook-timestamp", "nan", "bad_timestamp"),
        ("webhook-timestamp", "-5", "bad_timestamp"),
        ("webhook-signature", "v1", "bad_signature"),
        ("webhook-signature", "v1,!!!notbase64", "bad_signature"),
        ("webhook-signature", "v2,AAAA", "bad_signature"),
        ("webhook-id", "a" * 300, "missing_headers"),
    ],
)
def test_malformed_headers_are_rejected_cleanly(field, value, code):
    # given
    secret = generate_secret()
    headers, body = _signed([secret])
    headers[field] = value
    # when / then: a clean error, never a crash
    with pytest.raises(InboundVerificationError) as error:
        verify_inbound(secrets=[secret], headers=headers, body=body, scope=SCOPE)
    assert error.value.code == code


def test_non_utf8_and_non_object_bodies_are_rejected():
    secret = generate_secret()
    headers, _ = _signed([secret], body=b"[1,2]")
    with pytest.raises(InboundVerificationError):
        verify_inbound(secrets=[secret], headers=headers, body=b"\xff\xfe", scope=SCOPE)
    headers, body = _signed([secret], body=b"[1,2]")
    with pytest.raises(InboundVerificationError) as error:
        verify_inbound(secrets=[secret], headers=headers, body=body, scope=SCOPE)
    assert error.value.code == "bad_body"


def test_receipts_are_unique_and_purged_after_retention(settings):
    # given
    settings.BATON_INBOUND_RECEIPT_RETENTION = timedelta(hours=2)
    old = InboundReceipt.objects.create(
        scope=SCOPE,
        webhook_id="old",
        sent_at=datetime(2020, 1, 1, tzinfo=UTC),
        received_at=timezone.now() - timedelta(hours=3),
    )
    fresh = InboundReceipt.objects.create(scope=SCOPE, webhook_id="fresh", sent_at=timezone.now())
    # when
    deleted = inbound_receipts_purge()
    # then
    assert deleted == 1
    assert list(InboundReceipt.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert old.pk != fresh.pk
    with pytest.raises(IntegrityError):
        InboundReceipt.objects.create(scope=SCOPE, webhook_id="fresh", sent_at=timezone.now())
