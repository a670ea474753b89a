"""`kumulus backend backup FILE` / `restore FILE`: the database, taken while the backend runs,
with the public addresses of the keys it belongs to.

A backup file is a tar archive of `manifest.json` (format, database kind, schema revision,
time, the keys' addresses) and the database: `database.sqlite` (SQLite's online backup API:
a consistent copy while writers run) or `database.dump` (`pg_dump --format=custom`, one
snapshot). Secrets are never in it: the key files are kept (and backed up) by the operator,
and a restore onto a backend whose keys have other addresses is refused unless forced,
since agents pin the backend's key and the ledger's chain account belongs to the payout
and deposit keys. A restore stops payouts until those sent after the backup are found on
chain (restored_payouts); the backend must not run during a restore (if it does, or the
restore is killed before it marks the database, the payout sender still notices the
database is behind the chain)."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import make_url

from kumulus.backend import backend_keys, restored_payouts
from kumulus.backend.db import Database
from kumulus.config import BackendSettings
from kumulus.core.errors import ConflictError, InvalidError
from kumulus.core.signing import SecretFileError, load_keypair

FORMAT = "kumulus-backup/1"
_MANIFEST = "manifest.json"


class BackupError(ConflictError):
    """A backup or restore that cannot be done; the message says why."""

    code = "backup_refused"


@dataclass(frozen=True)
class Manifest:
    format: str
    database: str  # "sqlite" | "postgresql"
    revision: str | None  # the schema's alembic revision
    created_at: str
    addresses: dict[str, str]  # key name -> ss58 address


def key_addresses(settings: BackendSettings) -> dict[str, str]:
    """The public addresses of the backend's keys that exist (none is made here)."""
    files = {
        "backend": settings.key_file,
        "payout": settings.payout_key_file,
        "deposit": settings.deposit_key_file,
        "anchor": settings.anchor_key_file,
    }
    found = {
        name: load_keypair(path).ss58_address
        for name, path in files.items()
        if path is not None and path.exists()
    }
    if settings.deposit_address:
        found["deposit"] = settings.deposit_address
    return found


def _addresses(url: str, settings: BackendSettings) -> dict[str, str]:
    """The addresses the database's replicas use: those it recorded (backend_keys, what
    every replica is held to), else this machine's key files. Run where the key files are
    not (another user, no credentials), a backup still names the keys it belongs to."""
    db = Database(url)
    try:
        pinned = {role: r.address for role, r in backend_keys.recorded(db).items()}
    finally:
        db.engine.dispose()
    return key_addresses(settings) | pinned


def _kind(url: str) -> str:
    if url.startswith("sqlite"):
        return "sqlite"
    if url.startswith("postgresql"):
        return "postgresql"
    raise BackupError(f"cannot back up a database of this kind: {url.split(':', 1)[0]}")


def _revision(url: str) -> str | None:
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        db.engine.dispose()


def _pg_args(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password, and the environment carrying it (PGPASSWORD): a
    password on a command line is visible to every user in /proc."""
    parsed = make_url(url).set(drivername="postgresql")
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    return parsed.set(password=None).render_as_string(hide_password=False), env


def _run(argv: list[str], env: dict[str, str]) -> None:
    if shutil.which(argv[0]) is None:
        raise BackupError(f"{argv[0]} is not installed (Debian: apt-get install postgresql-client)")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{argv[0]} failed: {done.stderr.strip()[-1000:]}")


def backup(settings: BackendSettings, dest: Path) -> Manifest:
    """Write a backup of the backend's database to `dest` (written next to it, then moved
    into place: a failed backup never leaves a partial file under that name)."""
    url = settings.db_url
    kind = _kind(url)
    manifest = Manifest(
        FORMAT,
        kind,
        _revision(url),
        datetime.now(UTC).isoformat(timespec="seconds"),
        _addresses(url, settings),
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        if kind == "sqlite":
            data = Path(tmp) / "database.sqlite"
            source = sqlite3.connect(url.removeprefix("sqlite:///"))
            target = sqlite3.connect(data)
            try:
                with target:
                    source.backup(target)
            finally:
                source.close()
                target.close()
        else:
            data = Path(tmp) / "database.dump"
            conninfo, env = _pg_args(url)
            _run(["pg_dump", "--format=custom", "--no-owner", f"--file={data}", conninfo], env)
        archive = Path(tmp) / "backup.tar"
        with tarfile.open(archive, "w") as tar:
            body = json.dumps(asdict(manifest), indent=2).encode()
            info = tarfile.TarInfo(_MANIFEST)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
            tar.add(data, arcname=data.name)
        archive.chmod(0o600)  # the ledger and accounts: not for other users
        archive.replace(dest)
    return manifest


def read_manifest(src: Path) -> Manifest:
    """The manifest of the backup at `src` (BackupError when it is not one)."""
    try:
        with tarfile.open(src, "r") as tar:
            member = tar.extractfile(_MANIFEST)
            if member is None:
                raise KeyError(_MANIFEST)
            data = json.loads(member.read())
        manifest = Manifest(**data)
    except (OSError, KeyError, ValueError, TypeError, tarfile.TarError) as exc:
        raise BackupError(f"{src} is not a Kumulus backup ({exc})") from exc
    if manifest.format != FORMAT:
        raise BackupError(f"{src} is a backup of an unknown format: {manifest.format}")
    return manifest


def key_mismatches(manifest: Manifest, settings: BackendSettings) -> list[str]:
    """How this backend's keys differ from those the backup belongs to (empty: the same)."""
    try:
        here = key_addresses(settings)
    except SecretFileError as exc:
        return [str(exc)]
    problems = []
    for name, address in sorted(manifest.addresses.items()):
        mine = here.get(name)
        if mine is None:
            problems.append(f"the {name} key ({address}) is missing here")
        elif mine != address:
            problems.append(f"the {name} key here is {mine}, the backup's is {address}")
    return problems


def restore(settings: BackendSettings, src: Path, force: bool = False) -> Manifest:
    """Replace the backend's database with the backup at `src`, then stop payouts until
    they are reconciled with the chain. Refused when the keys differ (unless `force`) or
    the database is of another kind than the backup's."""
    manifest = read_manifest(src)
    url = settings.db_url
    kind = _kind(url)
    if manifest.database != kind:
        raise BackupError(f"{src} is a {manifest.database} backup; this backend uses {kind}")
    problems = key_mismatches(manifest, settings)
    if problems and not force:
        raise BackupError(
            "this backend's keys are not the backup's: "
            + "; ".join(problems)
            + " (put the backup's key files in place, or force the restore)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(src, "r") as tar:
            tar.extractall(tmp, filter="data")
        if kind == "sqlite":
            data = Path(tmp) / "database.sqlite"
            if not data.is_file():
                raise InvalidError(f"{src} holds no database")
            # Marked in the copy, so the database and its mark arrive in one step.
            _mark(f"sqlite:///{data}", manifest)
            _restore_sqlite(data, Path(url.removeprefix("sqlite:///")))
        else:
            conninfo, env = _pg_args(url)
            data = Path(tmp) / "database.dump"
            if not data.is_file():
                raise InvalidError(f"{src} holds no database dump")
            _run(
                [
                    "pg_restore",
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    "--single-transaction",
                    f"--dbname={conninfo}",
                    str(data),
                ],
                env,
            )
            # A second transaction: killed in between, the restored database is unmarked;
            # the payout sender then finds the payout key's nonce on chain past the
            # database's and stops as if marked (restored_payouts.notice_unknown_nonces).
            _mark(url, manifest)
    return manifest


def _mark(url: str, manifest: Manifest) -> None:
    db = Database(url)
    try:
        restored_payouts.mark_restored(db, f"the backup of {manifest.created_at}")
    finally:
        db.engine.dispose()


def _restore_sqlite(data: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    source = sqlite3.connect(data)
    dest = sqlite3.connect(target)
    try:
        with dest:
            source.backup(dest)  # page by page, through SQLite: the WAL stays consistent
    finally:
        source.close()
        dest.close()
