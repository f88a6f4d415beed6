-- Revert loopctl:schemas from pg
begin;
alter default privileges grant execute on functions to public;
alter default privileges for role loopctl_owner grant execute on functions to public;
alter default privileges for role loopctl_audit grant execute on functions to public;
alter default privileges for role loopctl_auth grant execute on functions to public;
drop schema if exists api cascade;
drop schema if exists auth cascade;
drop schema if exists audit cascade;
drop schema if exists app cascade;
commit;
