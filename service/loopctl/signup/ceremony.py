"""WebAuthn ceremonies with py_webauthn: options to send, responses to verify.

Only the cryptography happens here; whether a challenge is still usable, whether a sign
count moved forward and what a success creates are decided in SQL (functions/signup.sql).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, parse_client_data_json
from webauthn.helpers.exceptions import InvalidJSONStructure, WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from loopctl.config import Settings


class CeremonyError(ValueError):
    """A WebAuthn response that does not verify; the message is safe to show."""


@dataclass(frozen=True)
class NewCredential:
    credential_id: bytes
    public_key: bytes
    sign_count: int
    aaguid: str | None
    transports: list[str]


def expected_origins(settings: Settings) -> list[str]:
    return [o.strip().rstrip("/") for o in settings.webauthn_origin.split(",") if o.strip()]


def _transports(values: list[str]) -> list[AuthenticatorTransport]:
    known = {t.value for t in AuthenticatorTransport}
    return [AuthenticatorTransport(v) for v in values if v in known]


def registration_options(settings: Settings, begun: dict[str, Any]) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptions (JSON form) for a challenge issued in SQL."""
    options = generate_registration_options(
        rp_id=settings.webauthn_rp_id,
        rp_name=settings.webauthn_rp_name,
        user_name=begun["user_name"],
        user_id=base64url_to_bytes(begun["user_handle"]),
        user_display_name=begun["display_name"],
        challenge=base64url_to_bytes(begun["challenge"]),
        timeout=int(begun["timeout_ms"]),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(c))
            for c in begun.get("exclude_credentials", [])
        ],
    )
    result: dict[str, Any] = json.loads(options_to_json(options))
    return result


def authentication_options(settings: Settings, begun: dict[str, Any]) -> dict[str, Any]:
    options = generate_authentication_options(
        rp_id=settings.webauthn_rp_id,
        challenge=base64url_to_bytes(begun["challenge"]),
        timeout=int(begun["timeout_ms"]),
        allow_credentials=[
            PublicKeyCredentialDescriptor(id=base64url_to_bytes(c["id"]),
                                          transports=_transports(c.get("transports") or []))
            for c in begun.get("allow_credentials", [])
        ],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    result: dict[str, Any] = json.loads(options_to_json(options))
    return result


def client_challenge(credential: dict[str, Any]) -> bytes:
    """The challenge the browser signed (from clientDataJSON): it names the SQL challenge row.
    Verification below then checks the signature covers exactly it."""
    try:
        raw = base64url_to_bytes(credential["response"]["clientDataJSON"])
        challenge = parse_client_data_json(raw).challenge
    except (KeyError, TypeError, ValueError, InvalidJSONStructure, WebAuthnException) as exc:
        raise CeremonyError("malformed credential: clientDataJSON unreadable") from exc
    if not 16 <= len(challenge) <= 64:
        raise CeremonyError("malformed credential: bad challenge")
    return challenge


def credential_id(credential: dict[str, Any]) -> bytes:
    try:
        raw = base64url_to_bytes(str(credential["rawId"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CeremonyError("malformed credential: rawId unreadable") from exc
    if not 16 <= len(raw) <= 1023:
        raise CeremonyError("malformed credential: bad credential id")
    return raw


def verify_registration(settings: Settings, credential: dict[str, Any],
                        challenge: bytes) -> NewCredential:
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=settings.webauthn_rp_id,
            expected_origin=expected_origins(settings),
        )
    except (WebAuthnException, KeyError, TypeError, ValueError) as exc:
        raise CeremonyError(f"registration refused: {exc}") from exc
    transports = credential["response"].get("transports")
    if not isinstance(transports, list):
        transports = []
    return NewCredential(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        aaguid=verified.aaguid if verified.aaguid.strip("0-") else None,
        transports=[str(t) for t in transports if isinstance(t, str)][:8],
    )


def verify_authentication(settings: Settings, credential: dict[str, Any], challenge: bytes,
                          public_key: bytes) -> int:
    """The new sign count of a verified assertion. Whether it moved forward is decided by
    auth.signin_finish (the stored count is passed here as 0 so that one rule, in SQL, with
    one error code, judges it)."""
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=settings.webauthn_rp_id,
            expected_origin=expected_origins(settings),
            credential_public_key=public_key,
            credential_current_sign_count=0,
        )
    except (WebAuthnException, KeyError, TypeError, ValueError) as exc:
        raise CeremonyError(f"sign-in refused: {exc}") from exc
    return int(verified.new_sign_count)
