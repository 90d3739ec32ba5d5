"""Server CPU per mTLS request: the built-in TLS listener, Certbound's request path and proxy
mode, against nginx ``optional_no_ca``.

Run from the repository root (needs ``../shared/bench`` beside the repository, node >= 20 with
npm, nginx and the openssl CLI; exit status 2 when one is missing):

    .venv/bin/python bench/tls_bench.py                   # 5 s x 3 reps per row
    .venv/bin/python bench/tls_bench.py --duration 10 --check

It drives the shared harness (``../shared/bench``: ``pki.py``, ``loadgen.mjs``, ``bench.py``)
rather than a load generator of its own, in one run, on one machine, with one set of
certificates (the harness's throw-away PKI: ECDSA P-256 server certificate, the client
presents leaf + intermediate). Every server gets the same two loads: a full mTLS handshake
per request (node https, 16 concurrent) and keep-alive requests (undici, 32 concurrent):

1. nginx's reference rows, ``bench.py --only B-opt-ec-new,B-opt-ec-ka``: nginx 1.22 with one
   worker, ``ssl_verify_client optional_no_ca``, ``return 200``;
2. :class:`certbound.intake.tls.TlsListener` in accept mode serving a tiny ASGI app that
   answers 200, in its own process on uvloop (``--serve``): the listener alone;
3. the real ``certbound serve`` on its built-in TLS listener, ``GET /api/v1/intake/echo``:
   the chain validated against the trust store (the harness's EC chain uploaded with
   ``--revocation-mode off``), the device looked up in the registry and one
   ``device.trust.verify`` event written to the System Log (SQLite) per request;
4. proxy mode: nginx (docs/deploy/nginx.conf, one worker, upstream keep-alive) in front of
   ``certbound serve`` on plain HTTP (``trusted_proxies = ["127.0.0.1/32"]``,
   ``proxy_header = "nginx"``), the same echo URL through nginx. The CPU is the sum of nginx
   and Certbound: both run under one parent (``--group``, this script), whose process tree
   the harness samples.

Rows 3 and 4 first send one request and check that the device was verified over the
expected path; after the run they count the ``device.trust.verify`` events against the
requests. The table reports server CPU milliseconds per request (``srv ms/op``, the
harness's noise-robust figure), the ratio to nginx in the same mode, and TCP connections per
request (the kernel's PassiveOpens per completed request, every listener on the machine
included: ~1.0 proves a new connection per request, ~0 keep-alive). Targets of the bare
listener: a full handshake + request at or below nginx's, a keep-alive request at most
0.2 ms; ``--check`` exits 1 when one is missed, or when any row is invalid (not one
connection per request, errors, missing events). The echo rows' targets are printed, not
checked: they include validation and the System Log. The machine is shared: compare rows of
one run, and look at ``other CPU%``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "bench"
DEPLOY_NGINX = REPO / "docs" / "deploy" / "nginx.conf"
NGINX_ROWS = {"new": "B-opt-ec-new", "keepalive": "B-opt-ec-ka"}
CONCURRENCY = {"new": 16, "keepalive": 32}  # what the nginx rows use
KEEPALIVE_TARGET_MS = 0.2
ONE_CONNECTION_PER_REQUEST = (0.95, 1.05)
ECHO_PATH = "/api/v1/intake/echo"
VERIFY_EVENT = "device.trust.verify"
CERTBOUND = (sys.executable, "-m", "certbound")
# Upstream connections nginx keeps open to Certbound: at least the highest concurrency, so
# the keep-alive row does not churn connections (docs/deploy/nginx.conf keeps 16).
UPSTREAM_KEEPALIVE = 64
STOP_WAIT_S = 30.0
MODES = {"new": "full mTLS handshake + request", "keepalive": "keep-alive request"}
SERVERS = {
    "nginx": "nginx optional_no_ca, return 200",
    "listener": "Certbound TLS listener, bare 200 app",
    "echo": "certbound serve, built-in TLS: echo",
    "proxy": "nginx -> certbound serve HTTP: echo",
}

Row = dict[str, Any]
Rows = dict[str, Row]  # mode -> the harness's row


# --- the listener under test (``--serve``) ------------------------------------------------


async def _ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"3")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok\n"})


def serve(port: int, pki: Path) -> None:
    """Run the listener on 127.0.0.1:port until SIGTERM (the bench's server process)."""
    from certbound.intake.tls import TlsListener, TlsListenerConfig, run

    config = TlsListenerConfig(
        "127.0.0.1",
        port,
        pki / "server.pem",
        pki / "server.key",
        keepalive_timeout=60.0,
        header_timeout=60.0,
        max_connections=4096,
    )
    run(TlsListener(_ok_app, config, lifespan="off"))


# --- the proxy-mode parent (``--group``) ---------------------------------------------------


def run_group(spec: Path) -> int:
    """Start the commands in ``spec`` as children and stop them all on SIGTERM or SIGINT.

    ``spec`` is JSON: ``{"children": [{"argv": [...], "log": PATH}, ...], "pids": PATH}``;
    the children's pids are written to ``pids``. The harness samples this process's tree,
    so one figure covers nginx and Certbound. If a child exits, the others are stopped.
    """
    plan = json.loads(spec.read_text())
    stopping: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children: list[subprocess.Popen[bytes]] = []
    try:
        for child in plan["children"]:
            with open(child["log"], "ab") as log:
                children.append(_spawn(child["argv"], log))
        Path(plan["pids"]).write_text(json.dumps([child.pid for child in children]))
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.5)
    finally:
        for child in reversed(children):
            _stop(child)
    return 0 if stopping else 1


# --- processes ------------------------------------------------------------------------------


def _spawn(argv: list[str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO
    )


def _stop(process: subprocess.Popen[bytes], wait: float = STOP_WAIT_S) -> None:
    """SIGTERM by pid, then SIGKILL by pid if it is still running after ``wait``."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def started(argv: list[str], log: Path, ports: tuple[int, ...]) -> Iterator[int]:
    """Run ``argv`` (output to ``log``) until the block ends; yield its pid once ``ports``
    accept connections."""
    with log.open("ab") as out:
        process = _spawn(argv, out)
        try:
            for port in ports:
                _wait_for_port(port, process, log)
            yield process.pid
        finally:
            _stop(process, 2 * STOP_WAIT_S)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], log: Path, limit: float = 30
) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}); see {log}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {limit:.0f} s; see {log}")


# --- the harness ------------------------------------------------------------------------


def need_tools(tools: Sequence[str] = ("node", "npm", "nginx", "openssl")) -> str | None:
    """Extend PATH with the sbin directories (nginx) and name the ``tools`` still missing."""
    path = os.environ.get("PATH", "").split(os.pathsep)
    extra = [d for d in ("/usr/sbin", "/usr/local/sbin", "/sbin") if d not in path]
    os.environ["PATH"] = os.pathsep.join([*path, *extra])
    missing = [tool for tool in tools if shutil.which(tool) is None]
    return ", ".join(missing) or None


def prepare(work: Path) -> None:
    """The harness's work directory, as its run_all.sh prepares it."""
    (work / "logs").mkdir(parents=True, exist_ok=True)
    node = work / "node"
    node.mkdir(exist_ok=True)
    if not (work / "pki" / "server.pem").exists():
        subprocess.run(
            [sys.executable, str(SHARED_BENCH / "pki.py"), str(work / "pki"), "4"],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )
    for name in ("package.json", "loadgen.mjs", "oidc_server.mjs"):
        shutil.copy(SHARED_BENCH / name, node / name)
    if not (node / "node_modules").is_dir():
        print("tls_bench: npm install (oidc-provider, undici, jose) into the work dir", flush=True)
        npm = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"]
        subprocess.run(npm, cwd=node, check=True, stdout=subprocess.DEVNULL, timeout=600)


def harness(work: Path, *args: str, timeout: float) -> None:
    command = [sys.executable, str(SHARED_BENCH / "bench.py"), "--work", str(work)]
    command += ["--here", str(SHARED_BENCH), *args]
    subprocess.run(command, check=True, timeout=timeout)


def harness_module() -> ModuleType:
    """The harness's bench.py as a module: its /proc sampling (``tree_ticks``)."""
    spec = importlib.util.spec_from_file_location("shared_bench", SHARED_BENCH / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[Row]:
    rows: list[Row] = json.loads(path.read_text())["rows"]
    return rows


def nginx_rows(work: Path, duration: int, reps: int) -> Rows:
    only = ",".join(NGINX_ROWS.values())
    budget = len(NGINX_ROWS) * reps * (duration + 40) + 60
    harness(work, "--only", only, "--duration", str(duration), "--reps", str(reps), timeout=budget)
    by_id = {row["id"]: row for row in _rows(work / "results.json")}
    return {mode: by_id[rid] for mode, rid in NGINX_ROWS.items()}


def target_rows(
    work: Path,
    url: str,
    server_pid: int,
    duration: int,
    reps: int,
    *,
    parts: Mapping[str, int] | None = None,
) -> Rows:
    """Both loads against ``url``, CPU sampled over the process tree of ``server_pid``.

    ``parts`` (name -> pid): process trees whose CPU ticks are also summed over each whole
    harness call (warm-ups included), kept in the row as ``parts_ticks``.
    """
    pki, parts = work / "pki", parts or {}
    tree_ticks = harness_module().tree_ticks if parts else None
    rows: Rows = {}
    for mode, concurrency in CONCURRENCY.items():
        before = {name: tree_ticks(pid) for name, pid in parts.items()} if tree_ticks else {}
        harness(
            work,
            *("--target-url", url, "--server-pid", str(server_pid)),
            *("--cert", str(pki / "ec" / "device-001-chain.pem")),
            *("--key", str(pki / "ec" / "device-001.key"), "--ca", str(pki / "roots.pem")),
            *("--modes", mode, "--conc", str(concurrency)),
            *("--duration", str(duration), "--reps", str(reps)),
            timeout=reps * (duration + 40) + 60,
        )
        rows[mode] = _rows(work / "results-target.json")[0]
        if tree_ticks:
            rows[mode]["parts_ticks"] = {
                name: tree_ticks(pid) - before[name] for name, pid in parts.items()
            }
    return rows


def listener_rows(work: Path, duration: int, reps: int) -> Rows:
    port = free_port()
    argv = [sys.executable, __file__, "--serve", str(port), "--pki", str(work / "pki")]
    with started(argv, work / "logs" / "tls-listener.log", (port,)) as pid:
        return target_rows(work, f"https://127.0.0.1:{port}/", pid, duration, reps)


# --- Certbound's request path -----------------------------------------------------------


def _toml(value: str | list[str]) -> str:
    return json.dumps(value)  # a JSON string or list of strings is valid TOML


def write_certbound_config(root: Path, settings: Mapping[str, str | list[str]]) -> Path:
    """A fresh ``root`` with ``certbound.toml`` (SQLite database ``root/certbound.db``)."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    lines = ['data_dir = "state"', 'database_url = "sqlite:///certbound.db"']
    lines += [f"{key} = {_toml(value)}" for key, value in settings.items()]
    config = root / "certbound.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def certbound_cli(config: Path, *args: str) -> str:
    """Run ``certbound --config config ARGS``; its stdout (raises on a non-zero exit)."""
    done = subprocess.run(
        [*CERTBOUND, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"certbound {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def trust_device_ca(config: Path, pki: Path) -> None:
    """Upload the harness's EC device CA chain (intermediate + root), revocation off."""
    chain = str(pki / "ec" / "cas.pem")
    certbound_cli(config, "ca", "add", chain, "--name", "bench-ec", "--revocation-mode", "off")


def echo_once(port: int, pki: Path) -> dict[str, Any]:
    """One echo request as device-001 (leaf + intermediate) over TLS; the decoded answer."""
    context = ssl.create_default_context(cafile=str(pki / "roots.pem"))
    context.load_cert_chain(pki / "ec" / "device-001-chain.pem", pki / "ec" / "device-001.key")
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("GET", ECHO_PATH)
        response = connection.getresponse()
        body: dict[str, Any] = json.loads(response.read())
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"echo answered {response.status}: {body}")
    return body


def check_echo(body: Mapping[str, Any], path: str, header_format: str | None) -> str:
    """Raise unless the device was verified over intake ``path``; a one-line summary."""
    intake = body["intake"]
    seen = (body["verdict"], intake["path"], intake["headerFormat"], intake["trustedHop"])
    if seen != ("ALLOW", path, header_format, True):
        raise RuntimeError(f"the echo request was not verified as expected: {body}")
    device = body["device"] or {}
    return (
        f"verdict {body['verdict']}, intake path {intake['path']} (header "
        f"{intake['headerFormat']}), {intake['certificates']} certificate(s), device "
        f"{device.get('id')} ({device.get('user')})"
    )


@dataclass
class EventTally:
    """The ``device.trust.verify`` events one Certbound wrote, against the requests sent."""

    server: str
    outcomes: dict[str, int]
    measured_requests: int
    recent: list[dict[str, Any]] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(self.outcomes.values())

    def problems(self) -> list[str]:
        found = []
        if self.outcomes.get("SUCCESS", 0) != self.events:
            found.append(f"{self.server}: events not all SUCCESS: {self.outcomes}")
        if self.events < self.measured_requests + 1:  # + the sanity request
            found.append(
                f"{self.server}: {self.events} {VERIFY_EVENT} events for "
                f"{self.measured_requests} measured requests"
            )
        if not any(e.get("outcome", {}).get("result") == "SUCCESS" for e in self.recent):
            found.append(f"{self.server}: `certbound log` shows no SUCCESS {VERIFY_EVENT}")
        return found


def tally_events(server: str, root: Path, config: Path, rows: Rows) -> EventTally:
    """Count the events in ``root/certbound.db`` (the server has stopped) and read the first
    five through ``certbound log --json``."""
    from sqlalchemy import func, select

    from certbound.storage.database import Database
    from certbound.storage.models import LogEvent

    database = Database(f"sqlite:///{root / 'certbound.db'}")
    query = (
        select(LogEvent.outcome_result, func.count())
        .where(LogEvent.event_type == VERIFY_EVENT)
        .group_by(LogEvent.outcome_result)
    )
    try:
        with database.session() as session:
            outcomes = {str(result): int(count) for result, count in session.execute(query)}
    finally:
        database.dispose()
    measured = sum(run["ok"] + run["errors"] for row in rows.values() for run in row["runs"])
    text = certbound_cli(
        config, "log", "--json", "--limit", "5", "--filter", f'eventType eq "{VERIFY_EVENT}"'
    )
    recent = [json.loads(line) for line in text.splitlines() if line.strip()]
    return EventTally(server, outcomes, measured, recent)


def tls_server_config(work: Path, name: str) -> tuple[Path, Path, int]:
    """A ``certbound serve`` config in ``work/name`` for the built-in TLS listener on a free
    port, with the harness's server certificate and its device CA trusted:
    (config, root, port)."""
    pki, root, port = work / "pki", work / name, free_port()
    config = write_certbound_config(
        root,
        {
            "tls_listen": f"127.0.0.1:{port}",
            "tls_cert_file": str(pki / "server.pem"),
            "tls_key_file": str(pki / "server.key"),
        },
    )
    trust_device_ca(config, pki)
    return config, root, port


def echo_rows(work: Path, duration: int, reps: int) -> tuple[Rows, EventTally]:
    """``certbound serve`` on its built-in TLS listener, the echo URL."""
    pki = work / "pki"
    config, root, port = tls_server_config(work, "certbound-tls")
    argv = [*CERTBOUND, "--config", str(config), "serve"]
    with started(argv, root / "serve.log", (port,)) as pid:
        print(f"tls_bench: built-in TLS sanity: {check_echo(echo_once(port, pki), 'tls', None)}")
        url = f"https://127.0.0.1:{port}{ECHO_PATH}"
        rows = target_rows(work, url, pid, duration, reps)
    return rows, tally_events("built-in TLS", root, config, rows)


# --- proxy mode: nginx in front of Certbound -----------------------------------------------


def proxy_nginx_conf(prefix: Path, pki: Path, port: int, upstream_port: int) -> str:
    """docs/deploy/nginx.conf with the bench's paths and ports (one worker, loopback)."""
    temp = " ".join(
        f"{kind}_temp_path {prefix}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    swaps = [
        # As root, workers would switch to www-data, which cannot open the work dir's files.
        ("user www-data;", "user root root;" if os.geteuid() == 0 else ""),
        ("worker_processes auto;", "worker_processes 1;"),  # as the harness's nginx
        ("pid /run/nginx.pid;", f"pid {prefix}/nginx.pid;"),
        ("error_log /var/log/nginx/error.log;", f"error_log {prefix}/error.log warn;"),
        # keepalive_requests as the harness's nginx: no reconnects in the keep-alive row.
        (
            "access_log /var/log/nginx/access.log;",
            f"access_log {prefix}/access.log; keepalive_requests 1000000; {temp}",
        ),
        ("server unix:/run/certbound/http.sock;", f"server 127.0.0.1:{upstream_port};"),
        ("keepalive 16;", f"keepalive {UPSTREAM_KEEPALIVE}; keepalive_requests 1000000;"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
        ("listen [::]:443 ssl;", ""),
        ("/etc/certbound/tls/server.pem", str(pki / "server.pem")),
        ("/etc/certbound/tls/server.key", str(pki / "server.key")),
        ("/etc/certbound/device-ca.pem", str(pki / "ec" / "cas.pem")),
    ]
    conf = DEPLOY_NGINX.read_text()
    for old, new in swaps:
        if old not in conf:
            raise RuntimeError(f"{DEPLOY_NGINX.relative_to(REPO)} no longer holds {old!r}")
        conf = conf.replace(old, new)
    return conf


def _group_spec(root: Path, config: Path, pki: Path, ports: tuple[int, int]) -> Path:
    """The ``--group`` plan: ``certbound serve`` and nginx (on ``ports``: TLS, upstream)."""
    prefix = root / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    (prefix / "nginx.conf").write_text(proxy_nginx_conf(prefix, pki, *ports))
    nginx = [shutil.which("nginx") or "nginx", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf")]
    nginx += ["-e", str(prefix / "error.log"), "-g", "daemon off;"]
    children = [
        {"argv": [*CERTBOUND, "--config", str(config), "serve"], "log": str(root / "serve.log")},
        {"argv": nginx, "log": str(prefix / "console.log")},
    ]
    spec = root / "group.json"
    spec.write_text(json.dumps({"children": children, "pids": str(root / "pids.json")}))
    return spec


def proxy_rows(work: Path, duration: int, reps: int) -> tuple[Rows, EventTally]:
    """nginx -> ``certbound serve`` over loopback HTTP, the echo URL through nginx."""
    pki, root = work / "pki", work / "certbound-proxy"
    port, upstream_port = free_port(), free_port()
    config = write_certbound_config(
        root,
        {
            "tls_listen": "",
            "http_listen": f"127.0.0.1:{upstream_port}",
            "trusted_proxies": ["127.0.0.1/32"],
            "proxy_header": "nginx",
        },
    )
    trust_device_ca(config, pki)
    spec = _group_spec(root, config, pki, (port, upstream_port))
    argv = [sys.executable, __file__, "--group", str(spec)]
    with started(argv, work / "logs" / "proxy-group.log", (upstream_port, port)) as pid:
        certbound_pid, nginx_pid = json.loads((root / "pids.json").read_text())
        summary = check_echo(echo_once(port, pki), "proxy", "nginx")
        print(f"tls_bench: proxy-mode sanity: {summary}")
        url = f"https://127.0.0.1:{port}{ECHO_PATH}"
        parts = {"nginx": nginx_pid, "certbound": certbound_pid}
        rows = target_rows(work, url, pid, duration, reps, parts=parts)
    return rows, tally_events("proxy mode", root, config, rows)


# --- the report -------------------------------------------------------------------------


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None, reference: float | None) -> float | None:
    return value / reference if value and reference else None


def _diff(value: float | None, reference: float | None) -> str:
    return "-" if value is None or reference is None else f"{value - reference:+.3f} ms"


def print_table(results: Mapping[str, Rows]) -> None:
    print()
    print(
        "| server | operation | c | srv ms/op | vs nginx | rate/s | conn/req (kern) "
        "| other CPU% | err |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, label in MODES.items():
        reference = results["nginx"][mode]["srv_ms_op"]
        for server, name in SERVERS.items():
            row = results[server][mode]
            ratio = _ratio(row["srv_ms_op"], reference)
            print(
                f"| {name} | {label} | {row['c']} | {_fmt(row['srv_ms_op'], 3)} | "
                f"{_fmt(ratio, 2)}x | {_fmt(row['rate'], 0)} | "
                f"{_fmt(row['kern_conn_per_req'], 3)} | {_fmt(row['other_cpu'], 0)} | "
                f"{row['errors']} |"
            )


def listener_misses(results: Mapping[str, Rows]) -> list[str]:
    """The bare listener's targets (``--check``)."""
    missed = []
    new, nginx_new = results["listener"]["new"]["srv_ms_op"], results["nginx"]["new"]["srv_ms_op"]
    keepalive = results["listener"]["keepalive"]["srv_ms_op"]
    if new is None or nginx_new is None or new > nginx_new:
        missed.append(f"listener full handshake: {_fmt(new, 3)} ms > nginx {_fmt(nginx_new, 3)} ms")
    if keepalive is None or keepalive > KEEPALIVE_TARGET_MS:
        missed.append(f"listener keep-alive: {_fmt(keepalive, 3)} ms > {KEEPALIVE_TARGET_MS} ms")
    return missed


def invalid_rows(results: Mapping[str, Rows]) -> list[str]:
    """Rows that did not measure what they claim: not one connection per new request, or
    errors."""
    low, high = ONE_CONNECTION_PER_REQUEST
    found = []
    for server, name in SERVERS.items():
        per = results[server]["new"]["kern_conn_per_req"]
        if per is None or not low <= per <= high:
            found.append(f"{name}: {_fmt(per, 3)} TCP connections per request, not 1")
        for mode in MODES:
            if results[server][mode]["errors"]:
                found.append(f"{name} {mode}: {results[server][mode]['errors']} errors")
    return found


def print_proxy_split(rows: Rows) -> None:
    for mode, label in MODES.items():
        ticks = rows[mode].get("parts_ticks") or {}
        total = sum(ticks.values())
        if not total:
            continue
        ms = rows[mode]["srv_ms_op"] or 0.0
        shares = ", ".join(
            f"{name} {100 * part / total:.0f}% (~{ms * part / total:.3f} ms)"
            for name, part in ticks.items()
        )
        print(f"  proxy {label}: {shares}")


def print_summary(results: Mapping[str, Rows]) -> None:
    def ms(server: str, mode: str) -> float | None:
        value: float | None = results[server][mode]["srv_ms_op"]
        return value

    print()
    ratio = _ratio(ms("listener", "new"), ms("nginx", "new"))
    print(f"bare listener full handshake vs nginx: {_fmt(ratio, 2)}x")
    ratio = _ratio(ms("echo", "new"), ms("nginx", "new"))
    print(f"built-in full handshake+echo vs nginx: {_fmt(ratio, 2)}x")
    print(
        f"keep-alive echo: {_fmt(ms('echo', 'keepalive'), 3)} ms (target <= {KEEPALIVE_TARGET_MS})"
    )
    for mode, label in (("new", "new connection"), ("keepalive", "keep-alive")):
        proxy = ms("proxy", mode)
        print(
            f"proxy mode overhead, {label}: nginx + Certbound HTTP {_fmt(proxy, 3)} ms/req: "
            f"{_diff(proxy, ms('echo', mode))} vs Certbound built-in TLS "
            f"({_fmt(ms('echo', mode), 3)} ms), {_diff(proxy, ms('nginx', mode))} vs nginx "
            f"alone, return 200 ({_fmt(ms('nginx', mode), 3)} ms)"
        )
    print("proxy mode CPU split, each whole harness call (warm-up included):")
    print_proxy_split(results["proxy"])


def print_events(tallies: list[EventTally]) -> None:
    print()
    for tally in tallies:
        print(
            f"System Log, {tally.server}: {tally.events} {VERIFY_EVENT} events "
            f"({', '.join(f'{k} {v}' for k, v in sorted(tally.outcomes.items()))}) for "
            f"{tally.measured_requests} requests in the measured windows (the 1 s warm-ups, "
            "in-flight requests at the end and the sanity request add events)"
        )
        seen = Counter(
            f"{event['eventType']} {event['outcome']['result']} (intake path "
            f"{event.get('deviceTrust', {}).get('intake', {}).get('path')}, actor "
            f"{event['actor']['alternateId']})"
            for event in tally.recent
        )
        for line, count in seen.items():
            print(f"  certbound log --json --limit 5: {count} x {line}")


def report(results: Mapping[str, Rows], tallies: list[EventTally]) -> list[str]:
    """Print the table and the summary; return what ``--check`` fails on."""
    print_table(results)
    print_summary(results)
    print_events(tallies)
    missed = listener_misses(results) + invalid_rows(results)
    missed += [problem for tally in tallies for problem in tally.problems()]
    print()
    print(
        f"targets: bare listener full handshake <= nginx, keep-alive <= {KEEPALIVE_TARGET_MS} "
        "ms (checked); new-connection rows at 1.0 connection/request, no errors, one SUCCESS "
        "event per echo request (checked); echo rows: full handshake+echo <= nginx, keep-alive "
        f"echo <= {KEEPALIVE_TARGET_MS} ms (printed, not checked)"
    )
    for item in missed:
        print(f"MISSED: {item}")
    return missed


# --- main -------------------------------------------------------------------------------


def interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # runs every finally: servers stop by pid


def measure(work: Path, duration: int, reps: int) -> int:
    started = time.monotonic()
    results: dict[str, Rows] = {"nginx": nginx_rows(work, duration, reps)}
    results["listener"] = listener_rows(work, duration, reps)
    results["echo"], echo_events = echo_rows(work, duration, reps)
    results["proxy"], proxy_events = proxy_rows(work, duration, reps)
    missed = report(results, [echo_events, proxy_events])
    print(f"\ntls_bench took {time.monotonic() - started:.0f} s")
    return len(missed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per rep (max 60)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work", type=Path, help="the harness's work dir, kept (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--group", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve, args.pki)
        return 0
    if args.group is not None:
        return run_group(args.group)
    if not (SHARED_BENCH / "bench.py").is_file():
        print(
            f"tls_bench: the shared harness is absent: expected ../shared/bench beside the "
            f"repository ({SHARED_BENCH}); this benchmark drives it and has no generator of "
            "its own",
            file=sys.stderr,
        )
        return 2
    missing = need_tools()
    if missing:
        print(
            f"tls_bench: missing tools: {missing} (see ../shared/bench/README.md)", file=sys.stderr
        )
        return 2
    signal.signal(signal.SIGTERM, interrupt)
    duration, reps = max(1, min(args.duration, 60)), max(1, args.reps)
    work = args.work or Path(tempfile.mkdtemp(prefix="certbound-tls-bench-"))
    print(f"tls_bench: work dir {work}; {duration} s x {reps} reps per row", flush=True)
    try:
        prepare(work)
        missed = measure(work, duration, reps)
    finally:
        if args.work is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"tls_bench: harness output kept in {work}")
    return 1 if missed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
