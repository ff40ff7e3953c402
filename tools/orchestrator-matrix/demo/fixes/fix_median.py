"""DEMO-1's worker: the fix a developer would make to stats.median for even-length lists."""

from pathlib import Path

BUGGY = "    return ordered[middle]\n"
FIXED = (
    "    if len(ordered) % 2:\n"
    "        return ordered[middle]\n"
    "    return (ordered[middle - 1] + ordered[middle]) / 2\n"
)


def main() -> None:
    """Rewrite stats.py in the current folder with the fixed median."""
    source = Path("stats.py")
    source.write_text(source.read_text().replace(BUGGY, FIXED))


if __name__ == "__main__":
    main()
