"""The ministry simulator: idempotent receipts, validation, statistics and receipts kept across a restart; a witness
of the archive's log that takes a checkpoint only when the archive signed it and it extends the one held."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hocba.ministry_simulator import ReceiptStore, anchor_trust, create_app
from shared.crypto.merkle import MerkleTree
from tests.support import free_port
from tests.unit.sync.sealed import LOG, dev_pki, foreign_pki, log_of, signed_checkpoint, trust

BODY = {
    "record_id": "hb-79000701-0001",
    "version": 1,
    "digest": "ab" * 32,
    "personal_id": "079212000123",
    "record": {"learning_result": {"year": "Tốt"}},
}
ORIGIN = "hocba.test/archive"


def checkpoint(tree_size: int, log: MerkleTree = LOG, **signed_by: object) -> dict:
    """A checkpoint of `log` signed by the archive's certificate (or `signer=`), as sync sends it."""
    return signed_checkpoint(tree_size, log=log, **signed_by).checkpoint.model_dump(mode="json")  # type: ignore[arg-type]


def linked(body: dict, held: int, log: MerkleTree = LOG) -> dict:
    """`body` with the consistency proof that links it with the checkpoint of `held` entries, from `log`."""
    first, second = sorted([body["tree_size"], held])
    proof = [p.hex() for p in log.consistency_proof(first, second)]
    return {**body, "consistency": {"first": first, "second": second, "proof": proof}}


#: A genuine checkpoint of 10 entries.
CHECKPOINT = checkpoint(10)


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
    """The simulated ministry, holding the department's trust anchor (the tests' PKI)."""
    return ReceiptStore(trust=trust)


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


async def send_checkpoint(ministry: httpx.AsyncClient, body: dict) -> httpx.Response:
    key = f"checkpoint:{body.get('origin')}:{body.get('tree_size')}"
    return await ministry.post("/v1/checkpoints", json=body, headers={"Idempotency-Key": key})


async def test_checkpoints_are_acknowledged_once_per_key_and_listed_apart_from_records(ministry, store):
    key = f"checkpoint:{ORIGIN}:10"
    first = await send_checkpoint(ministry, CHECKPOINT)
    again = await send_checkpoint(ministry, CHECKPOINT)
    assert (first.status_code, again.status_code) == (201, 200) and first.json() == again.json()
    assert first.json()["idempotency_key"] == key
    other = await ministry.post(
        "/v1/checkpoints", json={**CHECKPOINT, "root_hash": "00" * 32}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 409
    assert (await ministry.get("/v1/checkpoints")).json() == {"checkpoints": [first.json()], "next": None}
    assert (await ministry.get("/v1/receipts")).json() == {"receipts": [], "next": None}
    assert (await ministry.get("/v1/stats")).json() == stats(checkpoints=1)


async def test_a_checkpoint_is_held_with_its_signature_and_its_time_as_signed(ministry, store):
    receipt = (await send_checkpoint(ministry, CHECKPOINT)).json()
    assert {k: receipt[k] for k in ("origin", "tree_size", "root_hash", "issued_at", "signature")} == CHECKPOINT
    assert CHECKPOINT["issued_at"].endswith("Z") and len(CHECKPOINT["issued_at"]) == len("2026-05-20T08:00:00.000Z")


async def test_the_genuine_sequence_is_taken_each_linked_with_the_latest_held(ministry, store):
    """The first checkpoint needs no proof; each later one is proven to extend the latest held; one older than the
    latest held is proven to be extended by it."""
    answers = [
        await send_checkpoint(ministry, checkpoint(4)),
        await send_checkpoint(ministry, linked(checkpoint(9), 4)),
        await send_checkpoint(ministry, linked(checkpoint(20), 9)),
        await send_checkpoint(ministry, linked(checkpoint(6), 20)),
        await send_checkpoint(ministry, linked(checkpoint(32), 20)),
    ]
    assert [a.status_code for a in answers] == [201] * 5
    assert sorted(int(c["tree_size"]) for c in store.checkpoints.values()) == [4, 6, 9, 20, 32]
    assert store.latest_checkpoint(ORIGIN)["tree_size"] == 32


async def test_attack_an_unsigned_checkpoint_is_refused(ministry, store):
    for body in ({k: v for k, v in CHECKPOINT.items() if k != "signature"}, {**CHECKPOINT, "signature": ""}):
        response = await send_checkpoint(ministry, body)
        assert response.status_code == 422
        assert response.json()["reason"] == "unsigned" and "not signed" in response.json()["error"]
    assert store.checkpoints == {}


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("a key of another PKI", lambda: checkpoint(10, signer=foreign_pki().signer("archive")), "not"),
        ("grades' certificate", lambda: checkpoint(10, signer=dev_pki().signer("svc-grades")), "not the archive's"),
        ("a signature made up", lambda: {**CHECKPOINT, "signature": "e30..c2ln"}, "cannot be read"),
        ("another root under the signature", lambda: {**CHECKPOINT, "root_hash": "cd" * 32}, "does not verify"),
        (
            "its time rewritten to the microsecond",
            lambda: {**CHECKPOINT, "issued_at": CHECKPOINT["issued_at"].replace("Z", "000Z")},
            "does not verify",
        ),
    ],
)
async def test_attack_a_checkpoint_the_archive_did_not_sign_as_sent_is_refused(ministry, store, name, make, expected):
    response = await send_checkpoint(ministry, make())
    assert response.status_code == 422, name
    assert response.json()["reason"] == "bad-signature"
    assert "the checkpoint's signature is not the archive's" in response.json()["error"] and expected in response.json()["error"]
    assert store.checkpoints == {}


async def test_attack_a_checkpoint_of_a_rewritten_log_is_refused_as_inconsistent(ministry, store):
    """The operator rewrote the log from entry 2 on and signed a checkpoint of it with the archive's own key: the
    signature holds, the proof from the checkpoint held cannot."""
    forked = log_of(16, fork_at=2)
    assert (await send_checkpoint(ministry, checkpoint(4))).status_code == 201
    response = await send_checkpoint(ministry, linked(checkpoint(9, log=forked), 4, log=forked))
    assert response.status_code == 422
    assert response.json()["reason"] == "inconsistent" and response.json()["latest_tree_size"] == 4
    assert "the consistency proof from tree size 4 to 9 does not hold" in response.json()["error"]
    assert [int(c["tree_size"]) for c in store.checkpoints.values()] == [4]
    genuine = await send_checkpoint(ministry, linked(checkpoint(9), 4))
    assert genuine.status_code == 201, "the log as it was still extends the checkpoint held"


async def test_a_checkpoint_not_linked_with_the_latest_held_is_refused_until_it_is(ministry, store):
    await send_checkpoint(ministry, checkpoint(4))
    await send_checkpoint(ministry, linked(checkpoint(9), 4))
    for body in (checkpoint(20), linked(checkpoint(20), 4)):
        response = await send_checkpoint(ministry, body)
        assert response.status_code == 412
        assert response.json()["reason"] == "not-linked" and response.json()["latest_tree_size"] == 9
    assert (await send_checkpoint(ministry, linked(checkpoint(20), 9))).status_code == 201


async def test_a_proof_that_cannot_be_read_is_refused(ministry, store):
    await send_checkpoint(ministry, checkpoint(4))
    body = {**checkpoint(9), "consistency": {"first": 4, "second": 9, "proof": ["not hex"]}}
    response = await send_checkpoint(ministry, body)
    assert response.status_code == 422 and response.json()["reason"] == "bad-proof"


async def test_a_ministry_without_a_trust_anchor_takes_no_checkpoint():
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ReceiptStore())), base_url="http://m") as ministry:
        response = await send_checkpoint(ministry, CHECKPOINT)
    assert response.status_code == 422 and response.json()["reason"] == "no-anchor"


async def test_a_refused_checkpoint_in_a_batch_refuses_itself_alone(ministry, store):
    items = [
        {"kind": "checkpoint", "idempotency_key": f"checkpoint:{ORIGIN}:4", "body": checkpoint(4)},
        {"kind": "checkpoint", "idempotency_key": f"checkpoint:{ORIGIN}:9", "body": checkpoint(9)},
        {"kind": "record", "idempotency_key": "hb-79000701-0001:1", "body": BODY},
    ]
    results = (await ministry.post("/v1/batch", json={"items": items})).json()["results"]
    assert [r["status"] for r in results] == [201, 412, 201]
    assert results[1]["reason"] == "not-linked" and results[1]["latest_tree_size"] == 4


def test_the_trust_anchor_is_the_one_given_else_the_pki_of_hocba_pki_dir(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("HOCBA_PKI_DIR", raising=False)
    assert anchor_trust(None, None) is None
    monkeypatch.setenv("HOCBA_PKI_DIR", str(dev_pki().folder))
    found = anchor_trust(None, None)
    assert found is not None and found.anchor == dev_pki().anchor_path.resolve()
    given = anchor_trust(tmp_path / "root.pem", None)
    assert given is not None and given.crl_paths == [(tmp_path / "crl.pem").resolve()]


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
    assert again.latest_checkpoint(ORIGIN) == checkpoint, "a restarted ministry knows the checkpoint it holds"
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
