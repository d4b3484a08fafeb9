"""Where a result came from: the code's commit, the library versions, the machine, the command."""
from __future__ import annotations

import contextlib
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

#: distributions whose versions are recorded (import name -> distribution name)
LIBRARIES = {"numpy": "numpy", "scipy": "scipy", "scikit-learn": "scikit-learn", "torch": "torch"}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` reports)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def code_commit() -> tuple[str | None, bool]:
    """The git commit of this package's code when it runs from a git checkout (an editable
    install), and whether its tracked code (``synergy_bench/``, ``generators/``) differs from
    that commit; ``(None, False)`` outside a checkout."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=30)

    try:
        if git("ls-files", "--error-unmatch", "__init__.py").returncode:
            return None, False  # not a tracked checkout of this package
        head = git("rev-parse", "HEAD").stdout.strip()
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", "../generators").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, False
    return (head, bool(dirty)) if head else (None, False)


def commit_label(commit: str | None, dirty: bool) -> str:
    """How a row names its code: the commit, ``+dirty`` where the tree differed, ``unknown``
    outside a checkout."""
    return (commit or "unknown") + ("+dirty" if dirty else "")


def versions() -> dict[str, str | None]:
    """python and the versions of the libraries that decide the numbers (None: not installed)."""
    from synergy_bench import __version__

    out: dict[str, str | None] = {"version": __version__, "python": platform.python_version()}
    for key, dist in LIBRARIES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def record(command: str, **fields: Any) -> dict[str, Any]:
    """One invocation's provenance: when, the command, the commit (and whether the tree was
    dirty), the versions, the CPU, and ``fields`` (e.g. the device)."""
    commit, dirty = code_commit()
    return {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
            "commit": commit, "dirty": dirty, **versions(), "cpu": cpu_model(),
            "platform": f"{platform.system()} {platform.machine()}",
            **fields}
