-- Grants for functions/signup.sql (API roles get EXECUTE / SELECT explicitly; nothing to PUBLIC).
-- Passkey signup and sign-in run as loopctl_auth (functions in auth, owned by it); only the
-- service's own connection (`authenticator`, or the admin URL) may call them. No API role
-- (loopctl_anon/user/orchestrator/agent) gets anything here: tenants are never created by
-- an API call.
grant select, insert, update, delete on app.webauthn_challenges, app.webauthn_credentials,
  app.browser_sessions, app.signup_attempts to loopctl_auth;
grant insert on app.agents to loopctl_auth;
grant update (revoked_at) on app.api_keys to loopctl_auth;
grant execute on function app.signup_error(integer, text, text, jsonb, jsonb)
  to loopctl_owner;

grant execute on function
  auth.signup_begin(text, text, text, text),
  auth.signup_finish(bytea, bytea, bytea, bigint, text[], uuid, text, text),
  auth.burn_challenge(bytea),
  auth.signin_begin(text, text),
  auth.signin_credential(bytea),
  auth.signin_finish(bytea, bytea, bigint, text),
  auth.session_info(text),
  auth.session_signout(text),
  auth.session_list_keys(text),
  auth.session_create_key(text, text, text, text, timestamptz),
  auth.session_revoke_key(text, uuid),
  auth.session_rotate_key(text, uuid),
  auth.add_authenticator_begin(text, text),
  auth.add_authenticator_finish(text, bytea, bytea, bytea, bigint, text[], uuid, text),
  auth.remove_authenticator(text, uuid)
  to authenticator;
