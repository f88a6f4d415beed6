-- Domain errors, raised the way PostgREST expects custom errors (SQLSTATE 'PGRST'):
-- MESSAGE is the JSON error body {code, message, details, hint}, DETAIL is
-- {status, headers}. Both gateways (stock PostgREST and loopctl's) turn it into the same
-- HTTP status and body.
set role loopctl_owner;

create or replace function app.raise_error(
  p_status integer, p_code text, p_message text,
  p_details jsonb default null, p_hint text default null
) returns void
language plpgsql immutable parallel safe as $$
begin
  raise sqlstate 'PGRST' using
    message = jsonb_build_object('code', p_code, 'message', p_message,
                                 'details', p_details, 'hint', p_hint)::text,
    detail  = jsonb_build_object('status', p_status, 'headers', '{}'::jsonb)::text;
end
$$;

-- For refusals that must still commit a record of the attempt (custody violations): the
-- function returns this body and sets response.status, which both gateways honour, so the
-- caller sees the same error shape while the violation row is kept.
create or replace function app.error_response(
  p_status integer, p_code text, p_message text,
  p_details jsonb default null, p_hint text default null
) returns jsonb
language plpgsql volatile as $$
begin
  perform set_config('response.status', p_status::text, true);
  return jsonb_build_object('code', p_code, 'message', p_message,
                            'details', p_details, 'hint', p_hint);
end
$$;

reset role;
