-- Passkey signup and sign-in (SPEC §12, issue #9): WebAuthn challenges, the credentials
-- (authenticators) a tenant signs in with, short browser sessions, and per-address attempt
-- counters. Only the functions in functions/signup.sql (owned by loopctl_auth) touch them.
set role loopctl_owner;

-- Single-use, expiring ceremony challenges. A signup challenge precedes its tenant, so
-- tenant_id is null for it (and the table has no tenant-led primary key: the challenge
-- bytes are the key). RLS still applies: no API role ever sees a row.
create table app.webauthn_challenges (
  tenant_id      uuid references app.tenants (id) on delete cascade,
  challenge      bytea not null unique check (length(challenge) between 16 and 64),
  purpose        text not null check (purpose in ('signup', 'signin', 'add_authenticator')),
  -- signup: {name, slug, email, user_handle} of the tenant to create on success
  pending_tenant jsonb,
  client_addr    text,
  created_at     timestamptz not null default now(),
  expires_at     timestamptz not null,
  used_at        timestamptz,
  check ((purpose = 'signup') = (pending_tenant is not null)),
  check ((purpose = 'add_authenticator') = (tenant_id is not null)),
  check (expires_at > created_at)
);
create index webauthn_challenges_expires_idx on app.webauthn_challenges (expires_at);
comment on table app.webauthn_challenges is
  '[no-audit] single-use WebAuthn ceremony challenges (short-lived, high churn)';

-- A tenant's authenticators: 1 to 5 (the upper bound is a trigger in functions/signup.sql,
-- the lower bound holds because a tenant is born with one and the last cannot be removed).
create table app.webauthn_credentials (
  tenant_id     uuid not null references app.tenants (id) on delete cascade,
  id            uuid not null default gen_random_uuid(),
  credential_id bytea not null unique check (length(credential_id) between 16 and 1023),
  public_key    bytea not null check (length(public_key) between 16 and 2048),
  -- WebAuthn user.id the credential was registered under (the same for all of a tenant's)
  user_handle   bytea not null check (length(user_handle) between 1 and 64),
  sign_count    bigint not null default 0 check (sign_count between 0 and 4294967295),
  transports    text[] not null default '{}',
  aaguid        uuid,
  name          text not null check (length(name) between 1 and 100),
  created_at    timestamptz not null default now(),
  last_used_at  timestamptz,
  primary key (tenant_id, id)
);

-- Browser sessions created by a passkey sign-in: only the SHA-256 of the cookie is stored.
create table app.browser_sessions (
  tenant_id     uuid not null references app.tenants (id) on delete cascade,
  id            uuid not null default gen_random_uuid(),
  token_hash    text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
  credential_ref uuid not null,
  client_addr   text,
  created_at    timestamptz not null default now(),
  expires_at    timestamptz not null,
  revoked_at    timestamptz,
  primary key (tenant_id, id),
  foreign key (tenant_id, credential_ref)
    references app.webauthn_credentials (tenant_id, id) on delete cascade,
  check (expires_at > created_at)
);
comment on table app.browser_sessions is
  '[no-audit] short browser sessions of the key-management pages (hash only)';

-- Signup and sign-in attempts per client address and fixed window. Attempts precede any
-- tenant: tenant_id is always null and exists for the tenancy policy loop only.
create table app.signup_attempts (
  tenant_id     uuid check (tenant_id is null),
  client_addr   text not null check (length(client_addr) between 1 and 100),
  action        text not null check (action in ('signup', 'signin')),
  window_start  timestamptz not null,
  attempts      integer not null default 0 check (attempts >= 0),
  unique (client_addr, action, window_start)
);
comment on table app.signup_attempts is
  '[no-audit] per-address signup/sign-in attempt counters (rate limit)';

reset role;
