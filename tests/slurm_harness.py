"""A real Slurm cluster on 127.0.0.1 for the Slurm tests (issue 24, section 4).

``make slurm`` installs Debian's ``slurm-wlm``, ``slurmctld``, ``slurmd``, ``slurm-client`` and
``munge`` with apt-get when it runs as root (elsewhere the Slurm tests skip, saying why).
:class:`SlurmCluster` then writes everything a cluster needs into one temporary folder -- a
test-sized ``slurm.conf`` (found through ``SLURM_CONF``; nothing
under /etc/slurm), spool, state and logs; the munge key and socket in a folder of their own under /tmp -- and starts ``munged``, one ``slurmctld`` and
``nodes`` ``slurmd -N nX`` on free loopback ports, each in the foreground as a child of the
test, so it is stopped by its PID and reaped. Facts it relies on were measured here
(``../shared/reference/scale-out-engines.md``): the daemons run as root, are up in about a
second, and ``scontrol show job`` holds a job's state and exit code (``sacct`` without
slurmdbd reads the job-completion file with ``-c``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Self  # Python 3.11; the tests may run on 3.10

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "sacct")
START_SECONDS = 90  # about a second when idle; bounded generously for a busy machine

CONFIG = """\
ClusterName=macptest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge}/socket
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool/%n
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd-%n.pid
SlurmctldLogFile={dir}/log/slurmctld.log
SlurmdLogFile={dir}/log/slurmd-%n.log
SlurmctldPort={ctld_port}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobCompType=jobcomp/filetxt
JobCompLoc={dir}/log/jobcomp.log
AccountingStorageType=accounting_storage/none
ReturnToService=2
MinJobAge=300
KillWait=2
InactiveLimit=0
MpiDefault=none
SlurmdTimeout=20
{nodes}
PartitionName=macp Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def why_not_here() -> str | None:
    """Why no cluster can run on this machine (a reason for ``pytest.skip``), or None."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None and not Path("/usr/sbin", name).exists()]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing): run 'make slurm' as root on Debian"
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root (SlurmUser=root); run the tests as root"
    return None


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports free on 127.0.0.1 now (held open together, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def daemon(name: str) -> str:
    """The path of a daemon, on PATH or in /usr/sbin (not on a plain user's PATH)."""
    return shutil.which(name) or str(Path("/usr/sbin", name))


class SlurmCluster:
    """A one-host cluster with ``nodes`` nodes (``n1``, ``n2``, ...) of ``cpus`` CPUs each,
    in ``folder``. Use as a context manager; :attr:`env` is what a client needs
    (``SLURM_CONF``)."""

    def __init__(self, folder: Path, nodes: int = 2, cpus: int = 2) -> None:
        self.folder = folder
        self.node_names = [f"n{number}" for number in range(1, nodes + 1)]
        self.cpus = cpus
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
        # munged wants every folder above its socket searchable by all, which a test's
        # temporary folder is not (0700): its own folder goes directly under /tmp
        self.munge = Path(tempfile.mkdtemp(prefix="macp-munge-", dir="/tmp"))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_config(self) -> None:
        """The munge key and the cluster's folders and ``slurm.conf``."""
        munge = self.munge
        for sub in ("state", "log", *(f"spool/{name}" for name in self.node_names)):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        munge.chmod(0o711)
        key = munge / "key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        ctld_port, *node_ports = free_ports(1 + len(self.node_names))
        host = socket.gethostname()
        nodes = "\n".join(
            f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs={self.cpus} State=UNKNOWN"
            for name, port in zip(self.node_names, node_ports, strict=True)
        )
        (self.folder / "slurm.conf").write_text(CONFIG.format(host=host, dir=self.folder, munge=munge, ctld_port=ctld_port, nodes=nodes))

    def start(self) -> None:
        """Start munged, slurmctld and every slurmd in the foreground; wait until every node
        is idle. Raises RuntimeError (with the logs' tails) when the cluster does not come up."""
        self.write_config()
        munge = self.munge
        self._spawn("munged", [daemon("munged"), "--foreground", f"--socket={munge / 'socket'}", f"--key-file={munge / 'key'}",
                               f"--pid-file={munge / 'pid'}", f"--log-file={munge / 'log'}", f"--seed-file={munge / 'seed'}"])
        self._wait_for((munge / "socket").exists, "munged's socket")
        self.start_daemon("slurmctld")
        for name in self.node_names:
            self.start_daemon(name)
        self._wait_for(lambda: self.node_states() == dict.fromkeys(self.node_names, "idle"), "every node idle")

    def start_daemon(self, name: str) -> None:
        """Start ``slurmctld`` or node ``name``'s slurmd (again) in the foreground."""
        self._spawn(name, [daemon("slurmctld"), "-D"] if name == "slurmctld" else [daemon("slurmd"), "-D", "-N", name])

    def stop_daemon(self, name: str) -> None:
        """Stop one daemon this cluster started with SIGTERM (a clean shutdown: slurmctld saves
        its state) and reap it."""
        process = self.processes.pop(name)
        process.terminate()
        process.wait(timeout=60)

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.folder / "log" / f"{name}.out").open("ab")
        self.processes[name] = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def _wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [name for name, process in self.processes.items() if process.poll() is not None]
            if dead:
                break
            time.sleep(0.2)
        logs = [*sorted((self.folder / "log").glob("*")), self.munge / "log"]
        tails = "\n".join(f"{path.name}: {path.read_text(errors='replace')[-400:]}" for path in logs if path.is_file())
        self.stop()
        raise RuntimeError(f"the test cluster did not come up ({what}):\n{tails}")

    def node_states(self) -> dict[str, str]:
        """``{node: state}`` as ``sinfo`` reports them (``idle``, ``alloc``, ``down*``, ...)."""
        proc = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False)
        return dict(line.split() for line in proc.stdout.splitlines() if len(line.split()) == 2)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster."""
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=60, check=check)

    def job_state(self, job_id: str) -> tuple[str, str]:
        """``(JobState, ExitCode)`` of ``job_id`` from ``scontrol show job`` (``FAILED``, ``3:0``)."""
        fields = dict(part.split("=", 1) for part in self.run("scontrol", "show", "job", job_id).stdout.split() if "=" in part)
        return fields["JobState"], fields["ExitCode"]

    def stop(self) -> None:
        """Stop every daemon this cluster started, by PID (SIGTERM, then SIGKILL after 10
        seconds), nodes first, munged last; reap them."""
        order = [*self.node_names, "slurmctld", "munged"]
        for name in order:
            process = self.processes.get(name)
            if process is not None and process.poll() is None:
                process.terminate()
        for name in order:
            process = self.processes.pop(name, None)
            if process is None:
                continue
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(self.munge, ignore_errors=True)
