"""The container image and the Kubernetes manifest: they parse, they agree with each other and
with the README, and every probe they name is served by the real bot.

Nothing here builds the image or talks to a cluster; the bot-starting tests run the same
command the image runs, from this checkout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from bot.policy import load_policy
from standins.dbbrain import DbbrainEmulator
from standins.slack_api import FakeSlack
from tests.conftest import (
    APP_TOKEN,
    BOT_TOKEN,
    PROXY_VARS,
    ROOT,
    BotProcess,
    bot_env,
    free_port,
    start_bot,
)

MANIFEST = ROOT / "deploy" / "kubernetes.yaml"
DOCKERFILE = ROOT / "Dockerfile"
PRODUCTION_COMMAND = ["python", "-m", "bot"]
SOCKET_MODE_HEALTH_PORT = 8080  # HEALTH_PORT's default, where the manifest says to move probes
DEFAULT_PORT = 3000


# ---------------------------------------------------------------- reading the files


def manifests() -> list[dict]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def the(kind: str, name: str | None = None) -> dict:
    found = [
        doc
        for doc in manifests()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_spec() -> dict:
    return the("Deployment")["spec"]["template"]["spec"]


def bot_container() -> dict:
    (container,) = [c for c in pod_spec()["containers"] if c["name"] == "bot"]
    return container


def plain_env(container: dict) -> dict[str, str]:
    """The literal values a container's env sets (secret references left out)."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def container_port(container: dict, port: int | str) -> int:
    """A port as a probe or a Service names it: a number, or a name of the container's."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return number


def probes(container: dict) -> list[tuple[str, str, int]]:
    """(kind, path, port) of each HTTP probe the container names."""
    found = []
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(kind)
        if probe:
            found.append(
                (
                    kind,
                    probe["httpGet"]["path"],
                    container_port(container, probe["httpGet"]["port"]),
                )
            )
    return found


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuations joined and comments left out."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def instruction(keyword: str) -> str:
    found = [rest for kw, rest in dockerfile() if kw == keyword]
    assert found, f"the Dockerfile has no {keyword}"
    return found[-1]  # the last one is the one in force


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's exec-form command, as JSON after its options and CMD."""
    _options, _, command = instruction("HEALTHCHECK").partition("CMD ")
    return json.loads(command)


def runtime_requirements() -> str:
    """requirements.txt above the line where the Dockerfile cuts it."""
    runs = " ".join(rest for kw, rest in dockerfile() if kw == "RUN")
    marker = re.search(r"sed '/\^(.+?)/,\$d' requirements\.txt", runs)
    assert marker, "the Dockerfile no longer cuts requirements.txt where this test expects"
    text = (ROOT / "requirements.txt").read_text()
    assert marker.group(1) in text.splitlines(), f"requirements.txt has no {marker.group(1)!r}"
    return text.split(marker.group(1))[0]


# ---------------------------------------------------------------- the manifest


def test_manifest_is_two_replicas_on_postgresql() -> None:
    kinds = [doc["kind"] for doc in manifests()]
    assert {"ConfigMap", "Secret", "Deployment", "Service"} <= set(kinds)
    assert the("Deployment")["spec"]["replicas"] == 2
    assert plain_env(bot_container())["MIGRATE_ON_START"] == "false"
    assert the("Secret")["stringData"]["DATABASE_URL"].startswith("postgresql://")


def test_every_secret_and_configmap_reference_resolves() -> None:
    secrets = {
        doc["metadata"]["name"]: {**doc.get("stringData", {}), **doc.get("data", {})}
        for doc in manifests()
        if doc["kind"] == "Secret"
    }
    configmaps = {
        doc["metadata"]["name"]: doc.get("data", {})
        for doc in manifests()
        if doc["kind"] == "ConfigMap"
    }
    spec = pod_spec()
    containers = spec.get("initContainers", []) + spec["containers"]
    checked = 0
    for container in containers:
        for entry in container.get("env", []):
            source = entry.get("valueFrom", {})
            for ref_kind, known in (("secretKeyRef", secrets), ("configMapKeyRef", configmaps)):
                ref = source.get(ref_kind)
                if ref is None:
                    continue
                assert ref["name"] in known, f"{entry['name']}: no {ref_kind} {ref['name']}"
                if not ref.get("optional"):
                    assert ref["key"] in known[ref["name"]], f"{entry['name']}: no {ref['key']}"
                checked += 1
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secrets
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in configmaps
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            data = configmaps[volume["configMap"]["name"]]
            for item in volume["configMap"].get("items", []):
                assert item["key"] in data
        if "secret" in volume:
            assert volume["secret"]["secretName"] in secrets
    assert checked >= 6  # the bot's five secrets at least, and the migration's database URL
    # The Secret holds what the bot requires, whichever mode it runs in.
    (bot_secret,) = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in bot_container()["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    for key in ("SLACK_BOT_TOKEN", "TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY"):
        assert key in secrets[bot_secret]
    assert {"SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"} & set(secrets[bot_secret])


def test_the_policy_comes_from_the_configmap_where_policy_file_says(tmp_path: Path) -> None:
    container = bot_container()
    policy_file = Path(plain_env(container)["POLICY_FILE"])
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == policy_file.parent]
    # A whole-directory mount: the kubelet updates it when the ConfigMap changes (a subPath
    # mount never would), and SIGHUP then loads it.
    assert "subPath" not in mount
    (volume,) = [v for v in pod_spec()["volumes"] if v["name"] == mount["name"]]
    items = {i["path"]: i["key"] for i in volume["configMap"].get("items", [])}
    key = items.get(policy_file.name, policy_file.name)
    text = the("ConfigMap", volume["configMap"]["name"])["data"][key]
    # The example is a policy the bot accepts, in the shape of policy.example.yaml.
    (tmp_path / "policy.yaml").write_text(text)
    load_policy(tmp_path / "policy.yaml")
    example = yaml.safe_load((ROOT / "policy.example.yaml").read_text())
    assert set(yaml.safe_load(text)) == set(example)


def test_probes_service_and_budget_point_at_the_bot() -> None:
    container = bot_container()
    named = {kind: (path, port) for kind, path, port in probes(container)}
    assert named["livenessProbe"][0] == "/healthz"
    assert named["readinessProbe"][0] == "/readyz"
    serving = int(plain_env(container).get("PORT", DEFAULT_PORT))
    assert {port for _path, port in named.values()} == {serving}  # HTTP mode: all on PORT
    for kind in named:
        assert container[kind].get("timeoutSeconds", 1) >= 1
    labels = the("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = the("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert container_port(container, port["targetPort"]) == serving
    for doc in manifests():
        if doc["kind"] == "PodDisruptionBudget":
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_migrations_run_before_the_bot_and_only_need_the_database() -> None:
    (migrate,) = pod_spec()["initContainers"]
    assert migrate["image"] == bot_container()["image"]
    assert migrate["command"] == [*PRODUCTION_COMMAND, "migrate"]
    assert [e["name"] for e in migrate["env"]] == ["DATABASE_URL"]


def test_runs_as_the_images_non_root_user_within_memory_limits() -> None:
    spec = pod_spec()
    assert spec["securityContext"]["runAsNonRoot"] is True
    uid = spec["securityContext"]["runAsUser"]
    assert uid != 0
    assert str(uid) == instruction("USER").split(":")[0]
    for container in spec.get("initContainers", []) + spec["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        limit = container["resources"]["limits"]["memory"]
        assert limit.endswith("Mi") and 120 < int(limit[:-2]) <= 256
        assert container["resources"]["requests"]["memory"]


def test_socket_mode_and_policy_reload_are_explained_in_the_manifest() -> None:
    text = MANIFEST.read_text()
    assert "SLACK_APP_TOKEN" in text and "HEALTH_PORT" in text
    assert str(SOCKET_MODE_HEALTH_PORT) in text
    assert "SIGHUP" in text and "kill -HUP 1" in text


# ---------------------------------------------------------------- the image


def test_image_runs_the_readme_command() -> None:
    assert json.loads(instruction("CMD")) == PRODUCTION_COMMAND
    assert "ENTRYPOINT" not in [kw for kw, _ in dockerfile()]
    # `make run` is the README's way to start the bot: the same command, from the venv.
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:.*\n\t\$\(BIN\)/python -m bot \$\(ARGS\)$", makefile, re.M)
    assert "python -m bot" in (ROOT / "README.md").read_text()


def test_image_is_slim_python_311_or_newer_and_not_root() -> None:
    base = re.fullmatch(r"python:3\.(\d+)(?:\.\d+)?-slim(?:-\w+)?", instruction("FROM"))
    assert base and int(base.group(1)) >= 11
    user = instruction("USER").split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit()  # numeric, so Kubernetes' runAsNonRoot can check it


def test_image_exposes_every_port_the_deployment_uses() -> None:
    exposed = {int(p.split("/")[0]) for p in instruction("EXPOSE").split()}
    used = {p["containerPort"] for p in bot_container()["ports"]}
    assert used | {DEFAULT_PORT, SOCKET_MODE_HEALTH_PORT} <= exposed


def test_image_installs_the_runtime_requirements_only() -> None:
    runtime = runtime_requirements()
    for needed in ("slack-bolt", "tencentcloud-sdk-python-dbbrain", "SQLAlchemy", "psycopg"):
        assert needed in runtime
    for test_only in ("pytest", "hypothesis", "ruff"):
        assert test_only not in runtime


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".git", "*.db"} <= ignored


@dataclass
class Health:
    """A stand-in for the bot's health endpoint: what it answers, and what it was asked."""

    port: int = 0
    status: int = 200
    asked: list[str] = field(default_factory=list)


@pytest.fixture
def health() -> Iterator[Health]:
    state = Health()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.asked.append(self.path)
            self.send_response(state.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def run_healthcheck(**env: str) -> int:
    """Run the image's HEALTHCHECK command here, with only the given settings."""
    command = healthcheck_command()
    assert command[0] == "python"
    base = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    for name in ("PORT", "HEALTH_PORT", "SLACK_APP_TOKEN"):
        base.pop(name, None)
    result = subprocess.run(
        [sys.executable, *command[1:]], env={**base, **env}, capture_output=True, timeout=30
    )
    return result.returncode


def test_healthcheck_asks_healthz_on_port_in_http_mode(health: Health) -> None:
    assert run_healthcheck(PORT=str(health.port)) == 0
    assert health.asked == ["/healthz"]
    health.status = 503
    assert run_healthcheck(PORT=str(health.port)) != 0
    assert run_healthcheck(PORT=str(free_port())) != 0  # nothing listening
    assert run_healthcheck(PORT=str(health.port), HEALTH_PORT=str(free_port())) != 0


def test_healthcheck_asks_health_port_in_socket_mode(health: Health) -> None:
    assert run_healthcheck(SLACK_APP_TOKEN=APP_TOKEN, HEALTH_PORT=str(health.port)) == 0
    assert health.asked == ["/healthz"]
    # In Socket Mode, PORT is not where health is served.
    dead = str(free_port())
    assert run_healthcheck(SLACK_APP_TOKEN=APP_TOKEN, PORT=str(health.port), HEALTH_PORT=dead) != 0


# ---------------------------------------------------------------- the real bot serves the probes


def get(url: str) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ok(url: str, bot: BotProcess, timeout: float = 20.0) -> bytes:
    """GET until 200 (readiness may lag start-up by a moment); fail with the bot's log."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        assert bot.proc is not None
        if bot.proc.poll() is not None:
            raise AssertionError(f"bot exited with {bot.proc.returncode}:\n{bot.log()}")
        try:
            status, body = get(url)
            if status == 200:
                return body
            last = status
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered 200 (last: {last!r}):\n{bot.log()}")


def migrate_as_the_init_container_does(env: dict[str, str]) -> None:
    (migrate,) = pod_spec()["initContainers"]
    command = [sys.executable, *migrate["command"][1:]]
    keep = {k: v for k, v in env.items() if k not in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")}
    result = subprocess.run(command, cwd=ROOT, env=keep, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def deployment_settings() -> dict[str, str]:
    """The Deployment's literal settings that do not name paths or ports of its own pod."""
    env = plain_env(bot_container())
    return {k: v for k, v in env.items() if k not in ("POLICY_FILE", "PORT", "HOST")}


@pytest.mark.e2e
def test_http_mode_serves_every_probe_on_port(
    tmp_path: Path, slack: FakeSlack, dbbrain: DbbrainEmulator
) -> None:
    env = bot_env(tmp_path, slack, dbbrain)
    migrate_as_the_init_container_does(env)
    bot = start_bot(tmp_path, slack, dbbrain, **deployment_settings())
    try:
        for kind, path, port in probes(bot_container()):
            assert port == int(plain_env(bot_container()).get("PORT", DEFAULT_PORT)), kind
            wait_ok(f"{bot.url}{path}", bot)
        assert b"# TYPE" in wait_ok(f"{bot.url}/metrics", bot)
        assert run_healthcheck(PORT=str(bot.port)) == 0
    finally:
        assert bot.stop() == 0, bot.log()


@pytest.mark.e2e
def test_socket_mode_serves_every_probe_on_health_port(
    tmp_path: Path, dbbrain: DbbrainEmulator
) -> None:
    with FakeSlack(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as slack:
        health_port = free_port()
        env = bot_env(tmp_path, slack, dbbrain, SLACK_APP_TOKEN=APP_TOKEN)
        env.pop("SLACK_SIGNING_SECRET")
        migrate_as_the_init_container_does(env)
        env.update(deployment_settings(), HEALTH_PORT=str(health_port))
        bot = BotProcess(env=env, log_path=tmp_path / "bot.log", port=health_port).start()
        try:
            assert slack.socket_connected(timeout=20), bot.log()
            # The manifest's Socket Mode probes: the same paths, on HEALTH_PORT.
            for _kind, path, _port in probes(bot_container()):
                wait_ok(f"http://127.0.0.1:{health_port}{path}", bot)
            assert b"# TYPE" in wait_ok(f"http://127.0.0.1:{health_port}/metrics", bot)
            assert run_healthcheck(SLACK_APP_TOKEN=APP_TOKEN, HEALTH_PORT=str(health_port)) == 0
        finally:
            assert bot.stop() == 0, bot.log()
