#!/usr/bin/env python3
"""An offline coding agent for the demo: applies the ```diff block of its brief and commits.

Reads the prompt on stdin (as ``mosaic yolo`` passes it), runs ``git apply --index`` on the
first fenced ``diff`` block in the current folder, commits with the brief's heading as the
message, and leaves a report at ``$MACP_REPORT``. Exit 0 on success, 1 when the brief has no
patch or it does not apply. Needs no network and no account.
"""

import json
import os
import re
import subprocess
import sys


def main() -> int:
    prompt = sys.stdin.read()
    match = re.search(r"^```diff\n(.*?)^```", prompt, re.DOTALL | re.MULTILINE)
    if not match:
        print("offline-agent: the brief contains no ```diff block to apply", file=sys.stderr)
        return 1
    heading = next((line.lstrip("# ").strip() for line in prompt.splitlines() if line.startswith("#")), "apply patch")
    applied = subprocess.run(["git", "apply", "--index", "-"], input=match.group(1), text=True, capture_output=True, check=False)
    if applied.returncode != 0:
        print(f"offline-agent: patch does not apply: {applied.stderr.strip()}", file=sys.stderr)
        return 1
    subprocess.run(["git", "commit", "-q", "-m", heading], check=True)
    files = subprocess.run(["git", "diff", "--name-only", "HEAD~1"], capture_output=True, text=True, check=True).stdout.split()
    print(f"offline-agent: applied the patch from the brief and committed: {heading}")
    if os.environ.get("MACP_REPORT"):
        with open(os.environ["MACP_REPORT"], "w", encoding="utf-8") as report:
            json.dump({"summary": f"applied the brief's patch ({', '.join(files)})", "files_changed": files}, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
