"""docker-compose.yml and the Dockerfile, checked without Docker (none runs here).

Every command a service runs is parsed by the real parser that will read it: the
``embedfleet`` CLI's argparse parser, Flower's own option table, and for Redis the
settings the design requires. Worker model groups must name models of the mounted
config file.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from producers.cli import _parser
from workers.config.loader import load_model_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG_IN_IMAGE = "/config/models.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def instruction(dockerfile: str, name: str) -> list[str]:
    """The exec-form (JSON) argument list of the last ``name`` instruction."""
    lines = [line for line in dockerfile.splitlines() if line.startswith(name + " ")]
    assert lines, f"Dockerfile has no {name}"
    return json.loads(lines[-1][len(name) + 1 :])


def argv_of(service: dict[str, Any], dockerfile: str) -> list[str]:
    """What the container runs: entrypoint + command, as Docker combines them."""
    entrypoint = service.get("entrypoint") or instruction(dockerfile, "ENTRYPOINT")
    command = service.get("command") or instruction(dockerfile, "CMD")
    assert isinstance(entrypoint, list) and isinstance(command, list), "use exec form"
    return [*entrypoint, *command]


def parse_cli(args: list[str]) -> Any:
    try:
        return _parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"`embedfleet {' '.join(args)}` is not a valid embedfleet command")


def embedfleet_services(compose: dict[str, Any], dockerfile: str) -> dict[str, list[str]]:
    out = {}
    for name, service in compose["services"].items():
        if "image" in service and service["image"].startswith("embedfleet"):
            argv = argv_of(service, dockerfile)
            if argv[0] == "embedfleet":
                out[name] = argv[1:]
    return out


def mounted_config(service: dict[str, Any]) -> Path:
    """Host path of the file mounted at /config/models.json (compose's default)."""
    for volume in service.get("volumes", []):
        match = re.fullmatch(r"(\$\{[^}]*\}|[^:]+):([^:]+)(:\w+)?", volume)
        assert match, volume
        source, target = match.group(1), match.group(2)
        if target == CONFIG_IN_IMAGE:
            default = re.fullmatch(r"\$\{\w+:-(.+)\}", source)
            return ROOT / (default.group(1) if default else source)
    pytest.fail(f"{CONFIG_IN_IMAGE} is not mounted")


def test_every_embedfleet_command_parses_with_the_cli(compose, dockerfile):
    services = embedfleet_services(compose, dockerfile)
    assert "cli" in services
    for name, args in services.items():
        parsed = parse_cli(args)
        assert parsed.func is not None, name
    # the image's default command parses too
    parse_cli(instruction(dockerfile, "CMD"))


def test_workers_are_model_groups_of_the_mounted_config(compose, dockerfile):
    services = embedfleet_services(compose, dockerfile)
    workers = {n: a for n, a in services.items() if a[0] == "worker"}
    assert workers, "no worker service"
    for name, args in workers.items():
        parsed = parse_cli(args)
        service = compose["services"][name]
        env = service["environment"]
        assert env["EMBEDFLEET_MODEL_CONFIG"] == CONFIG_IN_IMAGE
        assert "@redis:6379" in env["EMBEDFLEET_REDIS_URL"]
        assert "${REDIS_PASSWORD" in env["EMBEDFLEET_REDIS_URL"]
        assert int(env["EMBEDFLEET_METRICS_PORT"]) > 0
        assert (
            env["EMBEDFLEET_JOB_KEY"]
            == compose["services"]["cli"]["environment"]["EMBEDFLEET_JOB_KEY"]
        )  # the cli signs dataset jobs with the key the workers check
        config = load_model_config(str(mounted_config(service)))
        group = parsed.models.split(",")
        assert parsed.models != "all" and set(group) <= set(config), (name, group)
        assert "%h" in parsed.name  # replicas get distinct node names
        # the group's models fit the budget it is given, inside the container limit
        budget = float(env["EMBEDFLEET_MEMORY_LIMIT_GB"])
        assert sum(config[m].RAM for m in group) <= budget
        limit = service["deploy"]["resources"]["limits"]["memory"]
        assert budget < float(limit.rstrip("g"))


def test_redis_is_append_only_noeviction_with_a_password(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    settings = dict(zip(command[1::2], command[2::2], strict=True))
    assert settings["--appendonly"] == "yes"
    assert settings["--maxmemory-policy"] == "noeviction"
    assert settings["--requirepass"].startswith("${REDIS_PASSWORD:?")
    assert any("/data" in v for v in redis["volumes"])
    assert redis["healthcheck"]["test"][-1] == "ping"
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${REDIS_PASSWORD")


def test_flower_runs_with_its_real_options_behind_basic_auth(compose, dockerfile):
    from flower.options import options  # defines Flower's option table

    flower = compose["services"]["flower"]
    argv = argv_of(flower, dockerfile)
    assert argv[:4] == ["celery", "-A", "tasks", "flower"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in argv[4:])
    known = set(options._options)  # tornado stores names with dashes
    assert {f.replace("_", "-") for f in flags} <= known, flags
    # the settings file it names is in the image, where the Dockerfile's COPYs put it
    assert flags["conf"] == "/app/producers/flowerconfig.py"
    assert image_tree(dockerfile).joinpath(flags["conf"].lstrip("/")).is_file()
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert "${REDIS_PASSWORD" in flower["environment"]["EMBEDFLEET_REDIS_URL"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]


def test_dockerfile_installs_the_pinned_torch_and_the_project(dockerfile):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch"))
    runs = [shlex.split(args) for op, args in instructions(dockerfile) if op == "RUN"]
    torch_index = ["pip", "install", "--index-url", "https://download.pytorch.org/whl/cpu"]
    assert [*torch_index, pin] in runs, "the pinned CPU torch is not installed first"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".env" in ignored  # no venv or secrets in the image


def test_the_image_tree_holds_the_project_and_imports(dockerfile, tmp_path):
    # Given the files the Dockerfile's COPYs put in the image (.dockerignore applied)
    app = image_tree(dockerfile, tmp_path) / "app"
    # Then `pip install .` there finds every module pyproject.toml names ...
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for module in pyproject["tool"]["setuptools"]["py-modules"]:
        assert (app / f"{module}.py").is_file(), module
    for package in ("tasks", "workers", "producers"):
        assert (app / package / "__init__.py").is_file(), package
    # ... the whole contract, worker and CLI import from it alone, with the Celery app ...
    code = (
        "import sys, celeryconfig, tasks, producers.cli, workers.serving.boot; "
        "assert all(m.__file__.startswith(sys.argv[1]) for m in (celeryconfig, tasks)); "
        "assert tasks.app.conf.broker_transport == 'tasks.guards.transport:Transport'"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDFLEET_")}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(app)],
        cwd=app,
        env={**env, "PYTHONPATH": str(app)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    # ... the demo's sample and the default config are there, the tests are not
    assert (app / "data" / "sample.jsonl").is_file() and (app / "models.json").is_file()
    assert not (app / "tests").exists() and not list(app.rglob("__pycache__"))


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(instruction, arguments) of each Dockerfile line, continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def image_tree(dockerfile: str, root: Path | None = None) -> Path:
    """Replay the Dockerfile's WORKDIR and COPY instructions into ``root`` (the
    image's ``/``); returns ``root``."""
    import tempfile

    root = root or Path(tempfile.mkdtemp(prefix="image-"))
    ignored = [p for p in (ROOT / ".dockerignore").read_text().split() if p]
    workdir = "/"
    for op, args in instructions(dockerfile):
        if op == "WORKDIR":
            workdir = str(Path(workdir, args))
        elif op == "COPY":
            *sources, target = shlex.split(args)
            into = root / Path(workdir, target).relative_to("/")
            into_folder = target.endswith("/") or len(sources) > 1
            for source in sources:
                _copy(ROOT / source, into, ignored, into_folder)
    return root


def _copy(src: Path, dest: Path, ignored: list[str], into_folder: bool) -> None:
    if _ignored(src.relative_to(ROOT).as_posix(), ignored):
        return
    if src.is_dir():  # a folder's contents go into the target folder
        for child in src.iterdir():
            _copy(child, dest / child.name, ignored, into_folder=False)
        return
    target = dest / src.name if into_folder else dest
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            return True
        if pattern.startswith("**/") and any(fnmatch.fnmatch(part, bare) for part in parts):
            return True
    return False
