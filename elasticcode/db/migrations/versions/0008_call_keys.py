"""call keys: the database issues each user the key their calls are signed with

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23

Workers run a call only if it is signed with the key of the processor's owner
(`elasticcode/runtime/signing.py`). Keys live in `call_key`, which no role reads or writes
directly; two SECURITY DEFINER functions hand them out:

- `elasticcode_call_key()`: the caller's own key (made on first use), only while the caller
  holds RUN_TASK; otherwise one error line naming the right.
- `elasticcode_call_key_of(role)`: for agents (members of elasticcode_service) and superusers, the
  key of a processor's owner, or NULL while that owner lacks RUN_TASK (its workers then refuse
  every call); agents put it in the worker's spec, readable by that owner's worker user only.

`elasticcode_role_has_right(role, right)` is `elasticcode_has_right` for a named role.
A key is 256 bits from PostgreSQL's strong random source (gen_random_uuid), hashed.
The SQL is static on purpose: a migration is a snapshot.
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLE = """
CREATE TABLE call_key (
    role text PRIMARY KEY,
    secret text NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
)
"""

ROLE_HAS_RIGHT = """
CREATE OR REPLACE FUNCTION elasticcode_role_has_right(who text, wanted text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH asked AS (
        SELECT upper(wanted) AS right_name,
               CASE split_part(upper(wanted), '_', 1)
                   WHEN 'ADD' THEN 'CREATE' WHEN 'LS' THEN 'READ' WHEN 'READ' THEN 'READ'
                   WHEN 'UPDATE' THEN 'UPDATE' WHEN 'DELETE' THEN 'DELETE' END AS generic
    )
    SELECT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = who AND r.rolsuper)
        OR EXISTS (
            SELECT 1
            FROM users u
            JOIN (SELECT up.user_id, p."right" FROM user_privileges up JOIN privilege p ON p.id = up.privilege_id
                  UNION ALL
                  SELECT ur.user_id, p."right" FROM user_roles ur
                  JOIN role_privileges rp ON rp.role_id = ur.role_id
                  JOIN privilege p ON p.id = rp.privilege_id) held ON held.user_id = u.id
            CROSS JOIN asked w
            WHERE u.name = who AND (held."right" IN (w.right_name, 'ALL') OR held."right" = w.generic)
        )
$$
"""

ISSUE = """
CREATE OR REPLACE FUNCTION elasticcode_issue_call_key(who text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE found text;
BEGIN
    SELECT secret INTO found FROM call_key WHERE role = who;
    IF found IS NULL THEN
        INSERT INTO call_key (role, secret)
        VALUES (who, encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text
                                              || gen_random_uuid()::text, 'UTF8')), 'hex'))
        ON CONFLICT (role) DO NOTHING;
        SELECT secret INTO found FROM call_key WHERE role = who;
    END IF;
    RETURN found;
END $$
"""

OWN_KEY = """
CREATE OR REPLACE FUNCTION elasticcode_call_key() RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE who text := elasticcode_caller();
BEGIN
    IF NOT elasticcode_role_has_right(who, 'RUN_TASK') THEN
        RAISE EXCEPTION 'user % lacks the right RUN_TASK: an admin grants it with `flow add privilege -u % -n RUN_TASK`',
            quote_literal(who), who USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN elasticcode_issue_call_key(who);
END $$
"""

KEY_OF = """
CREATE OR REPLACE FUNCTION elasticcode_call_key_of(who text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE caller text := elasticcode_caller();
BEGIN
    IF NOT (EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = caller AND r.rolsuper)
            OR pg_has_role(caller, 'elasticcode_service', 'MEMBER')) THEN
        RAISE EXCEPTION 'only agents read the call keys of other users' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF who IS NULL OR NOT elasticcode_role_has_right(who, 'RUN_TASK') THEN
        RETURN NULL;
    END IF;
    RETURN elasticcode_issue_call_key(who);
END $$
"""

SIGNATURES = {
    "elasticcode_role_has_right(text, text)": None,  # internal
    "elasticcode_issue_call_key(text)": None,
    "elasticcode_call_key()": "elasticcode_user, elasticcode_service",
    "elasticcode_call_key_of(text)": "elasticcode_service",
}


def upgrade() -> None:
    op.execute(TABLE)
    op.execute("REVOKE ALL ON call_key FROM PUBLIC")
    op.execute("ALTER TABLE call_key ENABLE ROW LEVEL SECURITY")  # no policy: only its owner (the functions)
    for statement in (ROLE_HAS_RIGHT, ISSUE, OWN_KEY, KEY_OF):
        op.execute(statement)
    for signature, callers in SIGNATURES.items():
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        if callers:
            op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {callers}")


def downgrade() -> None:
    for signature in SIGNATURES:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    op.execute("DROP TABLE IF EXISTS call_key")
