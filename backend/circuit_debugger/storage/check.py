"""`circuit-debugger db check`: what is wrong with a database, without changing it.

SQLite: `PRAGMA integrity_check` (corrupt pages, broken indexes) and then every stored record
read and parsed; PostgreSQL: every record read and parsed. Parsed are the JSON columns; a table
without one (job_locks) is counted. Also the schema revision. Returns the report's lines and
whether everything was fine."""

from __future__ import annotations

import json

from sqlalchemy import func, inspect, select, text

from .engine import label, make_engine
from .migrate import current, foreign_tables, head
from .tables import metadata

# the columns holding JSON, per table; a table without one (job_locks) is counted, not parsed
JSON_COLUMNS = {"investigations": ("state",), "promptsets": ("state",), "jobs": ("request", "result")}


def check(target: str) -> tuple[list[str], bool]:
    lines, ok = [f"database: {label(target)}"], True
    try:
        eng = make_engine(target, busy_timeout=5.0)
        conn = eng.connect()
    except Exception as e:  # noqa: BLE001 - reported, the command exits non-zero
        return lines + [f"cannot open: {getattr(e, 'orig', None) or e}"], False
    with conn:
        try:
            rev = current(conn)
        except Exception as e:  # noqa: BLE001
            return lines + [f"cannot read the schema revision: {getattr(e, 'orig', None) or e}"], False
        lines.append(f"schema revision: {rev} (this version's newest: {head()})")
        if rev != head():
            lines.append("  not at the newest revision: the server migrates it at start")
        for bad in foreign_tables(conn):
            lines.append(f"foreign table: {bad}")
            ok = False
        if eng.dialect.name == "sqlite":
            try:
                problems = [r[0] for r in conn.execute(text("PRAGMA integrity_check(100)"))]
            except Exception as e:  # noqa: BLE001
                problems = [str(getattr(e, "orig", None) or e)]
            if problems != ["ok"]:
                ok = False
                lines.append(f"integrity check: {len(problems)} problem(s)")
                lines += [f"  {p}" for p in problems[:20]]
            else:
                lines.append("integrity check: ok")
        have = set(inspect(conn).get_table_names())
        for t in metadata.sorted_tables:
            if t.name not in have:
                continue
            cols = [t.c[name] for name in JSON_COLUMNS.get(t.name, ())]
            n = bad_rows = 0
            try:
                n = conn.execute(select(func.count()).select_from(t)).scalar_one()
                key = list(t.primary_key.columns)[0]
                for rid, *bodies in (conn.execute(select(key, *cols)) if cols else ()):
                    try:
                        for body, c in zip(bodies, cols):
                            if body is not None or not c.nullable:
                                json.loads(body)
                    except (TypeError, ValueError):
                        bad_rows += 1
                        if bad_rows <= 5:
                            lines.append(f"  {t.name} {rid}: not valid JSON")
            except Exception as e:  # noqa: BLE001 - a damaged table is reported, the rest still checked
                ok = False
                lines.append(f"{t.name}: unreadable ({getattr(e, 'orig', None) or e})")
                continue
            ok = ok and bad_rows == 0
            lines.append(f"{t.name}: {n} rows" + (f", {bad_rows} damaged" if bad_rows else ""))
    eng.dispose()
    lines.append("result: " + ("ok" if ok else "DAMAGED"))
    return lines, ok
