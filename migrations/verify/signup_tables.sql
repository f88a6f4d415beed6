-- Verify loopctl:signup_tables on pg
select tenant_id, challenge, purpose, pending_tenant, client_addr, created_at, expires_at,
       used_at
  from app.webauthn_challenges where false;
select tenant_id, id, credential_id, public_key, user_handle, sign_count, transports, aaguid,
       name, created_at, last_used_at
  from app.webauthn_credentials where false;
select tenant_id, id, token_hash, credential_ref, client_addr, created_at, expires_at,
       revoked_at
  from app.browser_sessions where false;
select tenant_id, client_addr, action, window_start, attempts
  from app.signup_attempts where false;
