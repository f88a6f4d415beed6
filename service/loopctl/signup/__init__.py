"""Passkey (WebAuthn) signup and sign-in: the only way a tenant is born (SPEC §12)."""
