"""What ``embedfleet up`` and ``down`` tell the user: what runs now, what was started,
and what happens to queued work when the embedded server stops."""

from __future__ import annotations

import producers.local_fleet as fleet


def up_text(started: fleet.Started, flower_port: int) -> str:
    """One line: where the fleet is, what this ``up`` started, what ran already."""
    url = fleet.describe_url()
    workers = sorted({*started.running, *started.names} - {"flower"}, key=lambda n: (len(n), n))
    flower = "flower" in started.running or "flower" in started.names
    on = f" + flower on http://127.0.0.1:{flower_port}" if flower else ""
    if not started.processes and started.server is None:
        return (
            f"fleet already up at {url}: {len(workers)} worker(s) ({', '.join(workers)}){on}; "
            "nothing started (`embedfleet up --workers N` adds workers up to N)"
        )
    where = "started an embedded server" if started.server else "using the running server"
    new = ", ".join(started.names) or "nothing new"
    return f"fleet up at {url} ({where}); {len(workers)} worker(s){on}; started: {new}"


def queued_on_embedded_server() -> tuple[int, bool]:
    """Chunks waiting on the embedded server ``up`` started (queued or taken but not
    acknowledged), and whether it keeps them in an append-only file; (0, True) when
    ``up`` started none or it does not answer."""
    if not fleet.pidfiles.path(fleet.state_dir(), "server").exists():
        return 0, True
    import redis

    try:
        client = redis.Redis.from_url(fleet.redis_url(), socket_timeout=2, socket_connect_timeout=2)
        queues = list(client.scan_iter(match="embed.*", _type="list"))
        queued = sum(int(client.llen(q)) for q in queues) + int(client.hlen("unacked"))
        kept = client.config_get("appendonly").get("appendonly") == "yes"
        return queued, kept
    except redis.RedisError:
        return 0, True


def down_note() -> str:
    """What stopping the embedded server does to queued work ("" when none is queued)."""
    queued, kept = queued_on_embedded_server()
    if not queued:
        return ""
    folder = fleet.state_dir() / "server"
    if kept:
        return (
            f"stopping the embedded server while it holds {queued} chunk(s) of unfinished "
            f"jobs: they stay in its append-only file ({folder}) and run when "
            "`embedfleet up` starts workers again"
        )
    return (
        f"warning: stopping the embedded server while it holds {queued} chunk(s) of "
        "unfinished jobs: it was started without an append-only file, so they are lost"
    )
