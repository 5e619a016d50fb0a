#!/usr/bin/env python3
"""Run the simsmtp course, or its tests, on a fresh machine: one command each.

    python3 course.py              # set up .venv, then open notebook 0 in JupyterLab
    python3 course.py test         # set up .venv with the test tools, then python -m pytest
    python3 course.py test -x tests/ui        # arguments go to pytest
    python3 course.py python -m mypy          # any command with the .venv's Python

Everything goes into a virtual environment, ``.venv`` next to this file: Debian 12 and
Ubuntu 24.04 refuse ``pip install`` outside one (externally-managed-environment). The first
run installs the requirements (a few minutes: JupyterLab, matplotlib, cryptography ...);
later runs start at once, and install again only when a requirements file changed. As
root (a container), JupyterLab gets ``--allow-root``. Options after the command go to
JupyterLab: ``python3 course.py --no-browser --port 8890``.

This file runs on any Python 3 and stops with a clear message on a Python older than
3.11 (which simsmtp needs) instead of letting pip search for minutes.
"""

import hashlib
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, ".venv")
NEEDED = (3, 11)


def say(text):
    print("course.py: " + text, flush=True)


def fail(text):
    sys.stderr.write("course.py: " + text + "\n")
    sys.exit(1)


def check_python():
    if sys.version_info < NEEDED:
        fail("simsmtp needs Python %d.%d or newer; this is Python %d.%d (%s).\n"
             "  Debian 12 and Ubuntu 24.04 have it as python3; on older systems install "
             "python3.11 (or newer) and run: python3.11 course.py"
             % (NEEDED + sys.version_info[:2] + (sys.executable,)))


def venv_python():
    bindir = "Scripts" if os.name == "nt" else "bin"
    return os.path.join(VENV, bindir, "python.exe" if os.name == "nt" else "python")


def make_venv():
    if os.path.exists(venv_python()):
        return
    say("creating the virtual environment .venv (once)")
    import venv

    try:
        venv.EnvBuilder(with_pip=True).create(VENV)
    except Exception as exc:  # Debian without python3-venv: ensurepip is missing
        import shutil

        shutil.rmtree(VENV, ignore_errors=True)
        fail("could not create .venv (%s).\n  On Debian/Ubuntu install the venv module "
             "first: sudo apt install python3-venv   (then run this command again)" % exc)


def install(requirements):
    """pip install -r ``requirements`` into .venv, unless it is done for this content."""
    path = os.path.join(HERE, requirements)
    digest = hashlib.sha256()
    for name in sorted({requirements, "requirements.txt", "pyproject.toml"}):
        with open(os.path.join(HERE, name), "rb") as f:
            digest.update(f.read())
    stamp = os.path.join(VENV, "simsmtp-" + requirements + ".sha256")
    if os.path.exists(stamp):
        with open(stamp) as f:
            if f.read().strip() == digest.hexdigest():
                return
    say("installing %s into .venv (the first time takes a few minutes)" % requirements)
    python = venv_python()
    code = subprocess.call([python, "-m", "pip", "install", "--disable-pip-version-check",
                            "-q", "-r", path], cwd=HERE)
    if code != 0:
        fail("pip install -r %s failed (exit %d): see its message above." % (requirements,
                                                                              code))
    with open(stamp, "w") as f:
        f.write(digest.hexdigest() + "\n")


def lab_settings():
    """JupyterLab settings of the course: widget state saved with the notebook, so a
    notebook saved and opened again shows its widgets, not "model not found"."""
    folder = os.path.join(VENV, "share", "jupyter", "lab", "settings")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "overrides.json"), "w") as f:
        json.dump({"@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": True}}, f,
                  indent=1)


def run(command):
    """Run ``command`` (its first word a program in .venv/bin) in place of this process."""
    env = dict(os.environ, VIRTUAL_ENV=VENV)
    env["PATH"] = os.path.dirname(venv_python()) + os.pathsep + env.get("PATH", "")
    env.pop("PYTHONHOME", None)
    sys.stdout.flush()
    if os.name == "nt":
        sys.exit(subprocess.call(command, cwd=HERE, env=env))
    os.chdir(HERE)
    os.execve(command[0], command, env)


def main(argv):
    check_python()
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    make_venv()
    python = venv_python()
    if argv[:1] == ["test"]:
        install("requirements-dev.txt")
        run([python, "-m", "pytest"] + argv[1:])
    if argv[:1] == ["python"]:
        install("requirements-dev.txt")
        run([python] + argv[1:])
    install("requirements.txt")
    lab_settings()
    notebooks = os.path.join(HERE, "notebooks")
    names = sorted(n for n in os.listdir(notebooks) if n.endswith(".ipynb"))
    # the notebooks are stored executed: trusting them shows their diagrams and widgets
    # before anything runs (an untrusted notebook shows no SVG and no widget)
    subprocess.call([python, "-m", "jupyter", "trust", "-y"]
                    + [os.path.join(notebooks, n) for n in names],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lab = [python, "-m", "jupyter", "lab", os.path.join("notebooks", "00_start_here.ipynb")]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        lab.append("--allow-root")  # a container: JupyterLab refuses root without it
    run(lab + argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
