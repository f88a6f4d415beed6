"""Passkey signup and sign-in cost, side by side with their bare baselines on one throwaway
PostgreSQL:

- signup: auth.signup_begin + py_webauthn attestation check + auth.signup_finish (tenant,
  key, authenticator, session, audit entries) versus app.create_tenant alone;
- sign-in: auth.signin_begin + auth.signin_credential + assertion check + auth.signin_finish
  versus auth.authenticate of an API key (what every API request pays).

One client, one transaction per call, alternating blocks so load drift hits both sides.
The software authenticator's own signing is outside the timed sections.

    PYTHONPATH=service .venv/bin/python bench/bench_signup.py [--n N]
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from webauthn.helpers import base64url_to_bytes

from loopctl.config import Settings
from loopctl.signup import ceremony
from loopctl.signup.softkey import SoftAuthenticator
from loopctl.testing import TestServer, create_tenant, key_hash

ORIGIN = "http://localhost:8000"
SETTINGS = Settings(webauthn_rp_id="localhost", webauthn_origin=ORIGIN)
BLOCK = 25


def timed(fn: Callable[[], float]) -> float:
    """fn returns the seconds it spent outside the timed section (authenticator work)."""
    start = time.perf_counter()
    excluded = fn()
    return time.perf_counter() - start - excluded


def passkey_signup(db: psycopg.Connection[Any]) -> float:
    slug = f"b-{uuid.uuid4().hex[:12]}"
    begun = db.execute("select auth.signup_begin(%s, %s, %s, %s)",
                       (slug, slug, f"a@{slug}.example", uuid.uuid4().hex)).fetchone()[0]
    options = ceremony.registration_options(SETTINGS, begun)
    t0 = time.perf_counter()
    cred = SoftAuthenticator(origin=ORIGIN).create(options)
    excluded = time.perf_counter() - t0
    challenge = ceremony.client_challenge(cred)
    new = ceremony.verify_registration(SETTINGS, cred, challenge)
    db.execute("select auth.signup_finish(%s, %s, %s, %s, %s, %s, 'k', 'bench')",
               (challenge, new.credential_id, new.public_key, new.sign_count,
                new.transports, new.aaguid))
    return excluded


def bare_signup(db: psycopg.Connection[Any]) -> float:
    create_tenant(db)
    return 0.0


def passkey_signin(db: psycopg.Connection[Any], authn: SoftAuthenticator) -> float:
    begun = db.execute("select auth.signin_begin(null, %s)", (uuid.uuid4().hex,)).fetchone()[0]
    options = ceremony.authentication_options(SETTINGS, begun)
    t0 = time.perf_counter()
    assertion = authn.get(options)
    excluded = time.perf_counter() - t0
    challenge = ceremony.client_challenge(assertion)
    cred_id = ceremony.credential_id(assertion)
    stored = db.execute("select auth.signin_credential(%s)", (cred_id,)).fetchone()[0]
    count = ceremony.verify_authentication(SETTINGS, assertion, challenge,
                                           bytes.fromhex(stored["public_key"]))
    db.execute("select auth.signin_finish(%s, %s, %s, 'bench')", (challenge, cred_id, count))
    return excluded


def report(name: str, subject: list[float], baseline: list[float], base_name: str) -> None:
    def line(label: str, xs: list[float]) -> str:
        qs = statistics.quantiles(xs, n=100)
        return (f"  {label:<34} {len(xs) / sum(xs):8.1f}/s  p50 {qs[49] * 1000:6.2f} ms"
                f"  p95 {qs[94] * 1000:6.2f} ms")
    print(name)
    print(line("passkey path", subject))
    print(line(base_name, baseline))
    print(f"  ratio (baseline/passkey throughput): "
          f"{(len(baseline) / sum(baseline)) / (len(subject) / sum(subject)):.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200, help="calls per side and benchmark")
    n = parser.parse_args().n
    server = TestServer()
    server.start()
    try:
        name, url = server.clone()
        with psycopg.connect(url, autocommit=True) as db:
            signup_s: list[float] = []
            bare_s: list[float] = []
            while len(signup_s) < n:
                signup_s += [timed(lambda: passkey_signup(db)) for _ in range(BLOCK)]
                bare_s += [timed(lambda: bare_signup(db)) for _ in range(BLOCK)]
            report("signup", signup_s, bare_s, "app.create_tenant alone")

            authn = SoftAuthenticator(origin=ORIGIN)
            begun = db.execute("select auth.signup_begin('s', 'signin-bench', 'a@b.example',"
                               " 'x')").fetchone()[0]
            cred = authn.create(ceremony.registration_options(SETTINGS, begun))
            new = ceremony.verify_registration(SETTINGS, cred, base64url_to_bytes(
                begun["challenge"]))
            data = db.execute("select auth.signup_finish(%s, %s, %s, 0, null, null, 'k', 'x')",
                              (base64url_to_bytes(begun["challenge"]), new.credential_id,
                               new.public_key)).fetchone()[0]
            hashed = key_hash(data["api_key"]["raw_key"])
            signin_s: list[float] = []
            auth_s: list[float] = []
            while len(signin_s) < n:
                signin_s += [timed(lambda: passkey_signin(db, authn)) for _ in range(BLOCK)]
                auth_s += [timed(lambda: db.execute("select auth.authenticate(%s)",
                                                    (hashed,)).fetchone() and 0.0)
                           for _ in range(BLOCK)]
            report("sign-in", signin_s, auth_s, "auth.authenticate of an API key")
        server.drop_database(name)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
