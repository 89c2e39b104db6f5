"""Bring MLflow's auth database (users and permissions, in PostgreSQL) to the
site's configuration, before the server starts. Run by the mlflow role as
the mlflow user, with MLFLOW_AUTH_CONFIG_PATH and PGPASSFILE set; reads no
secret from its arguments (the admin password is in the auth config file).

1. Upgrades the schema (MLflow's own migrations).
2. --legacy-sqlite PATH, when that file exists (labs deployed before the auth
   database moved to PostgreSQL): copies every row into PostgreSQL in one
   transaction, refusing if PostgreSQL already holds users, then renames the
   file to PATH.migrated (0600) so that it is never copied twice.
3. Makes the configured admin exist, be an admin, and have the configured
   password: changing mlflow_admin_password in the credentials file and
   rerunning site.yml rotates it. (MLflow itself only uses the configured
   password to create the admin, so the change would otherwise be ignored.)

Prints one JSON line: {"changed": bool, "migrated_rows": int}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import sqlalchemy
from mlflow.server.auth.config import read_auth_config
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore


def migrate(legacy: Path, store: SqlAlchemyStore) -> int:
    """Copy every row of the legacy SQLite auth database into the store."""
    SqlAlchemyStore().init_db(f"sqlite:///{legacy}")  # its schema to the same version
    source = sqlalchemy.create_engine(f"sqlite:///{legacy}")
    tables = sqlalchemy.MetaData()
    tables.reflect(source)
    copied = 0
    with source.connect() as reading, store.engine.begin() as writing:
        held = writing.execute(sqlalchemy.text("SELECT count(*) FROM users")).scalar_one()
        if held:
            sys.exit(
                f"auth_store: {legacy} still exists, but PostgreSQL's auth database already "
                f"holds {held} users: refusing to merge them. Move the file away once you "
                "have checked which one is right."
            )
        for table in tables.sorted_tables:  # parents before children
            if table.name.startswith("alembic_version"):  # the schema version, already set
                continue
            rows = [dict(row._mapping) for row in reading.execute(table.select())]
            if rows:
                writing.execute(table.insert(), rows)
                copied += len(rows)
            if "id" in table.c and isinstance(table.c.id.type, sqlalchemy.Integer):
                # The ids came along: move the sequence past them. (The name is one
                # of MLflow's tables, quoted as an identifier.)
                quoted = writing.dialect.identifier_preparer.quote(table.name)
                query = f"SELECT setval(pg_get_serial_sequence(:table, 'id'), coalesce(max(id), 0) + 1, false) FROM {quoted}"  # noqa: E501, S608
                writing.execute(sqlalchemy.text(query), {"table": quoted})
    source.dispose()
    legacy.chmod(0o600)  # password hashes
    legacy.rename(legacy.with_name(legacy.name + ".migrated"))
    return copied


def set_admin(store: SqlAlchemyStore, username: str, password: str) -> bool:
    """The admin exists, is an admin and has PASSWORD; True if that changed anything."""
    if not store.has_user(username, use_primary=True):
        store.create_user(username, password, is_admin=True)
        return True
    if store.authenticate_user(username, password, use_primary=True):
        if store.get_user(username).is_admin:
            return False
        store.update_user(username, is_admin=True)
        return True
    store.update_user(username, password=password, is_admin=True)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legacy-sqlite", type=Path, required=True)
    args = parser.parse_args()
    config = read_auth_config()
    if not config.database_uri.startswith("postgresql"):
        sys.exit(f"auth_store: database_uri must be a PostgreSQL URI, got {config.database_uri}")
    if not config.admin_username or not config.admin_password:
        sys.exit("auth_store: the auth config names no admin_username and admin_password")
    store = SqlAlchemyStore()
    store.init_db(config.database_uri)
    migrated = migrate(args.legacy_sqlite, store) if args.legacy_sqlite.exists() else 0
    changed = set_admin(store, config.admin_username, config.admin_password)
    print(json.dumps({"changed": changed or migrated > 0, "migrated_rows": migrated}))


if __name__ == "__main__":
    main()
