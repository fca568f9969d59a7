"""rights in the database

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Rights were checked only by the client, and every user could INSERT/UPDATE/DELETE every owned
table: raw SQL went around the checks. From this revision the database enforces them:

- `elasticcode_has_right(right)` (SECURITY DEFINER) answers for the calling role, mirroring
  `elasticcode/catalog/rights.py`: superusers and members of elasticcode_service hold every right;
  a user holds a right granted directly or through a role, ALL, or the generic one (ADD_ ->
  CREATE, LS_/READ_ -> READ, UPDATE_ -> UPDATE, DELETE_ -> DELETE).
- One policy per command on every owned table: users read their own rows (calls and events only
  with LS_CALLS; every node with LS_NODES), and insert, update and delete their own rows only with
  the ADD_/UPDATE_/DELETE_ right of the kind. Users cannot write calls, events, nodes, agents or
  workers at all: those are written by agents and recorders.
- elasticcode_service (agents, recorders) reads every row and writes only what agents write:
  node, agent and worker rows, call and event rows, and the status columns of processors and
  sockets (a column grant: never their code).
- Granting rights and creating users go through SECURITY DEFINER functions that check the
  caller's rights whatever session calls them; a user is created from a SCRAM verifier only.

The SQL is static on purpose: a migration is a snapshot and must not change when library code does.
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OWNED = (
    "scheduler", "node", "agent", "flow", "processor", "deployment", "worker", "queue", "task",
    "argument", "socket", "plug", "call", "event", "log", "settings", "file", "versions",
)
# Written by agents and recorders only.
SERVICE_WRITTEN = ("node", "agent", "worker", "call", "event")
# table -> rights allowing (insert, update, delete) of one's own rows; any one of a tuple suffices.
# Children deleted with their parent accept the parent's right (the client checks only the parent's).
USER_WRITES = {
    "scheduler": (("ADD_SCHEDULER",), ("UPDATE_SCHEDULER",), ("DELETE_SCHEDULER",)),
    "processor": (("ADD_PROCESSOR",), ("UPDATE_PROCESSOR",), ("DELETE_PROCESSOR",)),
    "deployment": (("ADD_PROCESSOR", "UPDATE_PROCESSOR"), ("UPDATE_PROCESSOR",), ("DELETE_PROCESSOR", "UPDATE_PROCESSOR")),
    "queue": (("ADD_QUEUE",), ("UPDATE_QUEUE",), ("DELETE_QUEUE",)),
    "socket": (("ADD_SOCKET",), ("UPDATE_SOCKET",), ("DELETE_SOCKET", "DELETE_PROCESSOR")),
    "task": (("ADD_SOCKET", "UPDATE_SOCKET"), ("UPDATE_SOCKET",), ("DELETE_SOCKET", "DELETE_PROCESSOR")),
    "argument": (("ADD_SOCKET", "UPDATE_SOCKET"), ("UPDATE_SOCKET",), ("DELETE_SOCKET", "DELETE_PROCESSOR")),
    "plug": (("ADD_PLUG",), ("UPDATE_PLUG",), ("DELETE_PLUG", "DELETE_SOCKET", "DELETE_PROCESSOR")),
    "flow": (("CREATE",), ("UPDATE",), ("DELETE",)),
    "log": (("CREATE",), ("UPDATE",), ("DELETE",)),
    "settings": (("CREATE",), ("UPDATE",), ("DELETE",)),
    "file": (("CREATE",), ("UPDATE",), ("DELETE",)),
    "versions": (("CREATE",), ("UPDATE",), ("DELETE",)),
}
# What agents update on processors and sockets (the ORM also sets lastupdated).
STATUS_COLUMNS = "status, status_message, lastupdated"
OLD_RULE = "owner = current_user OR (SELECT pg_has_role(current_user, 'elasticcode_service', 'MEMBER'))"

CALLER = """
CREATE OR REPLACE FUNCTION elasticcode_caller() RETURNS text
LANGUAGE sql STABLE SET search_path = public, pg_temp AS $$
    -- The role that called, even inside a SECURITY DEFINER function (where current_user is its owner).
    SELECT COALESCE(NULLIF(current_setting('role'), 'none'), session_user::text)
$$
"""

HAS_RIGHT = """
CREATE OR REPLACE FUNCTION elasticcode_has_right(wanted text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH caller AS (SELECT elasticcode_caller() AS name),
    asked AS (
        SELECT upper(wanted) AS right_name,
               CASE split_part(upper(wanted), '_', 1)
                   WHEN 'ADD' THEN 'CREATE' WHEN 'LS' THEN 'READ' WHEN 'READ' THEN 'READ'
                   WHEN 'UPDATE' THEN 'UPDATE' WHEN 'DELETE' THEN 'DELETE' END AS generic
    )
    SELECT EXISTS (SELECT 1 FROM pg_roles r, caller c WHERE r.rolname = c.name AND r.rolsuper)
        OR coalesce((SELECT pg_has_role(c.name, 'elasticcode_service', 'MEMBER') FROM caller c
                     WHERE EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = c.name)), false)
        OR EXISTS (
            SELECT 1
            FROM caller c
            JOIN users u ON u.name = c.name
            JOIN (SELECT up.user_id, p."right" FROM user_privileges up JOIN privilege p ON p.id = up.privilege_id
                  UNION ALL
                  SELECT ur.user_id, p."right" FROM user_roles ur
                  JOIN role_privileges rp ON rp.role_id = ur.role_id
                  JOIN privilege p ON p.id = rp.privilege_id) held ON held.user_id = u.id
            CROSS JOIN asked w
            WHERE held."right" IN (w.right_name, 'ALL') OR held."right" = w.generic
        )
$$
"""

REQUIRE = """
CREATE OR REPLACE FUNCTION elasticcode_require(wanted text) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF NOT elasticcode_has_right(wanted) THEN
        RAISE EXCEPTION 'user % lacks the right %: an admin grants it with `flow add privilege -u % -n %`',
            quote_literal(elasticcode_caller()), upper(wanted), elasticcode_caller(), upper(wanted)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$
"""

HOLDER = """
CREATE OR REPLACE FUNCTION elasticcode_holder(holder text, is_role boolean) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE found uuid;
BEGIN
    IF is_role THEN
        SELECT id INTO found FROM role WHERE name = holder ORDER BY created LIMIT 1;
    ELSE
        SELECT id INTO found FROM users WHERE name = holder ORDER BY created LIMIT 1;
    END IF;
    IF found IS NULL THEN
        RAISE EXCEPTION '% % does not exist', CASE WHEN is_role THEN 'role' ELSE 'user' END, quote_literal(holder)
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN found;
END $$
"""

PRIVILEGE_ID = """
CREATE OR REPLACE FUNCTION elasticcode_privilege_id(wanted text) RETURNS uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE found uuid;
BEGIN
    SELECT id INTO found FROM privilege WHERE "right" = upper(wanted);
    IF found IS NULL THEN
        RAISE EXCEPTION 'right % does not exist: list them with `flow ls privileges`', quote_literal(wanted)
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN found;
END $$
"""

GRANT = """
CREATE OR REPLACE FUNCTION elasticcode_grant(grantee text, is_role boolean, wanted text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    hid uuid;
    pid uuid;
BEGIN
    PERFORM elasticcode_require('ADD_PRIVILEGE');
    pid := elasticcode_privilege_id(wanted);
    IF NOT elasticcode_has_right(wanted) THEN
        RAISE EXCEPTION 'user % cannot grant %: only a holder of that right (or ALL) may grant it',
            quote_literal(elasticcode_caller()), upper(wanted) USING ERRCODE = 'insufficient_privilege';
    END IF;
    hid := elasticcode_holder(grantee, is_role);
    IF is_role THEN
        INSERT INTO role_privileges (role_id, privilege_id) VALUES (hid, pid) ON CONFLICT DO NOTHING;
    ELSE
        INSERT INTO user_privileges (user_id, privilege_id) VALUES (hid, pid) ON CONFLICT DO NOTHING;
    END IF;
    RETURN format('privilege %s granted to %s %s', upper(wanted), CASE WHEN is_role THEN 'role' ELSE 'user' END, grantee);
END $$
"""

REVOKE = """
CREATE OR REPLACE FUNCTION elasticcode_revoke(grantee text, is_role boolean, wanted text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    hid uuid;
    pid uuid;
BEGIN
    PERFORM elasticcode_require('DELETE_PRIVILEGE');
    pid := elasticcode_privilege_id(wanted);
    hid := elasticcode_holder(grantee, is_role);
    IF is_role THEN
        DELETE FROM role_privileges rp WHERE rp.role_id = hid AND rp.privilege_id = pid;
    ELSE
        DELETE FROM user_privileges up WHERE up.user_id = hid AND up.privilege_id = pid;
    END IF;
    RETURN format('privilege %s revoked from %s', upper(wanted), grantee);
END $$
"""

CHECK_NAME = """
CREATE OR REPLACE FUNCTION elasticcode_check_name(name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = public, pg_temp AS $$
BEGIN
    IF name IS NULL OR name !~ '^[a-z_][a-z0-9_]{0,62}$' OR name LIKE 'pg\\_%' OR name LIKE 'elasticcode\\_%' THEN
        RAISE EXCEPTION 'user name % is not valid: use lower-case letters, digits and _ (start with a letter, at most 63)',
            quote_literal(name) USING ERRCODE = 'invalid_name';
    END IF;
END $$
"""

CHECK_VERIFIER = """
CREATE OR REPLACE FUNCTION elasticcode_check_verifier(verifier text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = public, pg_temp AS $$
BEGIN
    IF verifier IS NULL OR verifier !~ '^SCRAM-SHA-256\\$[0-9]+:[A-Za-z0-9+/=]+\\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$' THEN
        RAISE EXCEPTION 'a password reaches the database only as a SCRAM-SHA-256 verifier' USING ERRCODE = 'invalid_password';
    END IF;
END $$
"""

CREATE_USER = """
CREATE OR REPLACE FUNCTION elasticcode_create_user(name text, verifier text, email text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE caller_is_super boolean;
BEGIN
    PERFORM elasticcode_require('ADD_USER');
    PERFORM elasticcode_check_name(name);
    PERFORM elasticcode_check_verifier(verifier);
    IF EXISTS (SELECT 1 FROM users u WHERE u.name = elasticcode_create_user.name) THEN
        RAISE EXCEPTION 'user % already exists: choose another name or `flow update user -n %`',
            quote_literal(name), name USING ERRCODE = 'unique_violation';
    END IF;
    SELECT rolsuper INTO caller_is_super FROM pg_roles WHERE rolname = elasticcode_caller();
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
        -- Taking over an existing role (re-adding a deleted user) would set its password: admins only.
        IF NOT coalesce(caller_is_super, false) THEN
            RAISE EXCEPTION 'a database role named % already exists: only an admin may make it an ElasticCode user',
                quote_literal(name) USING ERRCODE = 'duplicate_object';
        END IF;
        EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', name, verifier);
    ELSE
        EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD %L', name, verifier);
    END IF;
    EXECUTE format('GRANT elasticcode_user TO %I', name);
    INSERT INTO users (name, owner, email) VALUES (name, name, email);
    RETURN format('User "%s" added', name);
END $$
"""

DELETE_USER = """
CREATE OR REPLACE FUNCTION elasticcode_delete_user(name text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM elasticcode_require('DELETE_USER');
    PERFORM elasticcode_holder(name, false);
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name AND (rolsuper OR pg_has_role(name, 'elasticcode_service', 'MEMBER'))) THEN
        RAISE EXCEPTION 'user % is an operator: an admin removes it' , quote_literal(name)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM users u WHERE u.name = elasticcode_delete_user.name;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
        EXECUTE format('REVOKE elasticcode_user FROM %I', name);
        EXECUTE format('ALTER ROLE %I NOLOGIN', name);
    END IF;
    RETURN format('user %s deleted', name);
END $$
"""

UPDATE_USER = """
CREATE OR REPLACE FUNCTION elasticcode_update_user(name text, email text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM elasticcode_require('UPDATE_USER');
    PERFORM elasticcode_holder(name, false);
    UPDATE users u SET email = elasticcode_update_user.email, lastupdated = now() WHERE u.name = elasticcode_update_user.name;
    RETURN format('user %s updated', name);
END $$
"""

ADD_TO_ROLE = """
CREATE OR REPLACE FUNCTION elasticcode_add_user_to_role(name text, role_name text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM elasticcode_require('UPDATE_USER');
    INSERT INTO user_roles (user_id, role_id)
    VALUES (elasticcode_holder(name, false), elasticcode_holder(role_name, true)) ON CONFLICT DO NOTHING;
    RETURN format('user %s is in role %s', name, role_name);
END $$
"""

SET_PASSWORD = """
CREATE OR REPLACE FUNCTION elasticcode_set_password(name text, verifier text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    -- Everyone may change their own password; others' need UPDATE_USER.
    IF name IS DISTINCT FROM elasticcode_caller() THEN
        PERFORM elasticcode_require('UPDATE_USER');
    END IF;
    PERFORM elasticcode_check_verifier(verifier);
    PERFORM elasticcode_holder(name, false);
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name AND (rolsuper OR pg_has_role(name, 'elasticcode_service', 'MEMBER')))
       AND NOT coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = elasticcode_caller()), false) THEN
        RAISE EXCEPTION 'the password of operator % is changed by an admin', quote_literal(name)
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('ALTER ROLE %I PASSWORD %L', name, verifier);
    RETURN format('password of %s changed', name);
END $$
"""

FUNCTIONS = (CALLER, HAS_RIGHT, REQUIRE, HOLDER, PRIVILEGE_ID, GRANT, REVOKE, CHECK_NAME, CHECK_VERIFIER,
             CREATE_USER, DELETE_USER, UPDATE_USER, ADD_TO_ROLE, SET_PASSWORD)
# name(signature) of each function, and who may call it
SIGNATURES = {
    "elasticcode_caller()": "PUBLIC",
    "elasticcode_has_right(text)": "PUBLIC",  # evaluated in policies, as whoever queries
    "elasticcode_require(text)": "elasticcode_user, elasticcode_service",
    "elasticcode_holder(text, boolean)": None,  # internal
    "elasticcode_privilege_id(text)": None,
    "elasticcode_grant(text, boolean, text)": "elasticcode_user",
    "elasticcode_revoke(text, boolean, text)": "elasticcode_user",
    "elasticcode_check_name(text)": "PUBLIC",
    "elasticcode_check_verifier(text)": "PUBLIC",
    "elasticcode_create_user(text, text, text)": "elasticcode_user",
    "elasticcode_delete_user(text)": "elasticcode_user",
    "elasticcode_update_user(text, text)": "elasticcode_user",
    "elasticcode_add_user_to_role(text, text)": "elasticcode_user",
    "elasticcode_set_password(text, text)": "elasticcode_user",
}


def _any_right(names: tuple[str, ...]) -> str:
    # A scalar subquery: evaluated once per statement, not once per row.
    return "(" + " OR ".join(f"(SELECT elasticcode_has_right('{n}'))" for n in names) + ")"


def upgrade() -> None:
    for statement in FUNCTIONS:
        op.execute(statement)
    for signature, callers in SIGNATURES.items():
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        if callers:
            op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {callers}")

    for table in OWNED:
        op.execute(f'DROP POLICY IF EXISTS owner_rows ON "{table}"')
        op.execute(f'REVOKE INSERT, UPDATE, DELETE ON "{table}" FROM elasticcode_service')
        # Agents and recorders read every row; the table grants below bound what they write.
        op.execute(f'CREATE POLICY service_rows ON "{table}" TO elasticcode_service USING (true) WITH CHECK (true)')
        if table in ("call", "event"):
            readable = "owner = current_user AND (SELECT elasticcode_has_right('LS_CALLS'))"
        elif table == "node":
            readable = "owner = current_user OR (SELECT elasticcode_has_right('LS_NODES'))"  # shared infrastructure
        else:
            readable = "owner = current_user"
        op.execute(f'CREATE POLICY user_select ON "{table}" FOR SELECT USING ({readable})')
        if table in SERVICE_WRITTEN:
            op.execute(f'REVOKE INSERT, UPDATE, DELETE ON "{table}" FROM elasticcode_user')
            continue
        add, update, delete = USER_WRITES[table]
        op.execute(f'CREATE POLICY user_insert ON "{table}" FOR INSERT '
                   f"WITH CHECK (owner = current_user AND {_any_right(add)})")
        op.execute(f'CREATE POLICY user_update ON "{table}" FOR UPDATE '
                   f"USING (owner = current_user AND {_any_right(update)}) "
                   f"WITH CHECK (owner = current_user AND {_any_right(update)})")
        op.execute(f'CREATE POLICY user_delete ON "{table}" FOR DELETE '
                   f"USING (owner = current_user AND {_any_right(delete)})")

    for table in ("node", "agent", "worker"):
        op.execute(f'GRANT INSERT, UPDATE, DELETE ON "{table}" TO elasticcode_service')
    for table in ("call", "event"):  # the recorder upserts
        op.execute(f'GRANT INSERT, UPDATE ON "{table}" TO elasticcode_service')
    for table in ("processor", "socket"):  # statuses, never code
        op.execute(f'GRANT UPDATE ({STATUS_COLUMNS}) ON "{table}" TO elasticcode_service')


def downgrade() -> None:
    for table in OWNED:
        for policy in ("service_rows", "user_select", "user_insert", "user_update", "user_delete"):
            op.execute(f'DROP POLICY IF EXISTS {policy} ON "{table}"')
        op.execute(f'REVOKE UPDATE ON "{table}" FROM elasticcode_service')
        op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{table}" TO elasticcode_user, elasticcode_service')
        op.execute(f'CREATE POLICY owner_rows ON "{table}" USING ({OLD_RULE}) WITH CHECK ({OLD_RULE})')
    for signature in reversed(list(SIGNATURES)):
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
