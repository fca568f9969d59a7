"""api tokens: the HTTP API's bearer tokens, and the role the API server acts through

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

`flow api` serves the network over HTTP (`elasticcode/api/`). Every request acts as one
ElasticCode user, and every query of it runs as that user's role, so row-level security and
the rights functions hold exactly as in the CLI:

- `api_token` keeps the SHA-256 of each token, never the token; no role reads or writes it
  directly (row-level security on, no policy), only the SECURITY DEFINER functions below.
- `elasticcode_issue_token()`: a new token for the caller's own role (an ElasticCode user, not an
  operator: superusers and members of elasticcode_service get none), returned once in clear.
  It lets the group role `elasticcode_api` SET ROLE to the caller (a membership WITH INHERIT
  FALSE: the API's own login never holds the user's rights, it can only switch to them for a
  request), which is why nothing is granted before a user asks for a token.
- `elasticcode_revoke_tokens(id)`: revokes one of the caller's tokens (or all of them with NULL);
  once none is left, `elasticcode_api` loses the membership again.
- `elasticcode_tokens()`: the caller's tokens (id, created, revoked; never the secret).
- `elasticcode_token_role(hash)`: the role a live token acts as, or NULL; callable by
  `elasticcode_api` only (the API server's login role is a member of it: NOLOGIN, NOINHERIT, no
  table rights at all; created here like the other group roles).

A token is 256 bits from PostgreSQL's strong random source (gen_random_uuid, as the call keys of 0008).
The SQL is static on purpose: a migration is a snapshot.
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

API_ROLE = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'elasticcode_api') THEN
        CREATE ROLE elasticcode_api NOLOGIN NOINHERIT;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$
"""

# `flow db drop` keeps tables no model maps unless it knows them: a leftover of an earlier schema
# in this database would otherwise hold tokens of a dropped schema.
TABLE = """
DROP TABLE IF EXISTS api_token;
CREATE TABLE api_token (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    role text NOT NULL,
    token_hash text NOT NULL UNIQUE,
    created timestamptz NOT NULL DEFAULT now(),
    revoked timestamptz
);
CREATE INDEX ix_api_token_role ON api_token (role);
"""

ISSUE = """
CREATE OR REPLACE FUNCTION elasticcode_issue_token() RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    who text := elasticcode_caller();
    token text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM users u WHERE u.name = who) THEN
        RAISE EXCEPTION 'database role % is not an ElasticCode user: an admin adds it with `flow add user -n %`',
            quote_literal(who), who USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = who
               AND (r.rolsuper OR r.rolbypassrls OR pg_has_role(who, 'elasticcode_service', 'MEMBER'))) THEN
        RAISE EXCEPTION 'operator % gets no API token (it would act beyond row-level security): log in as an ElasticCode user',
            quote_literal(who) USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles a ON a.oid = m.member
                   WHERE g.rolname = who AND a.rolname = 'elasticcode_api') THEN
        BEGIN
            IF current_setting('server_version_num')::int >= 160000 THEN
                EXECUTE format('GRANT %I TO elasticcode_api WITH INHERIT FALSE, SET TRUE', who);
            ELSE
                EXECUTE format('GRANT %I TO elasticcode_api', who);  -- elasticcode_api is NOINHERIT
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'the schema owner may not let the API act as %: an admin runs GRANT % TO elasticcode_api',
                quote_literal(who), quote_ident(who) USING ERRCODE = 'insufficient_privilege';
        END;
    END IF;
    token := 'ec_' || encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text
                                                || gen_random_uuid()::text, 'UTF8')), 'hex');
    INSERT INTO api_token (role, token_hash) VALUES (who, encode(sha256(convert_to(token, 'UTF8')), 'hex'));
    RETURN token;
END $$
"""

REVOKE = """
CREATE OR REPLACE FUNCTION elasticcode_revoke_tokens(token_id uuid) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    who text := elasticcode_caller();
    n integer;
BEGIN
    UPDATE api_token SET revoked = now()
    WHERE role = who AND revoked IS NULL AND (token_id IS NULL OR id = token_id);
    GET DIAGNOSTICS n = ROW_COUNT;
    -- No live token left: the API may no longer become this user at all.
    IF NOT EXISTS (SELECT 1 FROM api_token WHERE role = who AND revoked IS NULL) AND EXISTS (
            SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles a ON a.oid = m.member
            WHERE g.rolname = who AND a.rolname = 'elasticcode_api') THEN
        EXECUTE format('REVOKE %I FROM elasticcode_api', who);
    END IF;
    RETURN n;
END $$
"""

LIST = """
CREATE OR REPLACE FUNCTION elasticcode_tokens() RETURNS TABLE (id uuid, created timestamptz, revoked timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT t.id, t.created, t.revoked FROM api_token t WHERE t.role = elasticcode_caller() ORDER BY t.created
$$
"""

ROLE_OF = """
CREATE OR REPLACE FUNCTION elasticcode_token_role(hash text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT t.role FROM api_token t
    JOIN users u ON u.name = t.role
    JOIN pg_roles r ON r.rolname = t.role
    WHERE t.token_hash = hash AND t.revoked IS NULL AND r.rolcanlogin AND NOT r.rolsuper AND NOT r.rolbypassrls
    LIMIT 1
$$
"""

SIGNATURES = {
    "elasticcode_issue_token()": "elasticcode_user",
    "elasticcode_revoke_tokens(uuid)": "elasticcode_user",
    "elasticcode_tokens()": "elasticcode_user",
    "elasticcode_token_role(text)": "elasticcode_api",
}


def upgrade() -> None:
    op.execute(API_ROLE)
    op.execute(TABLE)
    op.execute("REVOKE ALL ON api_token FROM PUBLIC")
    op.execute("ALTER TABLE api_token ENABLE ROW LEVEL SECURITY")  # no policy: only its owner (the functions)
    for statement in (ISSUE, REVOKE, LIST, ROLE_OF):
        op.execute(statement)
    for signature, callers in SIGNATURES.items():
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {callers}")
    op.execute("GRANT USAGE ON SCHEMA public TO elasticcode_api")


def downgrade() -> None:
    for signature in SIGNATURES:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.execute("DROP TABLE IF EXISTS api_token")
