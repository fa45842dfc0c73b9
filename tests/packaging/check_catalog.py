#!/usr/bin/env python3
"""check_catalog.py FILE EXPECTED_JSON - compares the jsonfile plugin's output
with the expected document: exits 0 when equal, else prints the difference."""
import json
import sys

path, expected = sys.argv[1], json.loads(sys.argv[2])
try:
    with open(path, encoding="utf-8") as f:
        got = json.load(f)
except (OSError, ValueError) as e:
    print(f"{path}: {e}")
    sys.exit(1)
if got != expected:
    print(f"{path}: got {json.dumps(got, sort_keys=True)}")
    print(f"{path}: expected {json.dumps(expected, sort_keys=True)}")
    sys.exit(1)
