"""``memstrata bench erasure``: erasure, backup and restore on real conversations.

Bounded run on one temp SQLite file: every user of the workload (LoCoMo or LongMemEval
conversations, else synthetic) is ingested with notes; an online backup is taken while
ingest runs; then some users are erased with verification (everything they had, read
before erasing and held in memory, is searched for in the raw bytes of the store files
and the cache directory), one session of a remaining user is deleted and verified, and a
backup of the final state is restored into a new file and compared row by row.
Target: 0 residue findings, backups and the restore identical and integrity ok.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..config import MemoryConfig
from ..erasure import erase_verified, scan, text_traces
from ..memory import Memory
from ..store.sqlite_backup import backup, restore
from .serve import load_workload


def _digest(path: Path) -> tuple[int, str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT e.id, e.namespace, e.user_id, s.session_id, e.position, e.content, e.metadata, "
                            "e.event_time FROM episodes e JOIN sessions s ON s.key = e.session_key ORDER BY e.id")
        h = hashlib.sha256()
        n = 0
        for row in rows:
            h.update(repr(row).encode())
            n += 1
        return n, h.hexdigest()
    finally:
        conn.close()


def run(path: str | Path | None, *, users: int = 10, erase: int = 5, embed: bool = True,
        log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    if not 1 <= erase < users <= 100:
        raise ValueError("need 1 <= --erase < --users <= 100")
    workload = load_workload(path, users)
    config = MemoryConfig.from_env()
    config = replace(config, embed=replace(config.embed, enabled=embed),
                     notes=replace(config.notes, background=False))
    with tempfile.TemporaryDirectory(prefix="memstrata-erasure-") as tmp:
        db = Path(tmp) / "memory.db"
        mem = Memory(db, config=config)
        backups: list[dict[str, Any]] = []
        done = threading.Event()

        def backup_while_ingesting() -> None:
            n = 0
            while not done.wait(0.5):
                r = backup(db, Path(tmp) / f"during-{n}.db")
                backups.append({"seconds": r.seconds, "bytes": r.bytes, "episodes": r.episodes})
                n += 1

        started = time.perf_counter()
        thread = threading.Thread(target=backup_while_ingesting, daemon=True)
        thread.start()
        try:
            for script in workload.users:
                for s in script.sessions:
                    mem.add(s.messages, user_id=script.user_id, session_id=s.session_id, timestamp=s.timestamp)
                mem.process(user_id=script.user_id)
        finally:
            done.set()
            thread.join()
        ingest_s = time.perf_counter() - started
        episodes = mem.stats().episodes
        log(f"ingested {episodes} episodes of {users} users in {ingest_s:.1f} s; {len(backups)} online backups")

        erased = []
        for script in workload.users[:erase]:
            t0 = time.perf_counter()
            n, report = erase_verified(mem, script.user_id)
            scanned = sum(b for _, b in report.files)
            erased.append({"user": script.user_id, "episodes": n, "traces": report.traces,
                           "residue": len(report.residue), "shared": len(report.findings) - len(report.residue),
                           "bytes_scanned": scanned, "seconds": time.perf_counter() - t0,
                           "residue_examples": [f.describe() for f in report.residue[:3]]})
            log(f"erased {script.user_id}: {n} episodes, {report.traces} traces, {len(report.residue)} residue")

        keeper = workload.users[erase].user_id
        session = mem.sessions(user_id=keeper)[0].session_id
        texts = [e.content for e in mem.list(user_id=keeper, session_id=session, limit=100_000)]
        kept_texts = [e.content for e in mem.list(user_id=keeper, limit=100_000) if e.content not in texts]
        mem.delete_session(session, user_id=keeper)
        traces = [t for i, x in enumerate(texts) for t in text_traces(f"deleted turn {i}", x)]
        deleted = scan(db, traces, include_cache=False, discount_live=True)  # the user may repeat a phrase
        control = scan(db, [t for x in kept_texts[:20] for t in text_traces("kept", x)], include_cache=False)
        mem.close()

        final = Path(tmp) / "final.db"
        b = backup(db, final)
        restored = Path(tmp) / "restored.db"
        restore(final, restored)
        live_digest, restored_digest = _digest(db), _digest(restored)
        conn = sqlite3.connect(restored)
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        conn.close()

    total_scanned = sum(e["bytes_scanned"] for e in erased)
    total_scan_s = sum(e["seconds"] for e in erased)
    result = {
        "source": workload.source, "users": users, "episodes": episodes, "embed": embed,
        "ingest_seconds": round(ingest_s, 2),
        "erased_users": erase, "erased_episodes": sum(e["episodes"] for e in erased),
        "traces_checked": sum(e["traces"] for e in erased),
        "residue_findings": sum(e["residue"] for e in erased),
        "shared_findings": sum(e["shared"] for e in erased),
        "erase_verify_seconds_mean": round(total_scan_s / len(erased), 3),
        "scan_mb_per_s": round(total_scanned / 1e6 / total_scan_s, 1) if total_scan_s else None,
        "delete_session": {"turns": len(texts), "residue": len(deleted.residue),
                           "control_found": not control.ok},
        "online_backups": len(backups),
        "backup_bytes": b.bytes, "backup_seconds": round(b.seconds, 3),
        "backup_mb_per_s": round(b.bytes / 1e6 / b.seconds, 1) if b.seconds else None,
        "restore_equal": live_digest == restored_digest, "restored_episodes": restored_digest[0],
        "restore_integrity": integrity,
        "per_user": erased,
    }
    result["ok"] = bool(result["residue_findings"] == 0 and not deleted.residue and not control.ok
                        and result["restore_equal"] and integrity == "ok" and backups)
    return result


def render(result: dict[str, Any], out: Any) -> None:
    out.print(f"{result['source']}: {result['users']} users, {result['episodes']} episodes "
              f"(embeddings {'on' if result['embed'] else 'off'}), ingest {result['ingest_seconds']} s, "
              f"{result['online_backups']} online backups during ingest")
    out.print(f"erased {result['erased_users']} users ({result['erased_episodes']} episodes) with verification: "
              f"{result['traces_checked']} traces, {result['residue_findings']} residue findings, "
              f"{result['shared_findings']} shared with other users; {result['erase_verify_seconds_mean']} s "
              f"per erase+scan ({result['scan_mb_per_s']} MB/s scanned)")
    d = result["delete_session"]
    out.print(f"delete_session: {d['turns']} turns, {d['residue']} residue (control text found: {d['control_found']})")
    out.print(f"backup {result['backup_bytes']} bytes in {result['backup_seconds']} s "
              f"({result['backup_mb_per_s']} MB/s); restore equal: {result['restore_equal']}, "
              f"integrity {result['restore_integrity']}")
    out.print("ok" if result["ok"] else "FAILED")
