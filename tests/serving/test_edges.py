"""The API's edges over real HTTP (and a raw socket where an HTTP client would be too polite): each input that
used to give a 5xx or an unbounded read, the guard's order (credentials before the body), content types,
errors that never echo their input, the request id, CORS and the offline docs."""

from __future__ import annotations

import json
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from serving.auth import digest
from tests.support.api import KEY, ApiServer, api_settings

pytestmark = pytest.mark.slow
LIMIT = 65_536


@pytest.fixture(scope="module")
def server(stack, tmp_path_factory, shipped_data, tiny_checkpoint):
    settings = api_settings(stack, shipped_data, tmp_path_factory.mktemp("spool"), checkpoint=tiny_checkpoint,
                            beam_width=10, api_keys=f"shop:{digest(KEY)}", registry_poll_s=0, max_body_bytes=LIMIT,
                            cors_origins="https://shop.example")  # fmt: skip
    with ApiServer(settings) as s:
        yield s


def now(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


def outcome(**overrides) -> dict:
    return {"event_id": uuid.uuid4().hex, "user_id": "u", "item_id": "3112", "type": "click", "ts": now(),
            **overrides}  # fmt: skip


def raw_post(server, path: str, body: bytes, content_type: str = "application/json", key: str | None = KEY):
    """POST with exactly these bytes (httpx would refuse to send some of them)."""
    headers = {"content-type": content_type, **({"authorization": f"Bearer {key}"} if key else {})}
    with server.client(None) as c:
        return c.post(path, content=body, headers=headers)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/recommend", b'{"user_id": "u", "history": [], "k": NaN}', 422),
        ("/v1/recommend", b'{"user_id": "u", "history": [], "k": Infinity}', 422),
        ("/v1/recommend", b'{"user_id": "u", "history": [], "k": 1e999}', 422),
        ("/v1/recommend", b'{"user_id": "\\ud800", "history": [], "k": 5}', 422),
        ("/v1/recommend", b'{"user_id": "u", "history": ["\\udfff"], "k": 5}', 422),
        ("/v1/recommend", b'{"user_id": "\xff\xfe", "history": [], "k": 5}', 400),
        ("/v1/recommend", b'{"user_id": "u", "history": [], "k": 5, "segment": "a\\u0013b"}', 422),  # fuzz-found
        ("/v1/recommend", b'{"user_id": "u", "history": [], "k": 5, "\\ud800": 1}', 422),
        ("/v1/recommend", b"[" * 60_000, 400),
        ("/v1/events", b'{"event_id": "\\ud800", "user_id": "u", "item_id": "3112", "type": "click"}', 422),
        ("/v1/events", b"\xff\xfe\x00", 422),
        ("/v1/events", b"[" * 50_000, 422),
    ],
)
def test_inputs_that_gave_5xx_are_4xx_that_say_why(server, path, body, status):
    r = raw_post(server, path, body)
    assert r.status_code == status, r.text
    assert r.json()["detail"] and r.json()["request_id"] == r.headers["x-request-id"]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"user_id": "a\x00b"}, "U+0000"),  # Postgres cannot store it: once accepted, then dead-lettered
        ({"item_id": "no-such-item"}, "not in the catalog"),
        ({"ts": "1726-01-01T00:00:00+00:00"}, "before 2000"),
        ({"ts": now(-3 * 86_400)}, "s old"),
        ({"ts": "2326-01-01T00:00:00+00:00"}, "ahead of the time it was received"),
    ],
)
def test_outcomes_the_worker_would_not_learn_from_are_refused(server, change, why):
    with server.client() as c:
        r = c.post("/v1/events", json=[outcome(), outcome(**change)])
    assert r.status_code == 422 and why in r.text, r.text
    assert r.json()["detail"][0]["loc"][:2] == ["body", 1]  # the second outcome is the bad one


def test_a_422_names_the_problem_without_echoing_the_input(server):
    huge = "x" * 60_000
    with server.client() as c:
        r = c.post("/v1/recommend", json={"user_id": huge, "history": [], "k": 5})
        unknown = c.post("/v1/recommend", json={"user_id": "u", "history": [f"nope-{i}" * 10 for i in range(150)]})
    assert r.status_code == 422 and "at most 128" in r.text and len(r.content) < 2_000
    assert unknown.status_code == 422 and len(unknown.json()["detail"]["unknown_item_ids"]) == 10
    assert len(unknown.content) < 2_000


def _raw_exchange(server, head: bytes, body: bytes = b"", timeout: float = 10.0) -> tuple[bytes, float]:
    """Send a request head (and part of a body) on a raw socket; the response's first bytes and how long they took."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        t0 = time.monotonic()
        s.sendall(head + body)
        data = s.recv(65_536)
        return data, time.monotonic() - t0


def test_credentials_and_size_are_checked_before_the_body_is_read(server):
    # 50 MB announced, 10 bytes sent: a server that read the body first would wait for the other 50 MB.
    head = (b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n")  # fmt: skip
    anonymous, seconds = _raw_exchange(server, head, b'{"user_id"')
    assert anonymous.startswith(b"HTTP/1.1 401") and seconds < 5, anonymous[:200]
    keyed = head.replace(b"Host: x\r\n", f"Host: x\r\nAuthorization: Bearer {KEY}\r\n".encode())
    too_big, seconds = _raw_exchange(server, keyed, b'{"user_id"')
    assert too_big.startswith(b"HTTP/1.1 413") and seconds < 5, too_big[:200]


def test_a_streamed_body_is_cut_off_at_the_limit(server):
    def chunks():
        for _ in range(LIMIT // 1000 + 10):
            yield b" " * 1000  # whitespace: valid JSON padding, so only the size can refuse it

    with server.client() as c:
        r = c.post("/v1/events", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and str(LIMIT) in r.json()["detail"]


def test_content_types(server):
    body = json.dumps({"user_id": "u", "history": [], "k": 3}).encode()
    form = raw_post(server, "/v1/recommend", body, "application/x-www-form-urlencoded")  # what `curl -d` sends
    latin = raw_post(server, "/v1/recommend", body, "application/json; charset=latin-1")
    plain = raw_post(server, "/v1/recommend", body, "application/json; charset=utf-8")
    assert form.status_code == 415 and "Content-Type: application/json" in form.json()["detail"]
    assert latin.status_code == 415 and plain.status_code == 200


def test_request_id_is_accepted_or_made_and_returned(server):
    with server.client() as c:
        mine = c.post("/v1/recommend", json={"user_id": "u", "history": [], "k": 3},
                      headers={"X-Request-ID": "trace-42.a"})  # fmt: skip
        made = c.get("/healthz")
        junk = c.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert mine.headers["x-request-id"] == "trace-42.a" and mine.json()["request_id"] != "trace-42.a"
    assert len(made.headers["x-request-id"]) == 32 and len(junk.headers["x-request-id"]) == 32


def test_cors_preflight_is_answered_before_credentials(server):
    with server.client(None) as c:
        r = c.options("/v1/recommend", headers={"Origin": "https://shop.example",
                                                "Access-Control-Request-Method": "POST",
                                                "Access-Control-Request-Headers": "authorization,content-type"})
        other = c.options("/v1/recommend", headers={"Origin": "https://evil.example",
                                                    "Access-Control-Request-Method": "POST"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://shop.example"
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    assert other.status_code == 400  # not an allowed origin


def test_docs_load_their_assets_from_the_service_itself(server):
    with server.client(None) as c:
        page = c.get("/docs")
        js = c.get("/static-offline-docs/swagger-ui-bundle.js")
        css = c.get("/static-offline-docs/swagger-ui.css")
        spec = c.get("/openapi.json").json()
    assert page.status_code == 200 and "cdn" not in page.text.lower()
    assert "/static-offline-docs/swagger-ui-bundle.js" in page.text
    assert js.status_code == 200 and len(js.content) > 100_000 and css.status_code == 200
    for path, ops in spec["paths"].items():  # every guarded route documents every status the guard answers
        for method, op in ops.items():
            if path.startswith("/v1/"):
                assert {"401", "403", "413", "415", "429"} <= set(op["responses"]), (method, path)
