"""The operator token of a ``stevie up`` stack.

``stevie up`` uses ``STEVIE_OPERATOR_TOKEN`` when it is set, else generates a random one
(32 bytes from ``secrets``, URL-safe). Either way it is written to
``<state dir>/operator-token`` (mode 0600, owner only) so that ``stevie token`` and the
acceptance script (``.stevie/operator-token``) can read it. Mutating operator routes need
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

TOKEN_FILE = "operator-token"


def token_path(state_dir: Path) -> Path:
    return state_dir / TOKEN_FILE


def ensure_token(state_dir: Path, environ: Mapping[str, str]) -> tuple[str, bool]:
    """(token, generated?): ``STEVIE_OPERATOR_TOKEN`` or a fresh random token, written to the
    token file with mode 0600 (created with that mode; an existing file is re-restricted)."""
    token = environ.get("STEVIE_OPERATOR_TOKEN", "").strip()
    generated = not token
    if generated:
        token = secrets.token_urlsafe(32)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = token_path(state_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return token, generated


def read_token(state_dir: Path) -> str:
    """The token of the stack in ``state_dir``. Raises FileNotFoundError when none was written."""
    return token_path(state_dir).read_text().strip()


def usage(state_dir: Path, gateway_port: int) -> str:
    """How to use the token (printed by ``stevie up``; never the token itself)."""
    path = token_path(state_dir)
    return (
        f"operator token in {path} (mode 0600; `stevie token --state-dir {state_dir}` prints it). Operator routes: "
        f'curl -H "Authorization: Bearer $(cat {path})" -X POST '
        f"http://127.0.0.1:{gateway_port}/api/flags -d '{{\"ExecutionRouter\": false}}'"
    )
