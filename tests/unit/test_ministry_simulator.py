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

BODY = {"record_id": "hb-79000701-0001", "version": 1, "digest": "ab" * 32, "document": {"year_result": "Tốt"}}


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
    assert (await ministry.get("/v1/stats")).json() == {"accepted": 1, "duplicates": 1, "requests": 2}
    assert len(store.receipts) == 1


async def test_a_request_without_an_idempotency_key_is_refused(ministry):
    response = await post(ministry, None)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]
    assert (await ministry.get("/v1/stats")).json() == {"accepted": 0, "duplicates": 0, "requests": 1}


@pytest.mark.parametrize("missing", ["record_id", "version", "digest"])
async def test_a_body_without_its_required_fields_is_unprocessable(ministry, missing):
    body = {k: v for k, v in BODY.items() if k != missing}
    response = await post(ministry, "k:1", body)
    assert response.status_code == 422 and missing in response.json()["error"]
    assert (await ministry.get("/v1/stats")).json()["accepted"] == 0


async def test_a_body_that_is_not_a_json_object_is_unprocessable(ministry):
    response = await ministry.post("/v1/records", content=b"not json", headers={"Idempotency-Key": "k:1"})
    assert response.status_code == 422
    assert (await post(ministry, "k:1", ["a", "list"])).status_code == 422


async def test_a_known_key_with_another_digest_is_a_conflict(ministry):
    await post(ministry, "hb-79000701-0001:1")
    response = await post(ministry, "hb-79000701-0001:1", {**BODY, "digest": "cd" * 32})
    assert response.status_code == 409
    assert (await ministry.get("/v1/stats")).json() == {"accepted": 1, "duplicates": 0, "requests": 2}


async def test_receipts_can_be_read_back_by_key_and_listed(ministry):
    receipts = [(await post(ministry, f"hb-{i}:1", {**BODY, "record_id": f"hb-{i}"})).json() for i in range(3)]
    assert (await ministry.get("/v1/records/hb-1:1")).json() == receipts[1]
    assert (await ministry.get("/v1/records/unknown:1")).status_code == 404
    listed = (await ministry.get("/v1/receipts")).json()["receipts"]
    assert sorted(r["idempotency_key"] for r in listed) == ["hb-0:1", "hb-1:1", "hb-2:1"]
    assert (await ministry.get("/v1/stats")).json() == {"accepted": 3, "duplicates": 0, "requests": 3}


async def test_a_simulated_outage_answers_503_then_recovers(ministry):
    assert (await ministry.post("/v1/faults", json={"fail_next": 2})).json() == {"fail_next": 2}
    assert [(await post(ministry, "k:1")).status_code for _ in range(3)] == [503, 503, 201]
    assert (await ministry.get("/v1/stats")).json() == {"accepted": 1, "duplicates": 0, "requests": 3}


async def test_liveness(ministry):
    response = await ministry.get("/health/live")
    assert response.status_code == 200 and response.json() == {"live": True}


def test_a_store_reloads_the_receipts_of_its_data_file(tmp_path: Path):
    data = tmp_path / "receipts.jsonl"
    before, new = ReceiptStore(data).accept("k:1", BODY)
    assert new
    again = ReceiptStore(data)
    assert again.receipts == {"k:1": before}
    receipt, new = again.accept("k:1", BODY)
    assert receipt == before and not new
    assert data.read_text(encoding="utf-8").count("\n") == 1


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
        assert httpx.get(f"{url}/v1/stats").json() == {"accepted": 1, "duplicates": 1, "requests": 1}
        assert httpx.get(f"{url}/v1/records/hb-79000701-0001:1").json() == first.json()
    finally:
        stop(process)
