"""`adaptflow label --serve`: the labeling page, on 127.0.0.1.

One image at a time, large, with a button per class (and a key each), skip and undo, the
progress ("12 of 24") and the current favourite with its probability of being the best. Every
answer is written to labels/target.csv when it is given, atomically (temp file and rename): a
crash, Ctrl-C or a closed page loses no answer given. Rounds are drawn as for --export
(adaptflow/entry/label_rounds.py), the next when the current is done, so each round uses the
answers so far. A skipped image stays asked in labels/queries.csv: the next --export or
--serve asks it again.

The server answers only requests addressed to itself (Host 127.0.0.1 or localhost at its
port), takes answers only as JSON (a form on another site cannot post one), and serves only
the images it asked about.
"""

from __future__ import annotations

import json
import mimetypes
import signal
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd

from adaptflow.core import paths
from adaptflow.core.errors import AdaptflowError
from adaptflow.core.io import write_csv
from adaptflow.data.labels import LABEL_COLUMNS, merge_answers, pending
from adaptflow.entry.label_rounds import RERUN, Candidates, current_labels

SKIP_KEY, UNDO_KEY = "s", "u"
KEYS = "1234567890abcdefghijklmnopqrtvwxyz"  # for classes whose names are not single keys


def shortcut_keys(classes: list[str]) -> dict[str, str]:
    """class -> key: the name itself when every name is one distinct character (digits, letters
    other than s and u), else 1, 2, ... 0, a, b, ... in class order (the first 34 classes)."""
    names = [c.lower() for c in classes]
    if all(len(n) == 1 for n in names) and len(set(names)) == len(names):
        if not {SKIP_KEY, UNDO_KEY} & set(names):
            return dict(zip(classes, names, strict=True))
    return dict(zip(classes, KEYS, strict=False))


class LabelingSession:
    """What the page shows and changes. The queue is the current round's images not answered
    nor skipped; undo takes back the last answer or skip of this session."""

    def __init__(self, candidates: Candidates, target_root: Path, total: int, round_size: int):
        self.candidates, self.target_root = candidates, target_root
        self.total, self.round_size = total, round_size
        self.keys = shortcut_keys(candidates.classes)
        self.queue = list(pending(*current_labels())["path"])  # an earlier unanswered round
        self.history: list[tuple[str, str]] = []  # (answer | skip, path), for undo
        self.asked = set(self.queue)  # the images the page may show
        self.lock = threading.Lock()
        self._next_round()
        self._standing = candidates.standing()

    @property
    def answered(self) -> int:
        return sum(action == "answer" for action, _ in self.history)

    def _next_round(self) -> None:
        if self.queue or self.answered >= self.total:
            return
        drawn = self.candidates.draw(min(self.round_size, self.total - self.answered))
        self.queue = list(drawn["path"])
        self.asked.update(self.queue)

    def shown(self) -> str | None:
        """The image asked about now; None once the session's answers are all given."""
        return self.queue[0] if self.queue and self.answered < self.total else None

    def state(self) -> dict[str, Any]:
        """What the page shows."""
        favourite = self._standing.kept
        return {
            "image": self.shown(),
            "classes": [{"name": c, "key": self.keys.get(c, "")} for c in self.candidates.classes],
            "answered": self.answered,
            "total": self.total,
            "favourite": favourite,
            "probability": self._standing.p_best[favourite],
            "can_undo": bool(self.history),
        }

    def image(self, path: str) -> Path | None:
        """The file of an image this session asked about; None for any other path."""
        return self.target_root / path if path in self.asked else None

    def _current(self, path: str) -> None:
        if path != self.shown():
            raise AdaptflowError(f"{path} is not the image asked about now; the page is reloaded")

    def answer(self, path: str, label: str) -> None:
        """Write `label` for the current image to labels/target.csv, then move on."""
        self._current(path)
        if label not in self.candidates.classes:
            raise AdaptflowError(f"{label!r} is not a class ({', '.join(self.candidates.classes)})")
        labels, _ = current_labels()
        given = pd.DataFrame([[path, label]], columns=LABEL_COLUMNS)
        merged, _ = merge_answers(labels, given, self.candidates.classes, paths.LABELS)
        write_csv(paths.LABELS, merged)
        self._advance("answer")
        self._standing = self.candidates.standing()

    def skip(self, path: str) -> None:
        """Leave the current image unanswered (it stays asked for a later session)."""
        self._current(path)
        self._advance("skip")

    def _advance(self, action: str) -> None:
        self.history.append((action, self.queue.pop(0)))
        self._next_round()

    def undo(self) -> None:
        """Take back the last answer (its row leaves labels/target.csv) or skip."""
        if not self.history:
            raise AdaptflowError("nothing to undo in this session")
        action, path = self.history[-1]
        if action == "answer":  # the file first: if writing fails, nothing changed
            labels, _ = current_labels()
            write_csv(paths.LABELS, labels[labels["path"] != path])
        self.queue.insert(0, path)
        self.history.pop()
        if action == "answer":
            self._standing = self.candidates.standing()


class _Handler(BaseHTTPRequestHandler):
    server: _LabelingServer

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        url = urlsplit(self.path)
        if not self._addressed_to_us():
            return
        if url.path == "/":
            page = resources.files("adaptflow.entry").joinpath("label_page.html").read_bytes()
            return self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
        if url.path == "/state":
            with self.server.session.lock:
                return self._send_json(HTTPStatus.OK, self.server.session.state())
        if url.path == "/image":
            with self.server.session.lock:
                file = self.server.session.image(parse_qs(url.query).get("path", [""])[0])
            if file is not None and file.is_file():
                kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                return self._send(HTTPStatus.OK, file.read_bytes(), kind)
        self._send_json(HTTPStatus.NOT_FOUND, {"error": f"{url.path}: no such page or image"})

    def do_POST(self) -> None:  # noqa: N802
        if not self._addressed_to_us():
            return
        if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
            return self._send_json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send JSON"})
        origin = self.headers.get("Origin")
        if origin is not None and origin not in self._own_origins():
            return self._send_json(HTTPStatus.FORBIDDEN, {"error": "answers come from the page"})
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return self._send_json(HTTPStatus.BAD_REQUEST, {"error": "send a JSON object"})
        session = self.server.session
        actions = {
            "/answer": lambda: session.answer(str(body.get("path")), str(body.get("label"))),
            "/skip": lambda: session.skip(str(body.get("path"))),
            "/undo": session.undo,
        }
        action = actions.get(urlsplit(self.path).path)
        if action is None:
            return self._send_json(HTTPStatus.NOT_FOUND, {"error": f"{self.path}: no such action"})
        with session.lock:
            try:
                action()
            except AdaptflowError as error:
                failed = {"error": str(error), "state": session.state()}
                return self._send_json(HTTPStatus.CONFLICT, failed)
            self._send_json(HTTPStatus.OK, session.state())

    def _own_origins(self) -> set[str]:
        port = self.server.server_address[1]
        return {f"http://127.0.0.1:{port}", f"http://localhost:{port}"}

    def _addressed_to_us(self) -> bool:
        """Refuse a request for another host name (DNS rebinding): only our own address."""
        if f"http://{self.headers.get('Host')}" in self._own_origins():
            return True
        self._send_json(HTTPStatus.FORBIDDEN, {"error": "ask 127.0.0.1 or localhost"})
        return False

    def _send_json(self, status: HTTPStatus, data: dict[str, Any]) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Frame-Options", "DENY")  # no other page may frame it (clickjacking)
        self.send_header("Content-Security-Policy", "frame-ancestors 'none'")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet: the terminal shows the address and the answers, not every request."""


class _LabelingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, session: LabelingSession):
        super().__init__(("127.0.0.1", port), _Handler)
        self.session = session


def serve(port: int, total: int, round_size: int) -> None:
    """Serve the page until Ctrl-C; say how many answers were written."""
    from adaptflow.core.params import load_params

    candidates = Candidates.load()
    session = LabelingSession(candidates, Path(load_params().data.target), total, round_size)
    try:
        server = _LabelingServer(port, session)
    except OSError as error:
        raise AdaptflowError(f"port {port}: {error.strerror}; give another with --port") from None
    print(
        f"Labeling page: http://127.0.0.1:{server.server_address[1]}/ "
        "(every answer is saved as you give it; Ctrl-C stops)",
        flush=True,
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it as Ctrl-C does
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    with session.lock:
        print(f"{session.answered} answers written to {paths.LABELS}. {RERUN}.")
