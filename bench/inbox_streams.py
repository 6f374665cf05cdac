"""How many open inboxes one web process holds: N live-update streams (`GET /events/inbox`) on one real
`adaldyk web` process, then one new appeal; prints the process's RSS and open files at rest and how long
until every stream has heard of the appeal (p50 / p95 / max).

    .venv/bin/python -m bench.inbox_streams --streams 1000 [--database-url postgresql://...]

The web process runs on its own (`adaldyk web`, as in production, default settings but the poll interval
asked for); the streams are plain sockets of this process reading the server-sent events, all of one
logged-in moderator (a session may hold any number of tabs). A figure, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-0123456789"
# Run in a process of its own, like a worker: a citizen's first message through the real workflow.
WRITE_APPEAL = """
import time
from adaldyk_bots.domain import InboundMessage
from adaldyk_bots.runtime import Runtime
from adaldyk_bots.settings import Settings
from adaldyk_bots.storage.db import unit_of_work, utcnow
rt = Runtime.build(Settings(), factories={})
m = InboundMessage(channel="telegram", account="1", chat_id="42", message_key="1", sender_id="42",
                   sent_at=utcnow(), text="Свалка у реки")
with unit_of_work(rt.engine) as s:
    rt.workflow.accept_message(s, m, raw_event_id=None)
print(time.time())
"""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_and_files(pid: int) -> tuple[float, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def _login(url: str) -> str:
    with httpx.Client(base_url=url) as client:
        form = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        answer = client.post(
            "/login",
            data={"username": "bench", "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text[:300]
        return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


async def _stream(
    port: int, cookie: str, opened: asyncio.Event, counter: list[int], heard: list[float]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        f"GET /events/inbox HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nCookie: {cookie}\r\n"
    )
    writer.write(head.encode() + b"\r\n")
    await writer.drain()
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"stream refused: {status!r}")
    counter[0] += 1
    if counter[0] == counter[1]:
        opened.set()
    while True:
        line = await reader.readline()
        if not line:
            return
        if line.startswith(b"event: appeals"):
            heard.append(time.time())
            writer.close()
            return


async def _run(port: int, cookie: str, streams: int, make_appeal: list[str], pid: int) -> None:
    opened = asyncio.Event()
    counter = [0, streams]
    heard: list[float] = []
    tasks = []
    for _ in range(streams):
        tasks.append(asyncio.create_task(_stream(port, cookie, opened, counter, heard)))
        if len(tasks) % 20 == 0:
            # Opened 20 at a time: a burst of more simultaneous requests than the thread pool has
            # threads stalls the session check (see the README's note), which is not what is measured.
            while counter[0] < len(tasks):  # noqa: ASYNC110 - a count, not one event
                await asyncio.sleep(0.01)
    await asyncio.wait_for(opened.wait(), timeout=120)
    await asyncio.sleep(3)  # settle: every stream subscribed, a few polls done
    rss, files = _rss_and_files(pid)
    print(f"{streams} streams open: web process RSS {rss:.0f} MB, {files} open files")
    writing = await asyncio.create_subprocess_exec(*make_appeal, stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    out, _ = await writing.communicate()
    start = float(out.decode().strip().splitlines()[-1])  # when the appeal was committed
    done, pending = await asyncio.wait(tasks, timeout=60)
    for task in pending:
        task.cancel()
    delays = sorted(t - start for t in heard)
    if delays:
        p = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))]  # noqa: E731
        print(
            f"new appeal heard by {len(delays)}/{streams} streams: "
            f"p50 {p(0.5) * 1000:.0f} ms, p95 {p(0.95) * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms "
            "after the appeal was committed"
        )
    rss, files = _rss_and_files(pid)
    print(f"after: RSS {rss:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="adaldyk-streams-"))
    print(f"work directory (web.log): {work}")
    port = _free_port()
    env = {
        **os.environ,
        "ADALDYK_DATABASE_URL": args.database_url or f"sqlite:///{work}/bench.sqlite3",
        "ADALDYK_SECRET_KEY": secrets.token_urlsafe(32),
        "ADALDYK_PORT": str(port),
        "ADALDYK_HOST": "127.0.0.1",
        "ADALDYK_INBOX_POLL_SECONDS": str(args.poll_seconds),
    }
    os.environ.update(env)  # the process that writes the appeal reads the same settings
    adaldyk = [sys.executable, "-m", "adaldyk_bots"]
    subprocess.run([*adaldyk, "migrate"], env=env, check=True, capture_output=True, cwd=ROOT)
    subprocess.run(
        [*adaldyk, "user", "create", "bench", "--role", "moderator", "--password-stdin"],
        env=env,
        input=PASSWORD.encode(),
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    web = subprocess.Popen(
        [*adaldyk, "web"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(work / "web.log").open("wb")
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        rss, files = _rss_and_files(web.pid)
        print(f"idle web process: RSS {rss:.0f} MB, {files} open files")
        cookie = _login(url)
        asyncio.run(_run(port, cookie, args.streams, [sys.executable, "-c", WRITE_APPEAL], web.pid))
    finally:
        web.terminate()
        try:
            web.wait(timeout=20)
        except subprocess.TimeoutExpired:
            web.kill()


if __name__ == "__main__":
    main()
