"""The archive's public HTTP routes (no sign-in: signed checkpoints and proofs, never a student's data) and
`hocba archive consistency`, which checks what they answer against the two signed checkpoints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hocba.commands import archive as archive_command
from services.archive import handlers
from services.archive.app import build_app
from services.archive.http import public_routes
from services.archive.repository import InMemoryArchiveRepository
from shared.contracts.signing import RecordsCompleted
from shared.crypto.archive_log import check_checkpoint_fields
from shared.crypto.merkle import verify_consistency, verify_inclusion
from shared.observability import Health, http_app

from .conftest import archive_keys


async def grow(deps, make_signed, start: int, end: int) -> dict[str, Any]:
    """Archive records start..end-1, then sign a checkpoint of the log; returns it as the archive states it."""
    await handlers.archive_records(RecordsCompleted(records=[make_signed(n) for n in range(start, end)]), deps)
    [event] = (await handlers.scheduled_checkpoint(deps)).publish
    return event.checkpoint.model_dump(mode="json")


@pytest.fixture
async def public(deps) -> AsyncIterator[httpx.AsyncClient]:
    """A third party on the archive's public routes."""
    transport = httpx.ASGITransport(app=public_routes(deps))
    async with httpx.AsyncClient(transport=transport, base_url="http://archive.test") as client:
        yield client


def hashes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


async def test_the_latest_and_each_signed_checkpoint_are_served_as_signed(deps, make_signed, public, trust):
    assert (await public.get("/v1/log/checkpoint")).status_code == 404
    four = await grow(deps, make_signed, 0, 4)
    nine = await grow(deps, make_signed, 4, 9)
    assert (await public.get("/v1/log/checkpoint")).json() == {"checkpoint": nine, "timestamps": []}
    assert (await public.get("/v1/log/checkpoints/4")).json() == {"checkpoint": four, "timestamps": []}
    assert (await public.get("/v1/log/checkpoints/5")).status_code == 404
    assert check_checkpoint_fields(four, trust.pki.trust_store()).ok, "its fields as served rebuild what was signed"


async def test_a_consistency_proof_between_two_signed_checkpoints_verifies_against_their_roots(deps, make_signed, public):
    four = await grow(deps, make_signed, 0, 4)
    nine = await grow(deps, make_signed, 4, 9)
    answer = (await public.get("/v1/log/consistency", params={"first": 4, "second": 9})).json()
    assert answer["checkpoints"] == [four, nine]
    assert (answer["first_root"], answer["second_root"]) == (four["root_hash"], nine["root_hash"])
    assert verify_consistency(4, 9, bytes.fromhex(four["root_hash"]), bytes.fromhex(nine["root_hash"]), hashes(answer["proof"]))
    latest = (await public.get("/v1/log/consistency", params={"first": 3})).json()
    assert (latest["second"], latest["checkpoints"][0]) == (9, None), "to the latest checkpoint; none was signed at 3"


async def test_an_inclusion_proof_of_a_leaf_verifies_against_the_signed_root(deps, make_signed, public):
    nine = await grow(deps, make_signed, 0, 9)
    answer = (await public.get("/v1/log/inclusion", params={"index": 5})).json()
    assert (answer["leaf_index"], answer["tree_size"], answer["checkpoint"]) == (5, 9, nine)
    entry = await deps.repo.entry("rec-0005")
    assert answer["leaf_hash"] == entry.leaf_hash
    assert verify_inclusion(5, 9, bytes.fromhex(answer["leaf_hash"]), hashes(answer["proof"]), bytes.fromhex(nine["root_hash"]))
    assert "rec-0005" not in json.dumps(answer) and entry.student_ref not in json.dumps(answer), "hashes only"


async def test_proofs_only_about_the_log_as_signed_and_questions_that_cannot_be_read(deps, make_signed, public):
    assert (await public.get("/v1/log/consistency", params={"first": 1})).status_code == 404, "nothing signed yet"
    await grow(deps, make_signed, 0, 4)
    await handlers.archive_records(RecordsCompleted(records=[make_signed(n) for n in range(4, 8)]), deps)
    beyond = await public.get("/v1/log/consistency", params={"first": 2, "second": 8})
    assert beyond.status_code == 404 and "up to 4, the latest checkpoint's" in beyond.json()["error"]
    assert (await public.get("/v1/log/inclusion", params={"index": 6})).status_code == 404
    for params in ({"first": "x"}, {"first": "-1"}, {}):
        unreadable = await public.get("/v1/log/consistency", params=params)
        assert unreadable.status_code == 400 and unreadable.json()["error"]
    assert (await public.get("/v1/log/consistency", params={"first": 0})).status_code == 404


async def test_every_answer_is_counted_by_route_and_status(deps, make_signed, public, registry):
    await grow(deps, make_signed, 0, 4)
    await public.get("/v1/log/checkpoint")
    await public.get("/v1/log/consistency", params={"first": "x"})
    assert registry.get_sample_value("hocba_archive_public_reads_total", {"route": "checkpoint", "status": "200"}) == 1
    assert registry.get_sample_value("hocba_archive_public_reads_total", {"route": "consistency", "status": "400"}) == 1


async def test_the_archive_serves_its_routes_beside_metrics_and_health(settings, trust, make_signed):
    service = build_app(settings, repository=InMemoryArchiveRepository(), keys=archive_keys(trust),
                        issuer_keys=trust.issuer.public_keys())
    app = http_app(service.registry, Health(), service.http_routes)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://archive.test") as client:
        assert (await client.get("/v1/log/checkpoint")).json() == {"error": "the archive has signed no checkpoint yet"}
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/nothing")).status_code == 404


# --- `hocba archive consistency` -----------------------------------------------------------------


def run_command(answer: httpx.Response | Exception, trust, *args: str, monkeypatch) -> Any:
    """`hocba archive consistency ARGS` with the archive answering `answer` (or failing with it)."""

    def get(url: str, params: dict, timeout: float) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(archive_command.httpx, "get", get)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner().invoke(
        archive_command.app,
        ["consistency", *args, "--anchor", str(trust.pki.anchor_path), "--crl", str(trust.pki.crl_path)],
        catch_exceptions=False,
    )


async def served(public: httpx.AsyncClient, **params: int) -> dict[str, Any]:
    return (await public.get("/v1/log/consistency", params=params)).json()


def answered(body: dict[str, Any], status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request("GET", "http://archive.test/v1/log/consistency"))


async def test_the_command_prints_a_genuine_proof_and_exits_0(deps, make_signed, public, trust, monkeypatch):
    await grow(deps, make_signed, 0, 4)
    await grow(deps, make_signed, 4, 9)
    body = await served(public, first=4, second=9)
    result = run_command(answered(body), trust, "4", "9", monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert "CONSISTENT: the archive's log of 9 entries extends that of 4" in result.output
    assert all(node in result.output for node in body["proof"])


async def test_the_command_exits_1_on_a_proof_that_does_not_lead_to_the_signed_root(deps, make_signed, public, trust, monkeypatch):
    await grow(deps, make_signed, 0, 4)
    await grow(deps, make_signed, 4, 9)
    body = await served(public, first=4, second=9)
    forged = {**body, "proof": ["00" * 32, *body["proof"][1:]]}
    result = run_command(answered(forged), trust, "4", "9", monkeypatch=monkeypatch)
    assert result.exit_code == 1
    assert "the RFC 9162 proof does not lead from the signed root of 4 entries to that of 9" in result.output
    rerooted = {**body, "checkpoints": [{**body["checkpoints"][0], "root_hash": body["checkpoints"][1]["root_hash"]}, body["checkpoints"][1]]}
    result = run_command(answered(rerooted), trust, "4", "9", monkeypatch=monkeypatch)
    assert result.exit_code == 1 and "does not verify" in result.output, "a root the archive did not sign"


async def test_the_command_exits_2_when_the_archive_cannot_be_asked(trust, monkeypatch):
    result = run_command(httpx.ConnectError("connection refused"), trust, "4", "9", monkeypatch=monkeypatch)
    assert result.exit_code == 2 and "cannot ask the archive" in result.output
    refused = answered({"error": "the archive signed no checkpoint of tree size 4"}, 404)
    result = run_command(refused, trust, "4", "9", monkeypatch=monkeypatch)
    assert result.exit_code == 2 and "HTTP 404: the archive signed no checkpoint of tree size 4" in result.output
