-- Grants for functions/gateway.sql (nothing to PUBLIC).
-- The authentication function (loopctl_auth, BYPASSRLS) counts requests per key.
grant select, insert, update on app.rate_limits to loopctl_auth;
-- Only the gateway's login role authenticates and assumes requests.
grant execute on function auth.authenticate_request(text) to authenticator;
grant execute on function auth.assume_request(boolean, text, text, text, text) to authenticator;
