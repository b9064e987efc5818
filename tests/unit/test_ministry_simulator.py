"""The ministry simulator: idempotent receipts, validation, statistics and receipts kept across a restart."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hocba.ministry_simulator import ReceiptStore, create_app
from tests.support import free_port

BODY = {
    "record_id": "hb-79000701-0001",
    "version": 1,
    "digest": "ab" * 32,
    "personal_id": "079212000123",
    "record": {"learning_result": {"year": "Tốt"}},
}
CHECKPOINT = {"origin": "hocba/archive", "tree_size": 10, "root_hash": "cd" * 32, "signature": "e30..c2ln"}


def stats(accepted: int = 0, duplicates: int = 0, requests: int = 0, checkpoints: int = 0, acks: int | None = None, batches: int = 0) -> dict:
    return {
        "accepted": accepted,
        "duplicates": duplicates,
        "requests": requests,
        "checkpoints": checkpoints,
        "acknowledgements": accepted if acks is None else acks,
        "batches": batches,
    }


@pytest.fixture
def store() -> ReceiptStore:
    return ReceiptStore()


@pytest.fixture
async def ministry(store):
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://ministry.test") as client:
        yield client


async def post(client: httpx.AsyncClient, key: str | None, body: object = BODY) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await client.post("/v1/records", json=body, headers=headers)


async def test_the_same_key_twice_gets_the_same_receipt_and_is_stored_once(ministry, store):
    first = await post(ministry, "hb-79000701-0001:1")
    second = await post(ministry, "hb-79000701-0001:1")

    assert first.status_code == 201 and second.status_code == 200
    assert first.json() == second.json()
    receipt = first.json()
    assert receipt["idempotency_key"] == "hb-79000701-0001:1"
    assert receipt["receipt_id"] and receipt["received_at"]
    assert (await ministry.get("/v1/stats")).json() == stats(1, 1, 2)
    assert len(store.receipts) == 1


async def test_a_request_without_an_idempotency_key_is_refused(ministry):
    response = await post(ministry, None)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]
    assert (await ministry.get("/v1/stats")).json() == stats(0, 0, 1)


@pytest.mark.parametrize("missing", ["record_id", "version", "digest", "personal_id"])
async def test_a_body_without_its_required_fields_is_unprocessable(ministry, missing):
    body = {k: v for k, v in BODY.items() if k != missing}
    response = await post(ministry, "k:1", body)
    assert response.status_code == 422 and missing in response.json()["error"]
    assert (await ministry.get("/v1/stats")).json()["accepted"] == 0


async def test_a_personal_id_that_is_not_12_digits_is_unprocessable(ministry):
    response = await post(ministry, "k:1", {**BODY, "personal_id": "79212000123"})
    assert response.status_code == 422 and "personal_id" in response.json()["error"]


async def test_a_body_that_is_not_a_json_object_is_unprocessable(ministry):
    response = await ministry.post("/v1/records", content=b"not json", headers={"Idempotency-Key": "k:1"})
    assert response.status_code == 422
    assert (await post(ministry, "k:1", ["a", "list"])).status_code == 422


async def test_a_known_key_with_another_digest_is_a_conflict(ministry):
    await post(ministry, "hb-79000701-0001:1")
    response = await post(ministry, "hb-79000701-0001:1", {**BODY, "digest": "cd" * 32})
    assert response.status_code == 409
    assert (await ministry.get("/v1/stats")).json() == stats(1, 0, 2)


async def test_receipts_can_be_read_back_by_key_and_listed(ministry):
    receipts = [(await post(ministry, f"hb-{i}:1", {**BODY, "record_id": f"hb-{i}"})).json() for i in range(3)]
    assert (await ministry.get("/v1/records/hb-1:1")).json() == receipts[1]
    assert (await ministry.get("/v1/records/unknown:1")).status_code == 404
    listed = (await ministry.get("/v1/receipts")).json()["receipts"]
    assert sorted(r["idempotency_key"] for r in listed) == ["hb-0:1", "hb-1:1", "hb-2:1"]
    assert (await ministry.get("/v1/stats")).json() == stats(3, 0, 3)


async def test_a_simulated_outage_answers_503_then_recovers(ministry):
    assert (await ministry.post("/v1/faults", json={"fail_next": 2})).json()["fail_next"] == 2
    assert [(await post(ministry, "k:1")).status_code for _ in range(3)] == [503, 503, 201]
    assert (await ministry.get("/v1/stats")).json() == stats(1, 0, 3)


async def test_checkpoints_are_acknowledged_once_per_key_and_listed_apart_from_records(ministry, store):
    key = "checkpoint:hocba/archive:10"
    first = await ministry.post("/v1/checkpoints", json=CHECKPOINT, headers={"Idempotency-Key": key})
    again = await ministry.post("/v1/checkpoints", json=CHECKPOINT, headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 200) and first.json() == again.json()
    assert first.json()["tree_size"] == 10 and first.json()["root_hash"] == "cd" * 32
    other = await ministry.post(
        "/v1/checkpoints", json={**CHECKPOINT, "root_hash": "00" * 32}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 409
    assert (await ministry.get("/v1/checkpoints")).json() == {"checkpoints": [first.json()], "next": None}
    assert (await ministry.get("/v1/receipts")).json() == {"receipts": [], "next": None}
    assert (await ministry.get("/v1/stats")).json() == stats(checkpoints=1)


async def test_a_checkpoint_without_its_signature_is_unprocessable(ministry):
    body = {k: v for k, v in CHECKPOINT.items() if k != "signature"}
    response = await ministry.post("/v1/checkpoints", json=body, headers={"Idempotency-Key": "c:1"})
    assert response.status_code == 422 and "signature" in response.json()["error"]


async def test_receipts_are_listed_in_key_order_page_by_page(ministry):
    for i in (3, 1, 4, 0, 2):
        await post(ministry, f"hb-{i}:1", {**BODY, "record_id": f"hb-{i}"})
    first = (await ministry.get("/v1/receipts", params={"limit": 2})).json()
    assert [r["idempotency_key"] for r in first["receipts"]] == ["hb-0:1", "hb-1:1"] and first["next"] == "hb-1:1"
    second = (await ministry.get("/v1/receipts", params={"limit": 2, "after": first["next"]})).json()
    assert [r["idempotency_key"] for r in second["receipts"]] == ["hb-2:1", "hb-3:1"]
    last = (await ministry.get("/v1/receipts", params={"limit": 2, "after": second["next"]})).json()
    assert [r["idempotency_key"] for r in last["receipts"]] == ["hb-4:1"] and last["next"] is None


async def test_failures_answer_the_chosen_5xx_without_storing(ministry):
    await ministry.post("/v1/faults", json={"fail_next": 2, "fail_status": 502})
    assert [(await post(ministry, "k:1")).status_code for _ in range(3)] == [502, 502, 201]
    assert (await ministry.get("/v1/stats")).json() == stats(1, 0, 3)


async def test_latency_delays_every_write(ministry):
    await ministry.post("/v1/faults", json={"latency_seconds": 0.2})
    started = time.perf_counter()
    assert (await post(ministry, "k:1")).status_code == 201
    assert time.perf_counter() - started >= 0.2


async def test_a_timeout_hangs_and_stores_nothing(ministry, store):
    await ministry.post("/v1/faults", json={"timeout_next": 1, "hang_seconds": 0.1})
    started = time.perf_counter()
    response = await post(ministry, "k:1")
    assert response.status_code == 504 and time.perf_counter() - started >= 0.1
    assert store.accepted == 0
    assert (await post(ministry, "k:1")).status_code == 201


async def test_a_lost_answer_was_stored_so_the_retry_gets_the_same_receipt(ministry, store):
    await ministry.post("/v1/faults", json={"lose_next": 1, "hang_seconds": 0})
    lost = await post(ministry, "k:1")
    assert lost.status_code == 504 and store.accepted == 1
    retry = await post(ministry, "k:1")
    assert retry.status_code == 200 and retry.json() == store.receipts["k:1"]
    assert (await ministry.get("/v1/stats")).json() == stats(1, 1, 2)


async def test_a_duplicate_acknowledgement_lists_two_receipts_for_one_key(ministry, store):
    await ministry.post("/v1/faults", json={"duplicate_next": 1})
    answer = (await post(ministry, "k:1")).json()
    await post(ministry, "k:2", {**BODY, "record_id": "hb-2"})
    listed = (await ministry.get("/v1/receipts")).json()["receipts"]
    assert [r["idempotency_key"] for r in listed] == ["k:1", "k:1", "k:2"]
    assert listed[0] == answer and listed[1]["receipt_id"] != answer["receipt_id"]
    assert (await ministry.get("/v1/stats")).json() == stats(2, 0, 2, acks=3)


async def test_faults_are_shown_validated_and_reset(ministry):
    assert (await ministry.post("/v1/faults", json={"fail_next": -1})).status_code == 422
    assert (await ministry.post("/v1/faults", json={"fail_status": 200})).status_code == 422
    assert (await ministry.post("/v1/faults", json=["x"])).status_code == 422
    await ministry.post("/v1/faults", json={"lose_next": 2, "latency_seconds": 0.5})
    shown = (await ministry.get("/v1/faults")).json()
    assert (shown["lose_next"], shown["latency_seconds"]) == (2, 0.5)
    reset = (await ministry.post("/v1/faults", json={"reset": True})).json()
    assert (reset["lose_next"], reset["latency_seconds"], reset["fail_status"]) == (0, 0.0, 503)


async def test_liveness(ministry):
    response = await ministry.get("/health/live")
    assert response.status_code == 200 and response.json() == {"live": True}


def test_a_store_reloads_the_receipts_of_its_data_file(tmp_path: Path):
    data = tmp_path / "receipts.jsonl"
    first = ReceiptStore(data)
    before, new = first.accept("k:1", BODY)
    checkpoint, _ = first.accept("c:10", CHECKPOINT, kind="checkpoint")
    first.faults.duplicate_next = 1
    first.accept("k:2", BODY)
    assert new
    again = ReceiptStore(data)
    assert again.receipts["k:1"] == before and again.checkpoints == {"c:10": checkpoint}
    assert again.stats()["acknowledgements"] == 3
    receipt, new = again.accept("k:1", BODY)
    assert receipt == before and not new
    assert data.read_text(encoding="utf-8").count("\n") == 4


def run_simulator(port: int, data_file: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "hocba.ministry_simulator", "--host", "127.0.0.1", "--port", str(port),
         "--data-file", str(data_file), "--log-level", "warning"],
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=0.5).raise_for_status()
            return process
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the simulator did not start") from None
            time.sleep(0.1)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def test_receipts_survive_a_restart_with_a_data_file(tmp_path: Path):
    data_file = tmp_path / "ministry" / "receipts.jsonl"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = run_simulator(port, data_file)
    try:
        first = httpx.post(f"{url}/v1/records", json=BODY, headers={"Idempotency-Key": "hb-79000701-0001:1"})
        assert first.status_code == 201
    finally:
        stop(process)

    process = run_simulator(port, data_file)
    try:
        again = httpx.post(f"{url}/v1/records", json=BODY, headers={"Idempotency-Key": "hb-79000701-0001:1"})
        assert again.status_code == 200 and again.json() == first.json()
        assert httpx.get(f"{url}/v1/stats").json() == stats(1, 1, 1)
        assert httpx.get(f"{url}/v1/records/hb-79000701-0001:1").json() == first.json()
    finally:
        stop(process)
