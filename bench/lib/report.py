#!/usr/bin/env python3
"""report.py - turn a bench's result rows into a printed table, CSV and Markdown.

  report.py ROWS.jsonl CSV MD TITLE [MACHINE.txt]

ROWS.jsonl holds one JSON object per row with any of the fields in COLS (missing = empty).
The printed and Markdown tables show only the columns some row fills.  `missed` is "MISSED"
where the row's target was not met, "met" where it was, empty where the row has no target.
"""
import csv
import json
import sys

COLS = ["bench", "section", "metric", "n", "p50", "p90", "p99", "max", "value", "unit",
        "target", "missed", "note"]
SHOW = ["section", "metric", "n", "p50", "p90", "p99", "max", "value", "unit", "target",
        "missed", "note"]


def fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return "%.0f" % v
        if abs(v) >= 10:
            return "%.1f" % v
        return "%.2f" % v
    return str(v)


def main():
    rows_f, csv_f, md_f, title = sys.argv[1:5]
    machine = open(sys.argv[5]).read().strip() if len(sys.argv) > 5 else ""
    rows = [json.loads(l) for l in open(rows_f) if l.strip()]
    with open(csv_f, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLS)
        for r in rows:
            w.writerow([fmt(r.get(c)) for c in COLS])
    cols = [c for c in SHOW if any(r.get(c) not in (None, "") for r in rows)]
    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(x[i]) for x in cells]) for i, c in enumerate(cols)]
    print(title)
    print("  ".join(c.ljust(widths[i]) for i, c in enumerate(cols)))
    print("  ".join("-" * widths[i] for i in range(len(cols))))
    for x in cells:
        print("  ".join(v.ljust(widths[i]) for i, v in enumerate(x)))
    with open(md_f, "w") as f:
        f.write("### %s\n\n" % title)
        if machine:
            f.write(machine + "\n\n")
        f.write("| " + " | ".join(cols) + " |\n")
        f.write("|" + "|".join("---" for _ in cols) + "|\n")
        for x in cells:
            f.write("| " + " | ".join(v.replace("|", "\\|") for v in x) + " |\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
