"""Per-service NATS users for ``stevie up`` (``STEVIE_NATS_AUTH=1``).

The embedded ``nats-server`` gets the accounts of ``deploy/nats-cluster/accounts.conf`` (one
user per service, the subject permissions of ``permissions.conf``, generated from the table in
``stevie.runtime.nats_perms``) with a random password written into a 0600 config in the state
directory; every service process gets ``STEVIE_NATS_PASSWORD`` and logs in as the user named
like it (``stevie.runtime.service._connect``). A local process without the password is the
``anonymous`` user: it may read the data subjects, but call or serve no RPC and publish nothing.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from stevie.runtime.infra import InfraError

DEPLOY = Path(__file__).resolve().parents[5] / "deploy" / "nats-cluster"
PASSWORD_VAR = "$STEVIE_NATS_PASSWORD"


def enabled(env: dict[str, str]) -> bool:
    return env.get("STEVIE_NATS_AUTH", "").strip().lower() in ("1", "true", "yes", "on")


def write_config(nats_dir: Path, password: str | None = None, deploy: Path = DEPLOY) -> tuple[Path, str]:
    """Write ``nats_dir/auth.conf`` (+ its accounts and permissions, the password filled in,
    mode 0600). Returns (config path, password). Raises InfraError when the deploy files are
    missing."""
    try:
        accounts = (deploy / "accounts.conf").read_text()
        permissions = (deploy / "permissions.conf").read_text()
    except OSError as exc:
        raise InfraError(f"STEVIE_NATS_AUTH=1 needs {deploy}/accounts.conf and permissions.conf: {exc}") from exc
    password = password or secrets.token_hex(16)
    nats_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "auth-accounts.conf": accounts.replace("./permissions.conf", "./auth-permissions.conf").replace(
            PASSWORD_VAR, f'"{password}"'
        ),
        "auth-permissions.conf": permissions,
        "auth.conf": "# written by stevie up (STEVIE_NATS_AUTH=1)\ninclude ./auth-accounts.conf\n",
    }
    for name, text in files.items():
        path = nats_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    return nats_dir / "auth.conf", password
