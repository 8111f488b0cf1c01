"""What a lab sends each host: this checkout's committed tree, and where the host keeps its environment."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from course.lab.options import KEPT_VENV, REUSED, LabError


def committed_tree(root: Path, output: Path) -> tuple[str, int]:
    """Write the committed tree (HEAD, without results/) as a .tar.gz; its commit and how many changes stay here."""
    if shutil.which("git") is None:
        raise LabError("the lab uploads the committed tree with git, and git is not installed (apt-get install git)")

    def git(*arguments: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *arguments], capture_output=True, text=True, timeout=120, check=True
            )
        except subprocess.CalledProcessError as error:
            raise LabError(
                f"the lab uploads this checkout's committed tree, and git cannot give it "
                f"(git {arguments[0]}: {error.stderr.strip() or error}); is {root} a git clone with a commit?"
            ) from None
        except subprocess.TimeoutExpired:
            raise LabError(f"git {arguments[0]} took more than 120 s in {root}") from None
        return done.stdout

    commit = git("rev-parse", "--verify", "HEAD").strip()
    output.parent.mkdir(parents=True, exist_ok=True)
    # Committed files only: the hosts measure what the course is, not a half-made edit; never the
    # results (a host makes its own set) nor anything ignored (.venv, build/). gzip's fastest level: every lab
    # makes the tree anew, and -6 costs twice the CPU of -1 here (0.11 against 0.05 s) for a sixth fewer bytes.
    git("archive", "--format=tar.gz", "-1", "-o", str(output), "HEAD", "--", ".", ":(exclude)results")
    changed = len(git("status", "--porcelain", "--untracked-files=no").splitlines())
    return commit, changed


def kept_venv(folder: str) -> str:
    """Shell words, run in a scratch folder before ``./bootstrap``: its ``.venv`` is the host's kept one.

    ``FOLDER/course-lab-venv`` is made once (at its own path, so its scripts name it, not a
    scratch folder that goes) and linked as ``.venv`` by every run; ``./bootstrap`` then
    reinstalls nothing while requirements.lock and pyproject.toml match the hashes it stamped
    there. Where no virtual environment can be made yet (no python3-venv), ``./bootstrap`` makes
    its own in the scratch folder, as before.
    """
    kept = shlex.quote(f"{folder.rstrip('/')}/{KEPT_VENV}")
    python = "$([ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)"
    return (
        f"kept={kept}; "
        'if [ ! -x "$kept/bin/python" ]; then rm -rf "$kept"; '
        f'{python} -m venv "$kept" >/dev/null 2>&1 || rm -rf "$kept"; fi; '
        'if [ -x "$kept/bin/python" ]; then ln -s "$kept" .venv; '
        f'sha256sum --check --status .venv/.requirements.lock.sha256 2>/dev/null && echo "{REUSED}"; fi; true'
    )
