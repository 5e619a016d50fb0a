"""Measure what a student costs a JupyterHub or Binder node: each notebook of the course
run top to bottom in a fresh kernel, then the kernel's memory read from /proc.

    PYTHONPATH=. python course/measure_memory.py            # every notebook
    PYTHONPATH=. python course/measure_memory.py 00 05      # some of them

Prints one Markdown table: the kernel's resident memory (VmRSS) after Run All, its peak
(VmHWM), and the same for an empty kernel, so the difference is what the course adds
(the world, its servers, the widgets, matplotlib). Linux only (/proc).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import json\n"
         "_f = dict(l.split(':', 1) for l in open('/proc/self/status') if ':' in l)\n"
         "print(json.dumps({k: int(_f[k].split()[0]) for k in ('VmRSS', 'VmHWM')}))")


def measure(cells: list[str], directory: Path) -> tuple[dict[str, int], float]:
    """Run ``cells`` then the probe in a fresh kernel: ({VmRSS, VmHWM} in kB, seconds)."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(c) for c in [*cells, PROBE]]
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(directory)}})
    start = time.perf_counter()
    client.execute()
    took = time.perf_counter() - start
    text = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    return json.loads(text.strip().splitlines()[-1]), took


def main(argv: list[str]) -> int:
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    if argv:
        paths = [p for p in paths if p.name[:2] in argv]
    empty, _ = measure([], ROOT)
    print(f"Machine: {sys.platform}, Python {sys.version.split()[0]}; "
          f"{time.strftime('%Y-%m-%d')}\n")
    print("| notebook | kernel RSS after Run All (MB) | kernel peak (MB) | "
          "added to an empty kernel (MB) | seconds |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| (empty kernel) | {empty['VmRSS'] / 1024:.0f} | {empty['VmHWM'] / 1024:.0f} "
          "| 0 | |")
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        cells = [c.source for c in notebook.cells if c.cell_type == "code"]
        found, took = measure(cells, path.parent)
        print(f"| {path.stem} | {found['VmRSS'] / 1024:.0f} | {found['VmHWM'] / 1024:.0f} | "
              f"{(found['VmHWM'] - empty['VmHWM']) / 1024:.0f} | {took:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
