"""`circuit-debugger db check|upgrade [--database PATH_OR_URL]`: inspect or migrate the
database the server uses (shares, prompt sets, jobs)."""

from __future__ import annotations

import argparse
import os


def add_parser(sub) -> None:
    d = sub.add_parser("db", help="check or migrate the database")
    d.add_argument("action", choices=["check", "upgrade"],
                   help="check: integrity and every record, read-only; upgrade: migrate to this version's schema")
    d.add_argument("--database", "--share-db", dest="share_db",
                   default=os.environ.get("CD_DATABASE") or os.environ.get("CD_SHARE_DB") or None,
                   help="SQLite file or postgresql:// URL (default: the server's default file)")


def run(a: argparse.Namespace) -> int:
    from .shares import default_share_db

    target = a.share_db or default_share_db()
    if a.action == "check":
        from .storage.check import check

        lines, ok = check(target)
        print("\n".join(lines))
        return 0 if ok else 1
    from .storage import Store, StorageError

    try:
        s = Store(target)
    except StorageError as e:
        print(f"circuit-debugger: {e}")
        return 1
    print(f"{s.label}: at schema revision {s.revision}")
    return 0
