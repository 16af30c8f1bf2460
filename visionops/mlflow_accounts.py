"""MLflow's accounts for VisionOps: one per component, each with the least it needs, in MLflow's own basic-auth
user store (``mlflow server --app-name basic-auth``).

Run before the server, in the MLflow pod (the chart's ``accounts`` init container), with the same auth config
file (``MLFLOW_AUTH_CONFIG_PATH``: its ``database_uri`` is the user store). Every start makes the store say what
the Secrets say: the accounts exist, their passwords are the Secrets' (a rotated Secret + a restart rotates
them), their grants are :data:`GRANTS`. Everything else every signed-in account may only read (the config's
``default_permission = READ``); a request without credentials gets 401.

Standard library and ``mlflow`` only: this file is all of VisionOps the MLflow image carries.

Environment: ``MLFLOW_AUTH_ADMIN_USERNAME``/``MLFLOW_AUTH_ADMIN_PASSWORD`` (MLflow's own: the admin, who signs in
to the UI and manages users), and for each role of :data:`GRANTS` ``VISIONOPS_MLFLOW_<ROLE>_USERNAME`` and
``VISIONOPS_MLFLOW_<ROLE>_PASSWORD`` (a role without them is skipped).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence

# role -> (resource type, pattern, permission) grants beyond reading. MLflow's permissions: READ < USE < EDIT <
# MANAGE (MANAGE also deletes and grants); EDIT writes without deleting.
GRANTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    # registers versions, moves the production alias, tags versions (never deletes a model or a version)
    "operator": (("registered_model", "*", "EDIT"),),
    # the training and drift jobs: create their experiments' runs, log metrics and artifacts, end them
    "jobs": (("experiment", "*", "EDIT"),),
    # the console and the predictor read: the registry, runs, artifacts, the production model
    "console": (),
    "predictor": (),
}
ROLE_ENV = "VISIONOPS_MLFLOW_{role}_{what}"


class AccountError(Exception):
    """An account cannot be set up: one line, nothing secret in it."""


def wanted_accounts(env: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """``(role, username, password)`` of every role the environment names (the Secrets' values)."""
    out = []
    for role in GRANTS:
        username = env.get(ROLE_ENV.format(role=role.upper(), what="USERNAME"), "").strip()
        password = env.get(ROLE_ENV.format(role=role.upper(), what="PASSWORD"), "")
        if not username:
            continue
        if not password:
            raise AccountError(f"the {role} account {username!r} has no password: "
                               f"set {ROLE_ENV.format(role=role.upper(), what='PASSWORD')} from its Secret")
        out.append((role, username, password))
    names = [u for _, u, _ in out] + [env.get("MLFLOW_AUTH_ADMIN_USERNAME", "")]
    doubled = sorted({n for n in names if n and names.count(n) > 1})
    if doubled:
        raise AccountError(f"one username for two accounts: {', '.join(doubled)} (each component needs its own)")
    return out


def sync(store, admin: tuple[str, str], accounts: Sequence[tuple[str, str, str]]) -> list[str]:
    """Make ``store`` (MLflow's auth ``SqlAlchemyStore``) hold the admin and ``accounts`` with these passwords and
    the grants of their roles; what changed, one line each (never a password)."""
    done = []
    for username, password, is_admin in [(admin[0], admin[1], True), *((u, p, False) for _, u, p in accounts)]:
        if not store.has_user(username, use_primary=True):
            store.create_user(username, password, is_admin=is_admin)
            done.append(f"created {username}" + (" (admin)" if is_admin else ""))
        elif not store.authenticate_user(username, password, use_primary=True):
            store.update_user(username, password=password)
            done.append(f"new password for {username}")
        if store.get_user(username).is_admin != is_admin:
            store.update_user(username, is_admin=is_admin)
            done.append(f"{username}: admin={is_admin}")
    for role, username, _ in accounts:
        for resource_type, pattern, permission in GRANTS[role]:
            store.grant_user_permission(username, resource_type, pattern, permission)  # an upsert
        rights = ", ".join(f"{p} on {t} {pat}" for t, pat, p in GRANTS[role]) or "read only"
        done.append(f"{username} ({role}): {rights}")
    return done


def main(argv: Sequence[str] | None = None) -> int:
    """Set up the accounts the environment names in the config file's user store; exit 2 with one line if not."""
    if argv:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 0 if argv[0] in ("-h", "--help") else 2
    warnings.simplefilter("ignore")  # the server's import-time deprecation notes are not this job's news
    from mlflow.server.auth.config import read_auth_config
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    config = read_auth_config()
    try:
        if not (config.admin_username and config.admin_password):
            raise AccountError("no admin: set MLFLOW_AUTH_ADMIN_USERNAME and MLFLOW_AUTH_ADMIN_PASSWORD")
        accounts = wanted_accounts(os.environ)
        store = SqlAlchemyStore()
        store.init_db(config.database_uri)
        for line in sync(store, (config.admin_username, config.admin_password), accounts):
            print(f"mlflow accounts: {line}", flush=True)
    except AccountError as exc:
        print(f"mlflow accounts: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the store's own errors (a bad password rule, no database): its words, no trace
        print(f"mlflow accounts: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
