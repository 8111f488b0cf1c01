"""``invoke linkcheck``: Sphinx's link checker over a small site whose links point at a local server.

The course's own external links need the internet, which CI has not; the check itself is tested
here against a real HTTP server on 127.0.0.1 that answers, refuses and redirects.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from course import commands
from course.results.layout import Layout


class _Server(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        status, headers = {"/ok": (200, {}), "/moved": (301, {"Location": "/ok"})}.get(self.path, (404, {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _site(root: Path, links: list[str]) -> Layout:
    root.mkdir(exist_ok=True)
    (root / "conf.py").write_text('extensions = ["myst_parser"]\nroot_doc = "index"\nexclude_patterns = ["build"]\n')
    body = "\n\n".join(f"See [link {number}]({link})." for number, link in enumerate(links))
    (root / "index.md").write_text(f"# A page\n\n{body}\n")
    return Layout(root)


def test_a_broken_and_a_moved_link_are_listed_with_their_page_and_line(
    tmp_path: Path, server: str, capsys: pytest.CaptureFixture
) -> None:
    layout = _site(tmp_path / "site", [f"{server}/ok", f"{server}/gone", f"{server}/moved"])
    assert commands.linkcheck(layout) is False
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("broken", "redirected"))}
    assert f"{server}/gone" in rows["broken"] and "index.md:5" in rows["broken"]
    assert f"{server}/moved" in rows["redirected"] and "index.md:7" in rows["redirected"]
    assert set(rows) == {"broken", "redirected"}, "a working link is not listed"
    assert "1 of 3 external links work; 1 broken" in out


def test_links_that_all_work_pass(tmp_path: Path, server: str, capsys: pytest.CaptureFixture) -> None:
    layout = _site(tmp_path / "site", [f"{server}/ok"])
    assert commands.linkcheck(layout) is True
    assert "1 of 1 external links work; 0 broken" in capsys.readouterr().out
