"""docs/asyncapi: the committed documents are what `faststream docs gen` makes from the code (`make docs`)."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.deploy.conftest import ROOT

SERVICES = ("identity", "grades", "signing", "archive", "sync")


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("hocba_asyncapi_generate", ROOT / "docs" / "asyncapi" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("service", SERVICES)
def test_the_committed_document_matches_the_code(generator, service):
    committed = generator.path_for(service)
    assert committed.exists(), f"{committed} is missing: run `make docs`"
    assert json.loads(committed.read_text(encoding="utf-8")) == generator.document(service), (
        f"{committed.name} differs from what the code generates: run `make docs` and commit the result"
    )


def test_the_faststream_command_writes_the_same_document(generator, tmp_path):
    out = tmp_path / "sync.json"
    generator.generate("sync", out)
    assert json.loads(out.read_text()) == json.loads(generator.path_for("sync").read_text(encoding="utf-8"))


def test_the_sync_document_names_its_operator_requests(generator):
    channels = json.loads(generator.path_for("sync").read_text(encoding="utf-8"))["channels"]
    names = " ".join(channels)
    for routing_key in ("archive.checkpoint.issued.v1", "sync.outbox.retry.v1", "sync.outbox.reconcile.v1"):
        assert routing_key in names
