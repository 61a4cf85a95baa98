"""Jobs cross from the process answering Slack to the work process as JSON: they must arrive
exactly as sent, and anything that is not a job must be refused whole, never half-run."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.killtask import KillTaskSpec
from bot.slack.jobs import (
    CLICK_VERBS,
    Click,
    File,
    ListOpen,
    ShowPreview,
    StopInstance,
    decode,
    encode,
)

text = st.text(min_size=1, max_size=40)
maybe = st.none() | text
specs = st.builds(
    KillTaskSpec,
    instance_id=st.from_regex(r"cdb-[a-z0-9]{8}", fullmatch=True),
    duration=st.integers(-1, 86_400),
    product=st.sampled_from(["mysql", "cynosdb"]),
    host=maybe,
    db=st.lists(text, max_size=3).map(tuple),
    command=st.lists(st.sampled_from(["Query", "Sleep", "Execute"]), max_size=3).map(tuple),
    info=maybe,
    user=maybe,
    time=st.none() | st.integers(0, 86_400),
    reason=maybe,
)
jobs = st.one_of(
    st.builds(File, text, text, specs, st.booleans(), maybe, maybe),
    st.builds(Click, st.sampled_from(sorted(CLICK_VERBS)), text, text, st.integers(), maybe, maybe),
    st.builds(StopInstance, text, text, text, st.sampled_from(["mysql", "cynosdb"]), maybe, maybe),
    st.builds(ShowPreview, text, text, specs, maybe),
    st.builds(ListOpen, text, text, maybe),
)


@settings(max_examples=300, deadline=None)
@given(jobs)
def test_every_job_arrives_as_sent(job) -> None:
    assert decode(encode(job)) == job


def test_a_file_job_keeps_its_spec_and_flags() -> None:
    spec = KillTaskSpec("cdb-12345678", 600, db=("orders", "users"), info="SELECT", time=30)
    job = File("U1", "C1", spec, break_glass=True, source_key="cmd:1.2", response_url="http://x")
    wire = json.loads(encode(job))
    assert wire["kind"] == "File" and wire["spec"]["db"] == ["orders", "users"]
    assert decode(encode(job)).spec == spec


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"user_id": "U1"}',  # no kind
        b'{"kind": "Exec", "user_id": "U1"}',  # not a kind of job
        b'{"kind": "ListOpen", "user_id": "U1"}',  # a field missing
        b'{"kind": "ListOpen", "user_id": "U1", "channel_id": "C1", "shell": "rm"}',
        b'{"kind": "Click", "verb": "delete", "user_id": "U1", "channel_id": "C1", '
        b'"request_id": 1}',  # not a button the bot has
        b'{"kind": "File", "user_id": "U1", "channel_id": "C1", "spec": "cdb-1"}',
    ],
)
def test_anything_else_is_refused(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode(raw)
