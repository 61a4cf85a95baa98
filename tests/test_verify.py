"""The signature check in front of Bolt: refused requests cost a status and one short log line."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient

from bot.slack.verify import MAX_BODY, verified

SECRET = "test-signing-secret-verify"
NOW = 1_700_000_000
LOGGER = "bot.slack.verify"


class Inner:
    """The app behind the check (Bolt, in production): records what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, str]] = []

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        length = int(environ["CONTENT_LENGTH"])
        self.seen.append((environ["wsgi.input"].read(length), environ["CONTENT_LENGTH"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"inner\n"]


class CountingInput(io.BytesIO):
    """A request body that counts how much of it was read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.read_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.read_bytes += len(chunk)
        return chunk


def sign(body: bytes, timestamp: str, secret: str = SECRET) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def environ_for(
    body: bytes,
    timestamp: str | None = str(NOW),
    signature: str | None = "sign",
    content_type: str = "application/x-www-form-urlencoded",
    content_length: str | None = "auto",
) -> dict:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/slack/events",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": content_type,
        "wsgi.input": CountingInput(body),
    }
    if content_length is not None:
        environ["CONTENT_LENGTH"] = str(len(body)) if content_length == "auto" else content_length
    if timestamp is not None:
        environ["HTTP_X_SLACK_REQUEST_TIMESTAMP"] = timestamp
    if signature == "sign":
        signature = sign(body, timestamp or "")
    if signature is not None:
        environ["HTTP_X_SLACK_SIGNATURE"] = signature
    return environ


def call(environ: dict, inner=None) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    app = verified(inner or Inner(), SECRET, clock=lambda: NOW)
    statuses: list[str] = []

    def start_response(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
        statuses.append(status)

    body = b"".join(app(environ, start_response))
    assert len(statuses) == 1
    return statuses[0], body


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


COMMAND = b"token=x&command=%2Fkilltask&text=cdb-abc12345+duration%3D10m&user_id=U0REQUESTER"
ACTION = b"payload=" + quote(json.dumps({"type": "block_actions", "actions": []})).encode()


# ---------------------------------------------------------------- what passes


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (COMMAND, "application/x-www-form-urlencoded"),
        (ACTION, "application/x-www-form-urlencoded"),
        (b'{"type":"url_verification","challenge":"c"}', "application/json"),
        ("text=caf\u00e9 \u5b57".encode(), "application/x-www-form-urlencoded; charset=utf-8"),
        (b"", "application/x-www-form-urlencoded"),
    ],
)
def test_a_signed_body_reaches_the_app_unchanged(body: bytes, content_type: str, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    inner = Inner()
    assert call(environ_for(body, content_type=content_type), inner) == ("200 OK", b"inner\n")
    assert inner.seen == [(body, str(len(body)))]
    assert refusals(caplog) == []


def test_a_body_without_content_length_is_read_and_handed_on_with_one() -> None:
    inner = Inner()
    assert call(environ_for(COMMAND, content_length=None), inner)[0] == "200 OK"
    assert inner.seen == [(COMMAND, str(len(COMMAND)))]


@pytest.mark.parametrize("age", [-300, 0, 300])
def test_timestamps_within_five_minutes_pass(age: int) -> None:
    assert call(environ_for(COMMAND, timestamp=str(NOW - age)))[0] == "200 OK"


def bolt_behind_the_check() -> tuple[SlackRequestHandler, list[str]]:
    authorized = AuthorizeResult(
        enterprise_id=None, team_id="T1", bot_token="xoxb-x", bot_user_id="U0BOT", bot_id="B1"
    )
    app = App(
        signing_secret=SECRET,
        client=WebClient(base_url="http://127.0.0.1:9/"),
        authorize=lambda **_: authorized,
        request_verification_enabled=False,  # the clock here is NOW; ours checked it already
    )
    texts: list[str] = []

    @app.command("/killtask")
    def killtask(ack, body):  # type: ignore[no-untyped-def]
        texts.append(body["text"])
        ack("filed")

    return SlackRequestHandler(app), texts


def test_bolt_behind_the_check_still_reads_the_body() -> None:
    bolt, texts = bolt_behind_the_check()
    assert call(environ_for(COMMAND), bolt) == ("200 OK", b"filed")
    assert texts == ["cdb-abc12345 duration=10m"]


@pytest.mark.parametrize(
    "body",
    [
        b"command=%2Fkilltask&text=cdb-abc12345+reason%3Dpayload+down&channel_name=general",
        b"command=%2Fkilltask&text=cdb-abc12345&channel_name=payload-incidents",
    ],
)
def test_the_word_payload_does_not_hide_a_command_from_bolt(body: bytes) -> None:
    bolt, texts = bolt_behind_the_check()
    assert call(environ_for(body), bolt) == ("200 OK", b"filed")
    assert len(texts) == 1 and texts[0].startswith("cdb-abc12345")
    assert "payload" in texts[0] or texts[0] == "cdb-abc12345"


@settings(max_examples=200, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        st.sampled_from([b"{}", b"[]", b"payload=", b"payload=%22x%22", b"text=payload", b""]),
    ),
    content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", ""]),
)
def test_what_the_check_lets_through_bolt_can_parse(body: bytes, content_type: str) -> None:
    status, _ = call(environ_for(body, content_type=content_type), bolt_behind_the_check()[0])
    assert not status.startswith("5")


# ---------------------------------------------------------------- what is refused

REFUSALS = [
    ("stale", environ_for(COMMAND, timestamp=str(NOW - 301)), "401", "stale_timestamp"),
    ("future", environ_for(COMMAND, timestamp=str(NOW + 301)), "401", "stale_timestamp"),
    ("unicode digits", environ_for(COMMAND, timestamp="¹²³"), "401", "bad_timestamp"),
    ("arabic digits", environ_for(COMMAND, timestamp="١٧٠٠٠٠٠٠٠٠"), "401", "bad_timestamp"),
    ("5000 digits", environ_for(COMMAND, timestamp="9" * 5000), "401", "bad_timestamp"),
    ("13 digits", environ_for(COMMAND, timestamp="0" * 3 + str(NOW)), "401", "bad_timestamp"),
    ("signed newline", environ_for(COMMAND, timestamp=f"{NOW}\n"), "401", "bad_timestamp"),
    ("negative", environ_for(COMMAND, timestamp=f"-{NOW}"), "401", "bad_timestamp"),
    ("no timestamp", environ_for(COMMAND, timestamp=None), "401", "missing_timestamp"),
    ("no signature", environ_for(COMMAND, signature=None), "401", "missing_signature"),
    ("no headers", environ_for(COMMAND, None, None), "401", "missing_timestamp"),
    (
        "wrong secret",
        environ_for(COMMAND, signature=sign(COMMAND, str(NOW), "x")),
        "401",
        "bad_signature",
    ),
    ("other body", environ_for(COMMAND, signature=sign(b"a=1", str(NOW))), "401", "bad_signature"),
    ("not v0", environ_for(COMMAND, signature="v1=" + "0" * 64), "401", "bad_signature"),
    ("non-ascii", environ_for(COMMAND, signature="v0=é\udcff"), "401", "bad_signature"),
    ("bad length", environ_for(COMMAND, content_length="-1"), "400", "bad_content_length"),
    ("not utf-8", environ_for(b"text=\xff\xfe"), "400", "not_utf8"),
    ("payload not json", environ_for(b"payload=%7Bnope"), "400", "not_parseable"),
    ("payload a list", environ_for(b"payload=%5B1%5D"), "400", "not_parseable"),
    (
        "json not json",
        environ_for(b"{nope", content_type="application/json"),
        "400",
        "not_parseable",
    ),
    ("json a list", environ_for(b"[1]", content_type="application/json"), "400", "not_parseable"),
    ("brace not json", environ_for(b"{nope"), "400", "not_parseable"),
    ("too deep", environ_for(b"{" + b'"a":[' * 100_000), "400", "not_parseable"),
]


@pytest.mark.parametrize(
    ("environ", "status", "reason"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_refusals(environ: dict, status: str, reason: str, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    environ["wsgi.input"].seek(0)
    inner = Inner()
    answer, body = call(environ, inner)
    assert answer.startswith(status)
    assert body.endswith(b"\n") and b"Traceback" not in body
    assert inner.seen == []
    lines = refusals(caplog)
    assert len(lines) == 1
    assert lines[0].split()[:3] == ["slack_request_refused", f"status={status}", f"reason={reason}"]
    assert "\n" not in lines[0] and len(lines[0]) < 100


def test_a_declared_two_megabytes_is_refused_without_reading_any_of_it(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    environ = environ_for(b"x" * (2 << 20), signature="v0=" + "0" * 64)
    assert call(environ)[0].startswith("413")
    assert environ["wsgi.input"].read_bytes == 0
    refused = f"slack_request_refused status=413 reason=too_large bytes={2 << 20}"
    assert refusals(caplog) == [refused]


def test_an_undeclared_two_megabytes_is_read_only_to_the_limit(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    environ = environ_for(b"x" * (2 << 20), content_length=None)
    assert call(environ)[0].startswith("413")
    assert environ["wsgi.input"].read_bytes == MAX_BODY + 1
    assert len(refusals(caplog)) == 1


def test_a_body_of_exactly_the_limit_passes() -> None:
    body = b"text=" + b"x" * (MAX_BODY - 5)
    assert call(environ_for(body))[0] == "200 OK"


def test_a_broken_upload_is_a_400() -> None:
    class Broken:
        def read(self, size: int = -1) -> bytes:
            raise OSError("client went away")

    environ = environ_for(COMMAND)
    environ["wsgi.input"] = Broken()
    assert call(environ)[0].startswith("400")


FORGED_LINE = "\n2024-01-01 level=INFO logger=bot.service request_approved request=7 by=U0BOSS\n"


@pytest.mark.parametrize("signed", [False, True])
def test_nothing_from_the_request_reaches_the_log(signed: bool, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    body = b"payload=" + FORGED_LINE.encode() + b"\xff"
    signature = "sign" if signed else "v0=" + FORGED_LINE
    environ = environ_for(body, timestamp=str(NOW), signature=signature)
    environ["CONTENT_TYPE"] = FORGED_LINE
    assert call(environ)[0].startswith("400" if signed else "401")
    assert len(refusals(caplog)) == 1
    assert "request_approved" not in caplog.text
    assert "U0BOSS" not in caplog.text


# ---------------------------------------------------------------- anything at all

header_text = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.integers(-(10**15), 10**15).map(str),
    st.just(str(NOW)),
    st.text("0123456789¹²³٣𝟙", max_size=20),
)
bodies = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=500).map(str.encode),
    st.sampled_from([COMMAND, ACTION, b"{", b"payload=", b"payload=%7B", b"\xff", b"[]"]),
)


@settings(max_examples=400, deadline=None)
@given(
    body=bodies,
    timestamp=header_text,
    signature=st.one_of(header_text, st.just("sign")),
    content_type=st.one_of(st.text(max_size=40), st.just("application/json")),
    content_length=st.one_of(st.none(), st.just("auto"), header_text),
)
def test_anything_gets_an_answer_and_never_a_500(
    body: bytes, timestamp, signature, content_type: str, content_length
) -> None:
    environ = environ_for(body, timestamp, signature, content_type, content_length)
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    records: list[str] = []
    logger = logging.getLogger(LOGGER)
    logger.addHandler(handler)
    try:
        status, answer = call(environ)
    finally:
        logger.removeHandler(handler)
    assert status[:3] in {"200", "400", "401", "413"}
    if status.startswith("200"):
        assert answer == b"inner\n" and records == []
    else:
        assert len(records) == 1 and "\n" not in records[0]
