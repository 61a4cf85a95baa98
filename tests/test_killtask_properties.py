"""Properties of the kill-task grammar: nothing typed can crash it, and what is valid round-trips.

The round trips check the promise the card makes: the filters it shows (`describe_filters`) are
exactly the filters sent to DBbrain (`cloud_params`), which are exactly the values typed.
"""

from __future__ import annotations

import shlex
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.killtask import (
    FIELD_LABELS,
    FILTER_FIELDS,
    LINE_KEYS,
    MAX_DURATION,
    MAX_TIME,
    MIN_INFO,
    MIN_TIME_ALONE,
    MYSQL_COMMANDS,
    PRODUCTS,
    PROTECTED_COMMANDS,
    PROTECTED_USERS,
    UNTIL_STOPPED,
    KillTaskSpec,
    SpecError,
    broad_reason,
    build_spec,
    describe_filters,
    split_line,
    unescape_slack,
)

PROPERTY = settings(max_examples=300, deadline=None)
POLICY_PROTECTED = frozenset({"monitor", "dbbrain_agent"})
KNOWN_ERROR_KEYS = set(FIELD_LABELS) | {"line"}
SMART_QUOTES = "“”„‘’"
KILLABLE_COMMANDS = sorted(set(MYSQL_COMMANDS) - PROTECTED_COMMANDS)


def slack_escape(text: str) -> str:
    """What Slack does to the text of a slash command before sending it."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf")


# ---------------------------------------------------------------- arbitrary input

TRICKY_PIECES = [
    "<@U123|bob>",
    "<!channel>",
    "<#C123|incident>",
    "&lt;",
    "&gt;",
    "&amp;",
    "&amp;lt;",
    "<",
    ">",
    "&",
    '"',
    "'",
    "“",
    "”",
    "‘",
    "’",
    "\\",
    "=",
    ",",
    " ",
    "\t",
    "\n",
    "\x00",
    "\u200b",
    "\u202e",
    "--",
    "-1",
    "10m",
    "help",
    "stop",
    "cdb-abc12345",
    "::1",
    "10.0.0.5",
    "%",
    "Binlog Dump",
    "system user",
    "SELECT",
    "é",
    "字",
    "٣",
    "𝟙",
]
pieces = st.lists(st.sampled_from(TRICKY_PIECES), max_size=20).map("".join)
long_values = st.builds(
    lambda ch, n: ch * n, st.sampled_from(["x", "9", "é", " ", "<"]), st.integers(0, 10_000)
)
any_value = st.one_of(st.text(max_size=200), pieces, long_values, st.text(max_size=10_000))
any_key = st.one_of(
    st.sampled_from([*LINE_KEYS, "instance", "InstanceId", "Instance-Id", "USER", "Info"]),
    st.text(max_size=10),
)
key_values = st.lists(
    st.tuples(any_key, any_value, st.booleans()).map(
        lambda kv: f"{kv[0]}={shlex.quote(kv[1]) if kv[2] else kv[1]}"
    ),
    max_size=8,
).map(" ".join)
any_line = st.one_of(
    st.text(),
    pieces,
    long_values,
    st.tuples(st.one_of(st.just("cdb-abc12345"), any_value), key_values).map(" ".join),
)


def assert_plain(spec: KillTaskSpec) -> None:
    """An accepted spec is safe to show on a card: no control characters anywhere."""
    for value in (spec.host, spec.info, spec.user, spec.reason, *spec.db, *spec.command):
        assert value is None or not any(is_control(ch) for ch in value), value


def assert_spec_or_known_errors(fields: dict[str, object]) -> None:
    try:
        spec = build_spec(fields, POLICY_PROTECTED)
    except SpecError as error:
        assert error.errors
        assert set(error.errors) <= KNOWN_ERROR_KEYS, error.errors
        assert all(isinstance(m, str) and m for m in error.errors.values())
        assert str(error)
        return
    assert_plain(spec)
    assert spec.duration == UNTIL_STOPPED or 1 <= spec.duration <= MAX_DURATION
    assert spec.time is None or 0 <= spec.time <= MAX_TIME
    # Everything later done with a spec works on it.
    describe_filters(spec)
    spec.cloud_params()
    assert KillTaskSpec.from_dict(spec.to_dict()) == spec


@PROPERTY
@given(any_line)
def test_any_line_gives_a_spec_or_field_errors(text: str) -> None:
    try:
        line = split_line(text)
    except SpecError as error:
        assert error.errors
        assert set(error.errors) <= KNOWN_ERROR_KEYS, error.errors
        return
    assert line.verb in {"file", "modal", "help", "list", "stop"}
    assert set(line.fields) <= set(FIELD_LABELS)
    assert_spec_or_known_errors(dict(line.fields))


modal_text = st.one_of(st.none(), any_value)
any_modal = st.fixed_dictionaries(
    {
        "instance_id": modal_text,
        "product": modal_text,
        "duration": modal_text,
        "user": modal_text,
        "host": modal_text,
        "db": modal_text,
        "command": st.one_of(st.none(), st.lists(st.one_of(st.none(), any_value), max_size=5)),
        "info": modal_text,
        "time": modal_text,
        "reason": modal_text,
    }
)


@PROPERTY
@given(any_modal)
def test_any_modal_gives_a_spec_or_field_errors(fields: dict[str, object]) -> None:
    assert_spec_or_known_errors(fields)


@PROPERTY
@given(st.text(max_size=2000))
def test_slack_escaping_is_undone_exactly_once(text: str) -> None:
    assert unescape_slack(slack_escape(text)) == text


# ---------------------------------------------------------------- valid values round-trip


def printable(max_size: int, exclude: str = "") -> st.SearchStrategy[str]:
    """Non-empty text without control characters and without surrounding whitespace."""
    chars = st.characters(exclude_categories=("Cc", "Cf", "Cs"), exclude_characters=exclude)
    safe_pieces = [p for p in TRICKY_PIECES if not any(is_control(c) or c in exclude for c in p)]
    text = st.one_of(
        st.text(chars, min_size=1, max_size=max_size),
        st.lists(st.sampled_from(safe_pieces), min_size=1, max_size=12).map("".join),
    )
    return text.map(lambda s: s[:max_size].strip()).filter(bool)


instance_ids = st.from_regex(r"[a-z][a-z0-9]{0,8}(-[a-z0-9]{1,8}){1,3}", fullmatch=True)
durations = st.one_of(st.integers(1, MAX_DURATION), st.just(UNTIL_STOPPED))
hosts = st.ip_addresses().map(str)  # canonical, as parse_host keeps them
db_names = st.lists(
    st.from_regex(r"[A-Za-z0-9_$\-]{1,64}", fullmatch=True), max_size=4, unique=True
)
commands = st.lists(st.sampled_from(KILLABLE_COMMANDS), max_size=4, unique=True)
times = st.integers(0, MAX_TIME)


def user_names(exclude: str = "") -> st.SearchStrategy[str]:
    protected = PROTECTED_USERS | POLICY_PROTECTED
    return printable(32, exclude + ",").filter(lambda u: u.lower() not in protected)


def valid_values(exclude: str = "") -> st.SearchStrategy[dict]:
    """Field values as the spec holds them (None or () for an absent filter)."""
    return st.fixed_dictionaries(
        {
            "instance_id": instance_ids,
            "duration": durations,
            "product": st.sampled_from(PRODUCTS),
            "host": st.none() | hosts,
            "db": db_names.map(tuple),
            "command": commands.map(tuple),
            "info": st.none() | printable(500, exclude),
            "user": st.none() | user_names(exclude),
            "time": st.none() | times,
            "reason": st.none() | printable(500, exclude),
        }
    )


def duration_spellings(seconds: int) -> list[str]:
    if seconds == UNTIL_STOPPED:
        return ["until-stopped", "-1", "Until-Stopped", "forever"]
    spellings = [str(seconds), f"{seconds}s", f"{seconds} seconds"]
    if seconds % 60 == 0:
        spellings += [f"{seconds // 60}m", f"{seconds // 60} min"]
    if seconds % 3600 == 0:
        spellings += [f"{seconds // 3600}h", f"{seconds // 3600} hours"]
    return spellings


def time_spellings(seconds: int) -> list[str]:
    spellings = [str(seconds), f"{seconds}s"]
    if seconds % 60 == 0:
        spellings.append(f"{seconds // 60}m")
    return spellings


def cases(word: str) -> list[str]:
    return [word, word.lower(), word.upper(), word.title()]


def expected_cloud_params(values: dict) -> dict[str, object]:
    params: dict[str, object] = {
        "InstanceId": values["instance_id"],
        "Duration": values["duration"],
        "Product": values["product"],
    }
    optional = {
        "Host": values["host"],
        "DB": ",".join(values["db"]) or None,
        "Command": ",".join(values["command"]) or None,
        "Info": values["info"],
        "User": values["user"],
        "Time": values["time"],
    }
    params.update({name: value for name, value in optional.items() if value is not None})
    return params


def assert_card_matches_what_is_sent(spec: KillTaskSpec, values: dict) -> None:
    assert spec == KillTaskSpec(**values)
    assert spec.cloud_params() == expected_cloud_params(values)

    description = describe_filters(spec)
    shown = [
        *([values["user"]] if values["user"] else []),
        *([values["host"]] if values["host"] else []),
        *values["db"],
        *values["command"],
        *([values["info"]] if values["info"] else []),
        *([f"{values['time']} s"] if values["time"] is not None else []),
    ]
    for value in shown:
        assert value in description
    present = [n for n in FILTER_FIELDS if values[n] not in (None, ())]
    if not present:
        assert description == "EVERY session on the instance (no filter)"
    elif len(present) == 1:
        assert description.startswith("sessions where ")
        assert "ALL of" not in description
    else:
        assert description.startswith("sessions where ALL of: ")


@PROPERTY
@given(valid_values(exclude=SMART_QUOTES), st.data())
def test_valid_values_round_trip_through_the_one_line_form(values: dict, data) -> None:
    def key(name: str) -> str:
        return data.draw(st.sampled_from(cases(name)))

    tokens = [
        f"{key('duration')}={shlex.quote(data.draw(st.sampled_from(duration_spellings(values['duration']))))}"
    ]
    tokens.append(f"{key('product')}={data.draw(st.sampled_from(cases(values['product'])))}")
    if values["host"]:
        tokens.append(f"{key('host')}={shlex.quote(values['host'])}")
    if values["db"]:
        tokens.append(f"{key('db')}={shlex.quote(','.join(values['db']))}")
    if values["command"]:
        typed = [data.draw(st.sampled_from(cases(c))) for c in values["command"]]
        tokens.append(f"{key('command')}={shlex.quote(', '.join(typed))}")
    for name in ("info", "user", "reason"):
        if values[name]:
            tokens.append(f"{key(name)}={shlex.quote(values[name])}")
    if values["time"] is not None:
        spelled = data.draw(st.sampled_from(time_spellings(values["time"])))
        tokens.append(f"{key('time')}={shlex.quote(spelled)}")
    tokens = data.draw(st.permutations(tokens))
    text = slack_escape(" ".join([values["instance_id"], *tokens]))

    line = split_line(text)
    assert line.verb == "file"
    assert line.flags == frozenset()
    spec = build_spec(line.fields, POLICY_PROTECTED)
    assert_card_matches_what_is_sent(spec, values)


@PROPERTY
@given(valid_values(), st.data())
def test_valid_values_round_trip_through_the_modal(values: dict, data) -> None:
    def maybe_blank(value: str | None) -> str | None:
        return value if value else data.draw(st.sampled_from([None, "", "  "]))

    fields: dict[str, object] = {
        "instance_id": values["instance_id"],
        "product": values["product"],
        "duration": data.draw(st.sampled_from(duration_spellings(values["duration"]))),
        "host": maybe_blank(values["host"]),
        "db": maybe_blank(data.draw(st.sampled_from([",", ", ", " , "])).join(values["db"])),
        "command": list(values["command"])
        if values["command"]
        else data.draw(st.sampled_from([None, []])),
        "info": maybe_blank(values["info"]),
        "user": maybe_blank(values["user"]),
        "time": maybe_blank(None if values["time"] is None else str(values["time"])),
        "reason": maybe_blank(values["reason"]),
    }
    spec = build_spec(fields, POLICY_PROTECTED)
    assert_card_matches_what_is_sent(spec, values)


# ---------------------------------------------------------------- what needs kill_all


def spec_from_line(filters: str) -> KillTaskSpec:
    line = split_line(slack_escape(f"cdb-abc12345 duration=1h {filters}"))
    return build_spec(line.fields, POLICY_PROTECTED)


@PROPERTY
@given(times)
def test_a_session_time_alone_is_broad_below_a_minute(seconds: int) -> None:
    reason = broad_reason(spec_from_line(f"time={seconds}"))
    assert (reason is not None) == (seconds < MIN_TIME_ALONE)


@PROPERTY
@given(st.permutations(KILLABLE_COMMANDS), st.none() | times, st.data())
def test_every_killable_command_is_broad_however_typed(order, seconds, data) -> None:
    typed = [data.draw(st.sampled_from(cases(c))) for c in order]
    typed += data.draw(st.lists(st.sampled_from(typed), max_size=3))  # repeats change nothing
    time_filter = "" if seconds is None else f"time={seconds}"
    reason = broad_reason(spec_from_line(f"command={shlex.quote(','.join(typed))} {time_filter}"))
    assert reason is not None and "every command" in reason


@PROPERTY
@given(st.lists(st.sampled_from(KILLABLE_COMMANDS), min_size=1, unique=True), times)
def test_a_command_list_short_of_every_command_is_narrow(chosen, seconds) -> None:
    spec = spec_from_line(f"command={shlex.quote(','.join(chosen))} time={seconds}")
    assert (broad_reason(spec) is None) == (set(chosen) != set(KILLABLE_COMMANDS))


literal_chars = st.characters(
    exclude_categories=("Cc", "Cf", "Cs", "Z"), exclude_characters="%_\"'“”„‘’\\"
)
wildcards = st.text("%_", max_size=3)


@PROPERTY
@given(st.text(literal_chars, min_size=1, max_size=8), st.data())
def test_wildcards_never_count_towards_a_statement_prefix(literal: str, data) -> None:
    info = "".join(data.draw(wildcards) + ch for ch in literal) + data.draw(wildcards)
    reason = broad_reason(spec_from_line(f"user=app info={shlex.quote(info)}"))
    assert (reason is not None) == (len(literal) < MIN_INFO)
    assert reason is None or "statement prefix" in reason


@PROPERTY
@given(valid_values())
def test_a_narrowing_filter_leaves_only_the_prefix_rule(values: dict) -> None:
    spec = KillTaskSpec(**{**values, "user": values["user"] or "app"})
    reason = broad_reason(spec)
    if spec.info is None or len(spec.info.replace("%", "").replace("_", "")) >= MIN_INFO:
        assert reason is None
    else:
        assert reason is not None and "statement prefix" in reason
