-- Revert loopctl:signup_tables from pg
begin;
drop table if exists app.signup_attempts, app.browser_sessions, app.webauthn_credentials,
  app.webauthn_challenges cascade;
commit;
