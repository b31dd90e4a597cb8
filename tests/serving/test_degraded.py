"""The service with its neighbours away, as the README promises: without Kafka it still serves, spools its
impressions and the events it accepts, and reports not ready; without Postgres it serves its checkpoint and
logs that the registry is unreadable, and is not ready until it has read the catalog's retirements once; without
a model it is not ready and says so.

Nothing listens on the Kafka and Postgres addresses these servers are given. Every wait is on what the
server shows (/metrics, its log, the spool files on disk), bounded.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ops.stack.servers import free_port
from schemas.events import parse_impression, parse_outcome
from schemas.settings import Settings
from serving.auth import digest
from serving.spool import SUFFIX, decode
from tests.support.api import ADMIN, KEY, ApiServer, metric
from tests.support.logs import LogWatcher
from tests.support.wait import wait_for

pytestmark = pytest.mark.slow


def nowhere(shipped_data, spool: Path, **overrides) -> Settings:
    """Settings whose Kafka and Postgres addresses have nothing listening."""
    base = dict(data_dir=shipped_data, beam_width=20, api_keys=digest(KEY), spool_dir=spool,
                kafka_bootstrap=f"127.0.0.1:{free_port()}", publisher_timeout_ms=500,
                database_url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/recast")  # fmt: skip
    return Settings(**{**base, **overrides})


def spooled(spool: Path) -> list:
    """Every record in the spool's segment files, read straight from disk (a torn tail is left out)."""
    return [r for path in sorted(spool.glob(f"*{SUFFIX}")) for r in decode(path.read_bytes())[0]]


@pytest.fixture(scope="module")
def alone(tmp_path_factory, shipped_data, tiny_checkpoint):
    """A server with a checkpoint, no Kafka and no Postgres; its registry watcher polls every 0.2 s."""
    spool = tmp_path_factory.mktemp("spool")
    settings = nowhere(shipped_data, spool, checkpoint=tiny_checkpoint, registry_poll_s=0.2)
    with LogWatcher("recast.hotswap") as log, ApiServer(settings) as server:
        yield server, settings, log


def test_without_kafka_lists_are_served_impressions_spooled_and_not_ready(alone):
    server, settings, _ = alone
    before = server.metrics()
    users = [f"u-nokafka-{uuid.uuid4().hex[:6]}-{n}" for n in range(15)]
    with server.client() as c:
        codes = [c.post("/v1/recommend", json={"user_id": u, "history": [], "k": 5}).status_code for u in users]
        ready = c.get("/readyz")

    def delta(name: str) -> float:
        return metric(server.metrics(), name) - metric(before, name)

    wait_for(lambda: delta('recast_publisher_records_total{outcome="spooled"}') >= 15,
             "the 15 impressions moved to the spool", timeout=30, state=server.metrics)  # fmt: skip
    assert codes == [200] * 15
    # Postgres is away too: the catalog's retirements were never read, so no traffic should come here either.
    kafka, catalog = ready.json()["reasons"]
    assert ready.status_code == 503 and kafka == "Kafka unreachable"
    assert catalog.startswith("catalog versions never read from Postgres (OperationalError")
    assert delta("recast_impressions_total") == 15
    assert delta('recast_publisher_records_total{outcome="spooled"}') == 15
    assert delta('recast_publisher_records_total{outcome="published"}') == 0
    on_disk = [parse_impression(r.value) for r in spooled(settings.spool_dir) if r.topic == settings.impressions_topic]
    assert set(users) <= {i.user_id for i in on_disk}
    assert metric(server.metrics(), "recast_spool_pending") == len(spooled(settings.spool_dir))


def test_without_kafka_events_are_accepted_and_spooled(alone):
    server, settings, _ = alone
    tag = uuid.uuid4().hex[:6]
    events = [{"event_id": f"{tag}-{n}", "user_id": "u-spool", "item_id": "3112", "type": kind,
               "ts": datetime.now(UTC).isoformat()}
              for n, kind in enumerate(("click", "add_to_cart", "purchase"))]  # fmt: skip
    with server.client() as c:
        accepted = c.post("/v1/events", json=events)
    assert (accepted.status_code, accepted.json()) == (202, {"accepted": 3})

    def on_disk() -> dict[str, str]:
        found = [parse_outcome(r.value) for r in spooled(settings.spool_dir) if r.topic == settings.outcomes_topic]
        return {o.event_id: o.type for o in found if o.event_id.startswith(tag)}

    wait_for(lambda: len(on_disk()) == 3, "the 3 accepted events in the spool on disk", timeout=30, state=on_disk)
    assert on_disk() == {e["event_id"]: e["type"] for e in events}


def test_without_postgres_the_checkpoint_is_served_and_the_registry_reported_unreadable(alone):
    server, _, log = alone
    lines = log.wait_for("model registry unreadable", "the watcher reported the registry unreadable, twice", count=2)
    assert "127.0.0.1" in lines[0] or "connect" in lines[0].lower()  # it says why
    with server.client() as c:
        served = c.post("/v1/recommend", json={"user_id": "u-nopg", "history": [], "k": 3})
        status = c.get("/readyz").json()
    assert served.status_code == 200 and served.json()["model_version"] == status["model_version"] is not None
    assert server.services.watcher.is_alive() and server.services.watcher.errors >= 2  # it keeps looking
    # The catalog is the data set's, with no recorded version, and its watcher keeps looking too.
    assert served.json()["catalog_version"] is None and status["catalog"]["source"] == "the data set"
    assert server.services.catalog_watcher.is_alive() and "OperationalError" in status["catalog"]["error"]


def test_without_a_model_readyz_is_503_and_recommend_says_so(tmp_path, shipped_data):
    """No checkpoint configured and a registry that cannot be read: the process runs, but is not ready."""
    settings = nowhere(shipped_data, tmp_path / "spool", checkpoint=None, registry_poll_s=0.2)
    with ApiServer(settings) as server, server.client() as c:
        ready = c.get("/readyz")
        recommend = c.post("/v1/recommend", json={"user_id": "u-nomodel", "history": [], "k": 3})
        alive = c.get("/healthz")
    assert ready.status_code == 503
    body = ready.json()
    assert (body["model_version"], body["broker_up"]) == (None, False)
    # An unreadable registry is reported, not failed on; a catalog never read is not ready.
    assert body["reasons"][:2] == ["no model loaded", "Kafka unreachable"] and len(body["reasons"]) == 3
    assert body["reasons"][2].startswith("catalog versions never read from Postgres")
    assert body["registry"]["agrees"] and "OperationalError" in body["registry"]["reason"]
    assert recommend.status_code == 503 and recommend.json()["detail"] == "no model loaded yet"
    assert recommend.headers["retry-after"] == "5"
    assert alive.status_code == 200


def test_without_catalog_versions_no_database_is_needed_and_nothing_can_be_retired(tmp_path, shipped_data,
                                                                                    tiny_checkpoint):  # fmt: skip
    """RECAST_CATALOG_VERSIONS=false (the serving benchmark): the data set's catalog as it is, no Postgres needed."""
    settings = nowhere(shipped_data, tmp_path / "spool", checkpoint=tiny_checkpoint, registry_poll_s=0,
                       catalog_versions=False, admin_token_sha256=digest(ADMIN))  # fmt: skip
    with ApiServer(settings) as server:
        with server.client(None) as anyone, server.client(ADMIN) as admin:
            ready = anyone.get("/readyz").json()
            retire = admin.post("/v1/admin/items/retire", json={"item_ids": ["3112"]})
        live = server.services.live
        assert server.services.catalog_watcher is None and (live.read_at, live.error) == (None, None)  # never looked
    assert ready["reasons"] == ["Kafka unreachable"] and ready["catalog"]["source"] == "the data set"
    assert retire.status_code == 409 and "RECAST_CATALOG_VERSIONS=false" in retire.json()["detail"]
