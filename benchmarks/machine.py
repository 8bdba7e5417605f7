"""What the benchmark ran on, for the head of results.md."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path


def cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` in /proc/cpuinfo text (``unknown`` if there is none)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return "unknown"


def os_name(os_release: str) -> str:
    """``PRETTY_NAME`` from /etc/os-release text."""
    for line in os_release.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "unknown"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _tool_version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def machine_info() -> dict[str, str]:
    """CPU, cores, OS, Python, ONNX Runtime, load generators, date and current load."""
    import onnxruntime

    load = os.getloadavg()
    return {
        "cpu": cpu_model(_read("/proc/cpuinfo")),
        "cores": str(os.cpu_count()),
        "os": f"{os_name(_read('/etc/os-release'))}, Linux {platform.release()}",
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "wrk": _tool_version(["wrk", "--version"]).split(" Copyright")[0],
        "h2load": _tool_version(["h2load", "--version"]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_before": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }
