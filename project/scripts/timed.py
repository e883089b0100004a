"""Run a command and record its wall time: ``python scripts/timed.py OUT.json COMMAND [ARGS...]``.

The JSON (``{"step", "seconds", "cpu_seconds", "load_average", "command", "finished"}``) is
written only if the command succeeds,
so a failed step leaves no output behind and is re-run. The exit code is the command's.
A leading ``python`` is replaced by this interpreter, as weasel does for project commands.
"""
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def main(argv) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out, command = Path(argv[0]), list(argv[1:])
    if command[0] in ("python", "python3"):
        command[0] = sys.executable
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    code = subprocess.call(command)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if code:
        print(f"timed.py: command failed with exit code {code} after {seconds:.0f}s", file=sys.stderr)
        return code
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "step": out.stem,
        "seconds": round(seconds, 1),
        # CPU time of the command (all threads); with other jobs on the machine, wall time grows
        # but this does not. The 1/5/15-minute load averages at the end show the contention.
        "cpu_seconds": round(cpu_seconds, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "command": command[1:] if command[0] == sys.executable else command,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    out.write_text(json.dumps(record, indent=2) + "\n", "utf-8")
    print(f"timed.py: {out.stem} took {seconds:.0f}s wall, {cpu_seconds:.0f}s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
