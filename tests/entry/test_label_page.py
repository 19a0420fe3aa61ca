"""The labeling page's server over real HTTP: what it writes, and what it refuses. The
candidates stand in for a portfolio (its draws and standing are the real ones in
tests/e2e/test_pipeline.py, where a real browser drives the page)."""

from __future__ import annotations

import csv
import http.client
import json
import threading

import pandas as pd
import pytest
import torch

from adaptflow.adapt.labeled_selection import LabeledChoice
from adaptflow.core import paths
from adaptflow.core.io import write_csv
from adaptflow.entry.label_page import LabelingSession, _LabelingServer, shortcut_keys

CLASSES = ["cat", "dog"]
IMAGES = [f"train/{c}/{i}.png" for c in CLASSES for i in range(3)]


class FixedCandidates:
    """Two models; rounds drawn in file order; the favourite flips with the labels' count."""

    classes = CLASSES

    def standing(self) -> LabeledChoice:
        count = len(pd.read_csv(paths.LABELS)) if paths.LABELS.is_file() else 0
        p_best = {"a": 0.25, "b": 0.75} if count % 2 else {"a": 0.75, "b": 0.25}
        return LabeledChoice(["a", "b"], {"a": 0.5, "b": 0.5}, p_best, torch.zeros(2, 0))

    def draw(self, count: int) -> pd.DataFrame:
        queries = pd.read_csv(paths.LABEL_QUERIES) if paths.LABEL_QUERIES.is_file() else None
        done = 0 if queries is None else len(queries)
        rows = pd.DataFrame({"path": IMAGES[done : done + count], "round": "1"})
        rows = rows.assign(probability="0.1", pool=str(len(IMAGES) - done))
        write_csv(paths.LABEL_QUERIES, pd.concat([queries, rows]) if done else rows)
        return rows


@pytest.fixture
def page(tmp_path, monkeypatch):
    """A served session of 2 rounds of 2 over six images in tmp_path/target."""
    monkeypatch.chdir(tmp_path)
    for path in IMAGES:
        (tmp_path / "target" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "target" / path).write_bytes(b"\x89PNG " + path.encode())
    write_csv(paths.TARGET_TRAIN_FILES, pd.DataFrame({"path": IMAGES, "sha256": IMAGES}))
    session = LabelingSession(FixedCandidates(), tmp_path / "target", total=4, round_size=2)
    server = _LabelingServer(0, session)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def request(server, method, url, body=None, host=None, kind="application/json", origin=None):
    port = server.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": host or f"127.0.0.1:{port}", "Content-Type": kind}
    if origin:
        headers["Origin"] = origin
    connection.request(method, url, None if body is None else json.dumps(body), headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    is_json = response.getheader("Content-Type") == "application/json"
    assert response.getheader("X-Frame-Options") == "DENY"  # no other site may frame it
    return response.status, json.loads(data) if is_json else data


def saved() -> list[tuple[str, str]]:
    return [(r["path"], r["label"]) for r in csv.DictReader(paths.LABELS.open())]


def test_each_answer_is_in_the_labels_file_when_the_page_hears_back(page):
    status, state = request(page, "GET", "/state")
    assert status == 200 and (state["answered"], state["total"]) == (0, 4)
    assert (state["favourite"], state["probability"]) == ("a", 0.75)
    first = state["image"]
    _, state = request(page, "POST", "/answer", {"path": first, "label": "dog"})
    assert saved() == [(first, "dog")]
    assert (state["answered"], state["favourite"]) == (1, "b")  # the standing follows
    second = state["image"]
    _, state = request(page, "POST", "/answer", {"path": second, "label": "cat"})
    assert state["image"] == IMAGES[2]  # the next round, drawn after the first was answered
    assert pd.read_csv(paths.LABEL_QUERIES)["path"].tolist() == IMAGES[:4]
    _, state = request(page, "POST", "/undo", {})
    assert saved() == [(first, "dog")] and state["image"] == second


def test_a_skip_leaves_the_image_asked_and_undo_brings_it_back(page):
    _, state = request(page, "GET", "/state")
    _, state = request(page, "POST", "/skip", {"path": IMAGES[0]})
    assert state["image"] == IMAGES[1] and state["answered"] == 0 and not paths.LABELS.exists()
    _, state = request(page, "POST", "/undo", {})
    assert state["image"] == IMAGES[0] and not state["can_undo"]


def test_the_session_ends_at_its_total_with_nothing_shown(page):
    for index in range(4):
        _, state = request(page, "POST", "/answer", {"path": IMAGES[index], "label": "cat"})
    assert (state["answered"], state["image"]) == (4, None)
    status, state = request(page, "POST", "/answer", {"path": IMAGES[4], "label": "cat"})
    assert status == 409 and "is not the image asked about now" in state["error"]
    assert len(saved()) == 4


def test_an_answer_for_another_image_or_class_is_refused_and_nothing_written(page):
    status, reply = request(page, "POST", "/answer", {"path": IMAGES[3], "label": "cat"})
    assert status == 409 and reply["state"]["image"] == IMAGES[0]
    status, reply = request(page, "POST", "/answer", {"path": IMAGES[0], "label": "cow"})
    assert status == 409 and "'cow' is not a class (cat, dog)" in reply["error"]
    assert not paths.LABELS.exists()


def test_only_the_images_asked_about_are_served(page):
    status, data = request(page, "GET", f"/image?path={IMAGES[0]}")
    assert status == 200 and data == b"\x89PNG " + IMAGES[0].encode()
    assert request(page, "GET", f"/image?path={IMAGES[5]}")[0] == 404  # not asked yet
    assert request(page, "GET", "/image?path=../../etc/passwd")[0] == 404


def test_requests_for_another_host_or_not_in_json_are_refused(page):
    status, reply = request(page, "GET", "/state", host="attacker.example:80")
    assert status == 403 and "127.0.0.1" in reply["error"]
    form = "application/x-www-form-urlencoded"
    assert request(page, "POST", "/undo", {}, kind=form)[0] == 415
    assert request(page, "GET", "/", host=f"localhost:{page.server_address[1]}")[0] == 200


def test_an_empty_label_a_body_that_is_no_object_or_a_foreign_origin_is_refused(page):
    status, reply = request(page, "POST", "/answer", {"path": IMAGES[0], "label": ""})
    assert status == 409 and "'' is not a class (cat, dog)" in reply["error"]
    assert request(page, "POST", "/undo", [1, 2])[0] == 400
    evil = request(page, "POST", "/skip", {"path": IMAGES[0]}, origin="http://evil.example")
    assert evil[0] == 403
    port = page.server_address[1]
    own = request(page, "POST", "/skip", {"path": IMAGES[0]}, origin=f"http://localhost:{port}")
    assert own[0] == 200 and own[1]["image"] == IMAGES[1]
    assert not paths.LABELS.exists()


def test_shortcut_keys_are_the_class_names_when_each_is_one_key():
    assert shortcut_keys(["0", "1", "7"]) == {"0": "0", "1": "1", "7": "7"}
    assert shortcut_keys(["cat", "dog"]) == {"cat": "1", "dog": "2"}
    assert shortcut_keys(["a", "s"]) == {"a": "1", "s": "2"}  # s skips
