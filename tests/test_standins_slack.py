"""The Slack stand-ins behave the way the real slack_sdk / slack_bolt clients expect."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from slack_bolt import App
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from standins.slack_api import FakeSlack
from standins.slack_client import (
    SlackSender,
    action_payload,
    command_body,
    command_payload,
    sign,
)

SECRET = "test-signing-secret"


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(usergroups={"S0ONCALL": ["U0ALICE", "U0BOB"]}) as fake:
        yield fake


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token="xoxb-test-token", base_url=fake.url)


def test_web_client_calls_are_answered_and_recorded(fake: FakeSlack, client: WebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*kill?*"}}]
    posted = client.chat_postMessage(channel="C0INCIDENT", text="kill?", blocks=blocks)
    reply = client.chat_postMessage(channel="C0INCIDENT", text="on it", thread_ts=posted["ts"])
    assert abs(float(posted["ts"]) - time.time()) < 60 and float(reply["ts"]) > float(posted["ts"])

    client.chat_update(channel="C0INCIDENT", ts=posted["ts"], text="killed", blocks=[])
    assert fake.message("C0INCIDENT", posted["ts"]) == {
        "text": "killed",
        "blocks": [],
        "thread_ts": None,
    }
    assert [r["text"] for r in fake.thread_replies("C0INCIDENT", posted["ts"])] == ["on it"]

    assert client.usergroups_users_list(usergroup="S0ONCALL")["users"] == ["U0ALICE", "U0BOB"]
    with pytest.raises(SlackApiError) as err:
        client.usergroups_users_list(usergroup="S0NOPE")
    assert err.value.response["error"] == "no_such_subteam"

    first = fake.wait_for("chat.postMessage")
    assert first.args["blocks"] == blocks and first.token == "xoxb-test-token"
    assert first.response is not None and first.response["ts"] == posted["ts"]
    assert [c.method for c in fake.calls] == [
        "chat.postMessage",
        "chat.postMessage",
        "chat.update",
        "usergroups.users.list",
        "usergroups.users.list",
    ]


def test_form_encoded_json_fields_are_decoded(fake: FakeSlack, client: WebClient) -> None:
    # api_call(params=...) form-encodes, as older code paths do; blocks arrive as a JSON string.
    client.api_call("chat.postEphemeral", params={"channel": "C1", "user": "U1", "blocks": "[]"})
    assert fake.ephemerals("U1") == [{"channel": "C1", "user": "U1", "blocks": []}]
    assert fake.ephemerals("U2") == []


def test_unknown_token_is_invalid_auth(fake: FakeSlack) -> None:
    with pytest.raises(SlackApiError) as err:
        WebClient(token="xoxb-wrong", base_url=fake.url).auth_test()
    assert err.value.response["error"] == "invalid_auth"


def test_scripted_faults(fake: FakeSlack, client: WebClient) -> None:
    fake.script("chat.postMessage", {"status": 429, "retry_after": 1}, {"ok": False, "error": "x"})
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="hi")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "1"
    assert err.value.response["error"] == "ratelimited"
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="hi")
    assert err.value.response["error"] == "x"
    assert client.chat_postMessage(channel="C1", text="hi")["ok"]  # script used up
    assert [c.fault for c in fake.calls_of("chat.postMessage")] == [
        {"status": 429, "retry_after": 1},
        {"ok": False, "error": "x"},
        None,
    ]

    fake.script("auth.test", {"hang": 0.5})
    started = time.monotonic()
    assert client.auth_test()["user_id"] == "UBOT"
    assert time.monotonic() - started >= 0.5


def test_wait_for_times_out_with_a_listing(fake: FakeSlack, client: WebClient) -> None:
    client.auth_test()
    with pytest.raises(AssertionError, match=r"auth\.test"):
        fake.wait_for("chat.update", timeout=0.2)


def test_signatures_pass_the_sdk_verifier() -> None:
    body = command_body("kill 42")
    headers = sign(SECRET, body)
    verifier = SignatureVerifier(SECRET)
    ts, sig = headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"]
    assert verifier.is_valid(body, ts, sig)
    assert not SignatureVerifier("other").is_valid(body, ts, sig)


@pytest.fixture
def bolt_url(fake: FakeSlack) -> Iterator[str]:
    """A Bolt app served over HTTP; its handlers echo what they received into the fake Slack."""
    app = App(signing_secret=SECRET, client=WebClient(token="xoxb-test-token", base_url=fake.url))

    @app.command("/killtask")
    def on_command(ack: Any, command: dict[str, Any], client: WebClient) -> None:
        ack("working")
        client.chat_postMessage(channel=command["channel_id"], text=f"cmd {command['text']}")

    @app.action("approve")
    def on_approve(ack: Any, body: dict[str, Any], client: WebClient) -> None:
        ack()
        ts = body["container"]["message_ts"]
        client.chat_update(channel=body["channel"]["id"], ts=ts, text=body["actions"][0]["value"])

    @app.view("kill_modal")
    def on_submit(ack: Any, view: dict[str, Any]) -> None:
        ack(response_action="errors", errors={"b": view["state"]["values"]["b"]["a"]["value"]})

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            resp = app.dispatch(BoltRequest(body=body, headers=dict(self.headers.items())))
            self.send_response(resp.status)
            self.send_header("Content-Length", str(len(resp.body.encode())))
            self.end_headers()
            self.wfile.write(resp.body.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_sender_drives_a_bolt_app(fake: FakeSlack, bolt_url: str) -> None:
    sender = SlackSender(bolt_url, SECRET)
    assert sender.command("kill 42")[:2] == (200, "working")
    posted = fake.wait_for("chat.postMessage").args
    assert (posted["channel"], posted["text"]) == ("C0INCIDENT", "cmd kill 42")

    assert sender.click("approve", "yes", message_ts="1700000000.000900")[0] == 200
    fake.wait_for("chat.update")
    assert fake.message("C0INCIDENT", "1700000000.000900")["text"] == "yes"  # type: ignore[index]

    status, _, answer = sender.submit_view("kill_modal", {"b": {"a": "typed"}})
    assert status == 200 and answer == {"response_action": "errors", "errors": {"b": "typed"}}

    assert SlackSender(bolt_url, "wrong-secret").command("kill 42")[0] == 401
    assert sender.post(command_body("x"), timestamp=int(time.time()) - 3600)[0] == 401


def test_socket_mode_client_receives_envelopes_and_acks(fake: FakeSlack) -> None:
    # The client calls apps.connections.open with its app token, whatever the WebClient's token.
    client = SocketModeClient(app_token="xapp-test-token", web_client=WebClient(base_url=fake.url))
    seen: list[SocketModeRequest] = []

    def listener(sm: Any, req: SocketModeRequest) -> None:
        seen.append(req)
        sm.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload={"text": "ack " + req.type})
        )

    client.socket_mode_request_listeners.append(listener)
    try:
        client.connect()
        assert fake.socket_connected(timeout=5)
        assert fake.wait_for("apps.connections.open").token == "xapp-test-token"

        ack = fake.socket_send("slash_commands", command_payload("status"))
        assert ack["payload"] == {"text": "ack slash_commands"}
        assert seen[0].payload["text"] == "status" and ack["envelope_id"] == seen[0].envelope_id

        ack = fake.socket_send("interactive", action_payload("approve", "yes"))
        assert ack["payload"] == {"text": "ack interactive"}
        assert json.dumps(seen[1].payload["actions"][0]["value"]) == '"yes"'
    finally:
        client.close()


def test_socket_send_without_a_client_times_out(fake: FakeSlack) -> None:
    with pytest.raises(AssertionError, match="no Socket Mode client"):
        fake.socket_send("slash_commands", command_payload("status"), timeout=0.2)
