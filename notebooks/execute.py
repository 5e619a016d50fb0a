"""Execute the course notebooks the one right way, and store them with their outputs.

    python notebooks/execute.py                  # every notebook
    python notebooks/execute.py 02 05            # only these (numbers or file names)
    python notebooks/execute.py examples/lab.ipynb   # a notebook of your own (a path)

Each notebook runs top to bottom in a fresh kernel of the Python running this script, in
``notebooks/`` (where it writes its capture files), importing *this* checkout's simsmtp.
The state of every widget is stored in the notebook (``store_widget_state``), so a notebook
opened fresh shows each widget as executed; cell timings are not recorded, so a run changes
only what truly changed. Then check with ``python -m pytest notebooks`` (strict nbval).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: Seconds one cell may run (the whole course takes well under two minutes).
CELL_TIMEOUT = 120


def notebooks(wanted: list[str]) -> list[Path]:
    """The notebooks named in ``wanted`` ("02", "02_smtp_conversation.ipynb"), or all."""
    found = sorted(HERE.glob("[0-9][0-9]*_*.ipynb"))
    if not wanted:
        return found
    paths = [Path(w) for w in wanted if w.endswith(".ipynb") and Path(w).is_file()]
    if paths:  # notebooks of one's own, given by path (an instructor's lab)
        if len(paths) != len(wanted):
            raise SystemExit("execute.py: give either paths of notebooks or course numbers")
        return [p.resolve() for p in paths]
    chosen = [p for p in found if any(p.name.startswith(w.removesuffix(".ipynb"))
                                      for w in wanted)]
    missing = [w for w in wanted if not any(p.name.startswith(w.removesuffix(".ipynb"))
                                            for p in found)]
    if missing:
        raise SystemExit(f"execute.py: no notebook named {', '.join(missing)} in {HERE}")
    return chosen


def execute(path: Path) -> float:
    """Run ``path`` in a fresh kernel, store it with outputs and widget state; seconds."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            store_widget_state=True, record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    nbformat.write(notebook, path)
    return seconds


def main(argv: list[str]) -> int:
    # the kernels import this checkout's simsmtp, whatever else is installed
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    total = 0.0
    for path in notebooks(argv):
        seconds = execute(path)
        total += seconds
        print(f"{path.name}: {seconds:.1f} s", flush=True)
    print(f"done in {total:.1f} s; now check: python -m pytest notebooks")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
