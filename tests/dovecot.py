"""A private Dovecot IMAP server for the e-mail tests: its own configuration, TLS certificate, users and
maildirs in a temporary directory, listening on a free loopback port. Never the machine's own Dovecot
(the Debian service may be installed; it is not used).

Dovecot 2.3 from Debian (`dovecot-imapd`, `dovecot-core`). As root, mail processes run as the
`dovenull`-style unprivileged user `nobody` (Dovecot refuses UID 0 for mail access); the directory is
given to that user. The certificate is self-signed for 127.0.0.1 and made by the openssl CLI; the tests
trust it through ADALDYK_MAIL_CA_FILE, so the connector verifies it like any other server's.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def dovecot_available() -> bool:
    """dovecot-core (the master) and dovecot-imapd (the imap processes), and openssl for the certificate."""
    imap = Path("/usr/lib/dovecot/imap")
    return Path(DOVECOT).exists() and imap.exists() and shutil.which("openssl") is not None


def _mail_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    return pwd.getpwnam("nobody")


class PrivateDovecot:
    """`start()` it, `stop()` it; users are added before start (passwd-file)."""

    def __init__(self, users: dict[str, str], *, capability: str | None = None) -> None:
        """`capability`: what the server advertises instead of its default (e.g. without IDLE and MOVE,
        to test a client's fallbacks)."""
        self.root = Path(tempfile.mkdtemp(prefix="adaldyk-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.users = dict(users)
        self.capability = capability
        self.cert = self.root / "cert.pem"
        self.key = self.root / "key.pem"
        self.log = self.root / "dovecot.log"
        self.config = self.root / "dovecot.conf"
        self._process: subprocess.Popen[bytes] | None = None
        mail_user = _mail_user()
        self._uid, self._gid, self._user = mail_user.pw_uid, mail_user.pw_gid, mail_user.pw_name
        self._make_certificate()
        self._write_config()

    def _make_certificate(self) -> None:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", str(self.key), "-out", str(self.cert),
                "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                "-addext", "basicConstraints=critical,CA:TRUE",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.key.chmod(0o600)

    def _write_config(self) -> None:
        home = self.root / "home"
        home.mkdir()
        passwd = self.root / "passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        run = self.root / "run"
        run.mkdir()
        os.chown(home, self._uid, self._gid)
        root_users = os.geteuid() == 0
        self.config.write_text(
            f"""
base_dir = {run}
state_dir = {self.root / "state"}
instance_name = adaldyk-test-{self.port}
log_path = {self.log}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{self.cert}
ssl_key = <{self.key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_verbose = yes
mail_location = maildir:~/Maildir
{f"imap_capability = {self.capability}" if self.capability else ""}
first_valid_uid = {self._uid}
last_valid_uid = {self._uid}
first_valid_gid = 0
{"" if root_users else f"default_internal_user = {self._user}"}
{"" if root_users else f"default_login_user = {self._user}"}
{"" if root_users else "default_internal_group = " + self._group()}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={self._uid} gid={self._gid} home={home}/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {self.port}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""
        )

    def _group(self) -> str:
        import grp

        return grp.getgrgid(self._gid).gr_name

    def start(self) -> None:
        # Its own session: stop() can end the connection processes too, which outlive a stopped master
        # for a while and keep serving the connections they have.
        self._process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"dovecot exited with {self._process.returncode}: {self.log_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        """The server is gone: the master stopped and every connection with it (as a machine's restart
        would leave it), so a client notices at once instead of talking to a lingering process."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # nothing left of it

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, user: str, mailbox: str = "INBOX") -> str:
        from urllib.parse import quote

        secret = quote(self.users[user], safe="")
        return f"imaps://{quote(user, safe='')}:{secret}@127.0.0.1:{self.port}/{mailbox}"
