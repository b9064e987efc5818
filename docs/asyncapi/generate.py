"""Each service's AsyncAPI document, as `faststream docs gen` writes it: `make docs` regenerates them all.

The factories build a service's app without connecting anywhere (fixed settings, a scratch data
folder for files a service makes at start), so the documents depend on the code alone:

    faststream docs gen docs.asyncapi.generate:sync --factory --out docs/asyncapi/sync.json
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

from faststream import FastStream
from faststream.specification import AsyncAPI

from shared.settings import SERVICES, Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
#: The broker the documents name: where the services meet in a deployment (no credentials).
BROKER_URL = "amqp://rabbitmq:5672/"
_scratch = tempfile.TemporaryDirectory(prefix="hocba-asyncapi-")


def settings() -> Settings:
    """Defaults only: nothing from this machine's environment reaches the documents."""
    return Settings.model_construct(amqp_url=BROKER_URL, data_dir=Path(_scratch.name))


def app_for(name: str) -> FastStream:
    module = importlib.import_module(f"services.{name}.app")
    service = module.build_app(settings())
    package = importlib.import_module(f"services.{name}")
    spec = AsyncAPI(
        service.broker,
        title=f"hocba {name}",
        version=version("hocba"),
        description=(package.__doc__ or "").strip(),
    )
    return FastStream(service.broker, specification=spec)


def document(name: str) -> dict[str, Any]:
    """The document `faststream docs gen` makes for `name`, as JSON values."""
    return app_for(name).schema.to_specification().to_jsonable()


def identity() -> FastStream:
    return app_for("identity")


def grades() -> FastStream:
    return app_for("grades")


def signing() -> FastStream:
    return app_for("signing")


def archive() -> FastStream:
    return app_for("archive")


def sync() -> FastStream:
    return app_for("sync")


def path_for(name: str) -> Path:
    return HERE / f"{name}.json"


def generate(name: str, out: Path) -> None:
    """Run `faststream docs gen` for one service."""
    subprocess.run(
        [sys.executable, "-m", "faststream", "docs", "gen", f"docs.asyncapi.generate:{name}", "--factory", "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def main() -> None:
    for name in SERVICES:
        generate(name, path_for(name))
        # The same document, reformatted with its keys sorted and a final newline: the generator's own order of
        # channels and messages is not the same from one run to the next, and diffs should show only changes.
        text = json.dumps(
            json.loads(path_for(name).read_text(encoding="utf-8")), indent=2, ensure_ascii=False, sort_keys=True
        )
        path_for(name).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {path_for(name).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
