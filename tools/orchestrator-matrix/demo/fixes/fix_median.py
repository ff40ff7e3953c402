"""DEMO-1's worker: the fix a developer would make to stats.median for even-length lists."""

from pathlib import Path

source = Path("stats.py")
text = source.read_text()
buggy = "    return ordered[middle]\n"
fixed = (
    "    if len(ordered) % 2:\n"
    "        return ordered[middle]\n"
    "    return (ordered[middle - 1] + ordered[middle]) / 2\n"
)
source.write_text(text.replace(buggy, fixed))
