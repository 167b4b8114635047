"""No orphans of a private Ray instance: a small watcher process ends its processes when the driver dies.

Ray ends its GCS and raylet with the driver, but the raylet's dashboard and runtime-env agents poll
for their parent and outlive a `kill -9` of the driver by a minute or more (measured: both still
alive 30 s later, Ray 2.60). The watcher notes the driver's Ray descendants every second while it
lives, and kills those still running as soon as the driver is gone without saying "done".
"""

from __future__ import annotations

import os
import subprocess
import sys

_WATCHER = r"""
import os, select, signal, sys
driver = int(sys.argv[1])

def processes():
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    command = f.read()
            except OSError:
                continue
            table[int(name)] = (int(fields[1]), fields[19], command)  # parent, start time, command line
    return table

def ray_descendants(table):
    found, frontier = {}, {driver}
    while frontier:
        children = {pid for pid, (parent, _, _) in table.items() if parent in frontier and pid != os.getpid()}
        frontier = children - set(found)
        for pid in frontier:
            found[pid] = table[pid]
    return {pid: start for pid, (_, start, command) in found.items() if b"ray" in command}

known = {}
while True:
    ready, _, _ = select.select([sys.stdin], [], [], 1.0)
    if ready:
        line = sys.stdin.readline()
        if line.strip() == "done":
            sys.exit(0)
        if not line:
            break
    known.update(ray_descendants(processes()))
table = processes()
for pid, start in known.items():
    if pid in table and table[pid][1] == start:  # the same process, not a new one with a reused id
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


class Reaper:
    """The watcher of one private Ray instance; `done()` when the instance was shut down as usual."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        if not os.path.isdir("/proc"):  # not Linux: Ray's own clean-up only
            return
        self.process = subprocess.Popen([sys.executable, "-c", _WATCHER, str(os.getpid())], stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

    def done(self) -> None:
        if self.process is None:
            return
        try:
            self.process.stdin.write(b"done\n")
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process = None
