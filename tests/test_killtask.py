"""The kill-task spec: the one-line grammar, each field's rules, and the plain-words summary."""

from __future__ import annotations

import json

import pytest

from bot.killtask import (
    KILLABLE_COMMANDS,
    MAX_INFO,
    MAX_REASON,
    UNTIL_STOPPED,
    KillTaskSpec,
    SpecError,
    broad_reason,
    build_spec,
    describe_filters,
    parse_commands,
    parse_dbs,
    parse_duration,
    parse_host,
    parse_time,
    parse_user,
    split_line,
    unescape_slack,
)

POLICY_PROTECTED = frozenset({"monitor", "dbbrain_agent"})


def spec_of(line: str, protected: frozenset[str] = POLICY_PROTECTED) -> KillTaskSpec:
    return build_spec(split_line(line).fields, protected)


def errors_of(line: str, protected: frozenset[str] = POLICY_PROTECTED) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        spec_of(line, protected)
    return caught.value.errors


# ---------------------------------------------------------------- the one-line grammar


def test_a_full_line_is_split_into_fields() -> None:
    line = split_line(
        "cdb-abc12345 duration=10m user=app host=10.0.0.5 db=orders,billing command=Query,Sleep "
        'info="SELECT * FROM orders" time=30 product=mysql reason="pool exhausted"'
    )
    assert line.verb == "file"
    assert line.flags == frozenset()
    assert line.fields == {
        "instance_id": "cdb-abc12345",
        "duration": "10m",
        "user": "app",
        "host": "10.0.0.5",
        "db": "orders,billing",
        "command": "Query,Sleep",
        "info": "SELECT * FROM orders",
        "time": "30",
        "product": "mysql",
        "reason": "pool exhausted",
    }


def test_keys_are_case_insensitive() -> None:
    line = split_line("cdb-abc12345 DURATION=1h User=app Info=SELECT Reason=x")
    assert line.fields == {
        "instance_id": "cdb-abc12345",
        "duration": "1h",
        "user": "app",
        "info": "SELECT",
        "reason": "x",
    }


@pytest.mark.parametrize("key", ["instance", "InstanceId", "instance_id", "Instance-Id"])
def test_the_instance_can_also_be_given_by_key(key: str) -> None:
    assert split_line(f"duration=1h {key}=cdb-abc12345").fields["instance_id"] == "cdb-abc12345"


def test_values_are_shell_quoted() -> None:
    line = split_line("cdb-abc12345 duration=1h info=\"SELECT * FROM orders\" reason='it is slow'")
    assert line.fields["info"] == "SELECT * FROM orders"
    assert line.fields["reason"] == "it is slow"


def test_smart_quotes_are_accepted_as_quotes() -> None:
    line = split_line("cdb-abc12345 duration=1h info=“SELECT * FROM orders” reason=‘it is slow’")
    assert line.fields["info"] == "SELECT * FROM orders"
    assert line.fields["reason"] == "it is slow"


def test_smart_quotes_inside_a_value_become_plain_quotes() -> None:
    # The grammar turns every smart quote into its ASCII twin before splitting (Slack clients
    # "smarten" typed quotes), so a value cannot carry a smart quote through the one-line form.
    line = split_line("cdb-abc12345 duration=1h info=“SELECT * FROM t WHERE name = ‘bob’”")
    assert line.fields["info"] == "SELECT * FROM t WHERE name = 'bob'"


def test_slack_escaping_is_undone() -> None:
    line = split_line('cdb-abc12345 duration=1h info="SELECT a &lt; b &amp;&amp; c &gt; d"')
    assert line.fields["info"] == "SELECT a < b && c > d"


@pytest.mark.parametrize(
    ("sent_by_slack", "typed"),
    [
        ("&amp;lt;", "&lt;"),
        ("&amp;gt;", "&gt;"),
        ("&amp;amp;", "&amp;"),
        ("&amp;amp;lt;", "&amp;lt;"),
        ("&lt;&amp;&gt;", "<&>"),
        ("a &amp; b", "a & b"),
        ("&quot;", "&quot;"),  # Slack escapes only &, < and >
    ],
)
def test_slack_escaping_is_undone_exactly_once(sent_by_slack: str, typed: str) -> None:
    assert unescape_slack(sent_by_slack) == typed
    line = split_line(f'cdb-abc12345 duration=1h info="{sent_by_slack}"')
    assert line.fields["info"] == typed


@pytest.mark.parametrize(
    "text",
    [
        'cdb-abc12345 duration=1h info="SELECT * FROM orders',
        "cdb-abc12345 duration=1h reason='oops",
        "cdb-abc12345 duration=1h info=“SELECT",
        "cdb-abc12345 duration=1h info=trailing\\",
    ],
)
def test_an_unclosed_quote_is_a_line_error(text: str) -> None:
    with pytest.raises(SpecError) as caught:
        split_line(text)
    assert set(caught.value.errors) == {"line"}
    assert "quote" in caught.value.errors["line"]


def test_an_unknown_key_is_a_line_error_that_lists_the_known_keys() -> None:
    with pytest.raises(SpecError) as caught:
        split_line("cdb-abc12345 duration=1h usr=app")
    assert set(caught.value.errors) == {"line"}
    message = caught.value.errors["line"]
    assert "unknown key 'usr'" in message
    assert "user" in message and "duration" in message


def test_a_bare_word_after_the_instance_is_a_line_error() -> None:
    with pytest.raises(SpecError) as caught:
        split_line("cdb-abc12345 duration=1h SELECT")
    assert set(caught.value.errors) == {"line"}
    assert "'SELECT' is not key=value" in caught.value.errors["line"]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("cdb-abc12345 duration=1h DURATION=2h", "duration"),
        ("cdb-abc12345 duration=1h user=a User=b", "user"),
        ("cdb-abc12345 duration=1h instance=cdb-other", "instance_id"),
    ],
)
def test_a_key_given_twice_is_an_error_on_that_field(text: str, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        split_line(text)
    assert caught.value.errors == {field: "is given twice; give it once"}


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_no_text_opens_the_modal(text: str) -> None:
    assert split_line(text).verb == "modal"
    assert split_line(text).fields == {}


@pytest.mark.parametrize(
    ("text", "verb"), [("help", "help"), ("HELP me", "help"), ("List", "list")]
)
def test_help_and_list_ignore_the_rest_of_the_line(text: str, verb: str) -> None:
    line = split_line(text)
    assert line.verb == verb
    assert line.fields == {}


def test_stop_takes_an_instance_and_fields() -> None:
    line = split_line("Stop cdb-abc12345 product=cynosdb reason='done'")
    assert line.verb == "stop"
    assert line.fields == {"instance_id": "cdb-abc12345", "product": "cynosdb", "reason": "done"}


def test_flags_are_collected_and_normalised() -> None:
    line = split_line("cdb-abc12345 duration=1h --Break_Glass reason=x")
    assert line.flags == frozenset({"break-glass"})
    assert "break-glass" not in line.fields


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("600", 600),
        ("1", 1),
        ("10m", 600),
        ("10 min", 600),
        ("10 Minutes", 600),
        ("1h", 3600),
        ("2 hrs", 7200),
        ("90s", 90),
        ("24h", 86_400),
        ("86400", 86_400),
        ("until-stopped", UNTIL_STOPPED),
        ("Until-Stopped", UNTIL_STOPPED),
        ("until_stopped", UNTIL_STOPPED),
        ("forever", UNTIL_STOPPED),
        ("-1", UNTIL_STOPPED),
    ],
)
def test_durations(raw: str, seconds: int) -> None:
    assert parse_duration(raw) == seconds
    assert spec_of(f"cdb-abc12345 duration='{raw}'").duration == seconds


@pytest.mark.parametrize("raw", ["0", "0m", "25h", "86401", "1441m"])
def test_durations_out_of_range_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="between 1 second and 24 hours"):
        parse_duration(raw)


@pytest.mark.parametrize("raw", ["1d", "-5", "1.5h", "ten", "10m30s", "9" * 5000])
def test_durations_that_are_not_durations_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="must be seconds"):
        parse_duration(raw)


def test_a_duration_is_required() -> None:
    errors = errors_of("cdb-abc12345 user=app")
    assert set(errors) == {"duration"}
    assert "is required" in errors["duration"]


@pytest.mark.parametrize(("raw", "seconds"), [("0", 0), ("30", 30), ("5m", 300), ("", None)])
def test_session_time(raw: str, seconds: int | None) -> None:
    assert parse_time(raw) == seconds


@pytest.mark.parametrize("raw", ["-1", "abc", "2y", "31536001", "9" * 5000])
def test_bad_session_times_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        parse_time(raw)


# ---------------------------------------------------------------- hosts, databases, commands


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("10.0.0.5", "10.0.0.5"),
        (" 10.0.0.5 ", "10.0.0.5"),
        ("::1", "::1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("", None),
    ],
)
def test_hosts(raw: str, host: str | None) -> None:
    assert parse_host(raw) == host


@pytest.mark.parametrize(
    "raw",
    [
        "db.example.com",
        "localhost",
        "10.0.0.5:3306",
        "10.0.0.0/24",
        "10.0.0.%",
        "010.0.0.5",
        "fe80::1%eth0",  # a zone index is not part of a client's address
        "10.0.0.5,10.0.0.6",
    ],
)
def test_a_host_must_be_one_ip_address(raw: str) -> None:
    with pytest.raises(ValueError, match="must be one client IP address"):
        parse_host(raw)


def test_databases_are_split_on_commas_and_deduplicated() -> None:
    assert parse_dbs(" orders , billing,,orders ") == ("orders", "billing")
    assert parse_dbs(["orders", " ", "app_db$1"]) == ("orders", "app_db$1")
    assert parse_dbs("") == ()


@pytest.mark.parametrize("raw", ["orders billing", "or;ders", "x" * 65, "orders,bad.name"])
def test_bad_database_names_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="is not a database name"):
        parse_dbs(raw)


def test_commands_are_normalised_to_their_canonical_case() -> None:
    assert parse_commands("query, SLEEP,init   db") == ("Query", "Sleep", "Init DB")
    assert parse_commands(["execute", "Execute", "EXECUTE"]) == ("Execute",)
    assert spec_of("cdb-abc12345 duration=1h command='change USER'").command == ("Change user",)


@pytest.mark.parametrize(
    "raw", ["Binlog Dump", "binlog dump", "BINLOG  DUMP GTID", "register slave", "Daemon"]
)
def test_replication_and_server_threads_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="never killed"):
        parse_commands(f"Query,{raw}")


def test_unknown_commands_are_refused() -> None:
    with pytest.raises(ValueError, match="'Select' is not a MySQL thread command"):
        parse_commands("Query,Select")


# ---------------------------------------------------------------- accounts, info, reason


@pytest.mark.parametrize("user", ["system user", "System User", "SYSTEM USER", "event_scheduler"])
def test_server_accounts_are_protected(user: str) -> None:
    errors = errors_of(f"cdb-abc12345 duration=1h user='{user}'", frozenset())
    assert set(errors) == {"user"}
    assert "protected account" in errors["user"]


@pytest.mark.parametrize("user", ["monitor", "dbbrain_agent", "Monitor", "MONITOR"])
def test_accounts_the_policy_protects_are_refused(user: str) -> None:
    with pytest.raises(ValueError, match="protected account"):
        parse_user(user, POLICY_PROTECTED)


def test_other_accounts_are_accepted() -> None:
    assert parse_user("app", POLICY_PROTECTED) == "app"
    assert parse_user("monitor", frozenset()) == "monitor"
    assert parse_user("  ") is None


@pytest.mark.parametrize("user", ["a" * 33, "app,web", "app\tweb", "app\u200bweb"])
def test_an_account_is_one_plain_name(user: str) -> None:
    with pytest.raises(ValueError, match="one MySQL account name"):
        parse_user(user)


def test_info_limits() -> None:
    assert spec_of(f"cdb-abc12345 duration=1h info={'S' * MAX_INFO}").info == "S" * MAX_INFO
    assert "at most 500" in errors_of(f"cdb-abc12345 duration=1h info={'S' * 501}")["info"]
    fields = {"instance_id": "cdb-abc12345", "duration": "1h", "info": "SELECT\x07 1"}
    with pytest.raises(SpecError) as caught:
        build_spec(fields)
    assert "control characters" in caught.value.errors["info"]


def test_reason_control_characters_become_spaces() -> None:
    fields = {"instance_id": "cdb-abc12345", "duration": "1h", "reason": "pool\nexhausted\x00now"}
    assert build_spec(fields).reason == "pool exhausted now"
    fields["reason"] = "r" * (MAX_REASON + 1)
    with pytest.raises(SpecError) as caught:
        build_spec(fields)
    assert set(caught.value.errors) == {"reason"}


# ---------------------------------------------------------------- the whole spec


def test_build_spec_reports_every_bad_field_at_once() -> None:
    fields = {
        "instance_id": "CDB_ABC",
        "duration": "0",
        "product": "postgres",
        "host": "db.example.com",
        "db": "bad name",
        "command": "Binlog Dump",
        "user": "system user",
        "time": "soon",
        "info": "x" * 501,
    }
    with pytest.raises(SpecError) as caught:
        build_spec(fields)
    assert set(caught.value.errors) == set(fields)
    message = str(caught.value)
    assert message.startswith("instance: must be a Tencent Cloud instance ID")
    assert "client host: must be one client IP address" in message


def test_build_spec_with_nothing_names_the_required_fields() -> None:
    with pytest.raises(SpecError) as caught:
        build_spec({})
    assert set(caught.value.errors) == {"instance_id", "duration"}


def test_build_spec_defaults() -> None:
    spec = spec_of("cdb-abc12345 duration=600")
    assert spec == KillTaskSpec(instance_id="cdb-abc12345", duration=600, product="mysql")
    assert spec_of("cynosdbmysql-ins-abc12345 duration=1h product=CynosDB").product == "cynosdb"


@pytest.mark.parametrize("instance", ["cdb", "CDB-abc", "cdb_abc", "-cdb-abc", "cdb-", "cdb-ab c"])
def test_bad_instance_ids_are_refused(instance: str) -> None:
    assert "instance_id" in errors_of(f"instance='{instance}' duration=1h")


# ---------------------------------------------------------------- what the card says, what is sent

FULL = KillTaskSpec(
    instance_id="cdb-abc12345",
    duration=600,
    product="cynosdb",
    host="10.0.0.5",
    db=("orders", "billing"),
    command=("Query", "Sleep"),
    info="SELECT * FROM orders",
    user="app",
    time=30,
    reason="pool exhausted",
)


def test_describe_one_filter() -> None:
    spec = spec_of("cdb-abc12345 duration=1h user=app")
    assert describe_filters(spec) == "sessions where account = app"
    spec = spec_of("cdb-abc12345 duration=1h db=orders")
    assert describe_filters(spec) == "sessions where database is orders"


def test_describe_several_filters() -> None:
    assert describe_filters(FULL) == (
        "sessions where ALL of: account = app, client host = 10.0.0.5, "
        "database is one of orders, billing, command is one of Query, Sleep, "
        'statement starts with "SELECT * FROM orders", running ≥ 30 s'
    )


def test_describe_no_filter() -> None:
    spec = spec_of("cdb-abc12345 duration=1h")
    assert describe_filters(spec) == "EVERY session on the instance (no filter)"


def test_describe_a_zero_session_time_as_a_filter() -> None:
    spec = spec_of("cdb-abc12345 duration=1h time=0")
    assert describe_filters(spec) == "sessions where running ≥ 0 s"


def test_cloud_params_send_every_filter_and_join_lists_with_commas() -> None:
    assert FULL.cloud_params() == {
        "InstanceId": "cdb-abc12345",
        "Duration": 600,
        "Product": "cynosdb",
        "Host": "10.0.0.5",
        "DB": "orders,billing",
        "Command": "Query,Sleep",
        "Info": "SELECT * FROM orders",
        "User": "app",
        "Time": 30,
    }


def test_cloud_params_leave_out_absent_filters() -> None:
    spec = spec_of("cdb-abc12345 duration=until-stopped reason=because")
    assert spec.cloud_params() == {"InstanceId": "cdb-abc12345", "Duration": -1, "Product": "mysql"}
    spec = spec_of("cdb-abc12345 duration=1h time=0")
    assert spec.cloud_params() == {
        "InstanceId": "cdb-abc12345",
        "Duration": 3600,
        "Product": "mysql",
        "Time": 0,
    }


EVERY_COMMAND = ",".join(sorted(KILLABLE_COMMANDS))
ALL_BUT_SLEEP = ",".join(sorted(KILLABLE_COMMANDS - {"Sleep"}))


@pytest.mark.parametrize(
    ("filters", "why"),
    [
        ("", "no filter"),
        ("reason=because", "no filter"),
        ("info=SEL", "fewer than 4 characters other than the wildcards % and _"),
        ("info=SEL user=app", "fewer than 4 characters"),
        ("info=%%%%", "fewer than 4 characters"),
        ("info=S%%%_", "fewer than 4 characters"),
        ("info='%S_E%L%' db=orders", "fewer than 4 characters"),
        ("time=0", "its only filter is a session time under 60 s"),
        ("time=1", "session time under 60 s"),
        ("time=59", "session time under 60 s"),
        ("time=59s", "session time under 60 s"),
        (f"command='{EVERY_COMMAND}'", "names every command that may be killed"),
        (f"command='{EVERY_COMMAND.upper()}' time=30", "names every command that may be killed"),
        (f"command='{EVERY_COMMAND}' time=1h", "names every command that may be killed"),
    ],
)
def test_broad_specs(filters: str, why: str) -> None:
    reason = broad_reason(spec_of(f"cdb-abc12345 duration=1h {filters}"))
    assert reason is not None
    assert why in reason


@pytest.mark.parametrize(
    "filters",
    [
        "user=app",
        "info=SELE",
        "info=SELE%",
        "info='S_L_E_C'",
        "time=60",
        "time=1m",
        "time=1 user=app",
        "time=0 user=app",
        "time=1 command=Query",
        "time=0 db=orders",
        "command=Sleep",
        f"command='{ALL_BUT_SLEEP}'",
        f"command='{EVERY_COMMAND}' user=app",
        f"command='{EVERY_COMMAND}' db=orders time=1",
        "db=orders",
    ],
)
def test_narrow_specs(filters: str) -> None:
    assert broad_reason(spec_of(f"cdb-abc12345 duration=1h {filters}")) is None


def test_only_the_statement_prefix_reason_names_the_prefix() -> None:
    # The service marks the modal's info field when the reason mentions the prefix.
    wide = ["", "info=SEL", "time=5", f"command='{EVERY_COMMAND}'"]
    reasons = [broad_reason(spec_of(f"cdb-abc12345 duration=1h {f}")) or "" for f in wide]
    assert ["prefix" in reason for reason in reasons] == [False, True, False, False]


@pytest.mark.parametrize(
    "spec",
    [
        FULL,
        KillTaskSpec(instance_id="cdb-abc12345", duration=UNTIL_STOPPED),
        KillTaskSpec(instance_id="cdb-abc12345", duration=60, time=0, command=("Query",)),
    ],
)
def test_to_dict_and_from_dict_round_trip(spec: KillTaskSpec) -> None:
    data = spec.to_dict()
    assert isinstance(data["db"], list)
    assert isinstance(data["command"], list)
    assert KillTaskSpec.from_dict(data) == spec
    assert KillTaskSpec.from_dict(json.loads(json.dumps(data))) == spec
