"""The kill task's matching rules and the preview summary (pure, no I/O)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.killtask import KillTaskSpec
from bot.preview import Preview, Session, client_ip, list_filters, matches, summarize


def row(
    id: int,
    user="app",
    host="10.0.0.5:5123",
    db="orders",
    command="Query",
    time=10,
    info="SELECT * FROM orders",
    state="executing",
) -> dict[str, str]:
    return {
        "ID": str(id),
        "User": user,
        "Host": host,
        "DB": db,
        "State": state,
        "Command": command,
        "Time": str(time),
        "Info": info,
        "SqlType": "SELECT",
    }


def spec(**kw) -> KillTaskSpec:
    return KillTaskSpec(instance_id="cdb-abc123", duration=600, **kw)


def test_client_ip_forms() -> None:
    assert client_ip("10.0.0.5:51234") == "10.0.0.5"
    assert client_ip("[::1]:3306") == "::1"
    assert client_ip("::1") == "::1"
    assert client_ip("localhost") == "localhost"
    assert client_ip("db-proxy:7000") == "db-proxy"


def test_every_filter_must_hold() -> None:
    session = Session.from_row(row(1))
    assert matches(spec(user="app", host="10.0.0.5", db=("orders",), command=("Query",)), session)
    assert not matches(spec(user="app", db=("billing",)), session)
    assert not matches(spec(user="App"), session)  # account names are exact
    assert matches(spec(db=("billing", "orders")), session)  # one of several
    assert matches(spec(command=("query",)), session)  # commands compare without case


def test_info_is_a_prefix_and_time_a_minimum() -> None:
    session = Session.from_row(row(1, info="  SELECT * FROM orders WHERE id = 1", time=30))
    assert matches(spec(info="SELECT * FROM orders"), session)
    assert not matches(spec(info="FROM orders"), session)
    # DBbrain does not document whether case matters; the preview may only over-count
    assert matches(spec(info="select * from"), session)
    assert matches(spec(time=30), session)
    assert not matches(spec(time=31), session)


def test_system_threads_never_match() -> None:
    assert not matches(spec(), Session.from_row(row(1, user="system user", command="Connect")))
    assert not matches(spec(), Session.from_row(row(2, user="repl", command="Binlog Dump GTID")))
    assert not matches(spec(), Session.from_row(row(3, user="event_scheduler", command="Daemon")))


def test_list_filters_only_narrow_where_meaning_is_the_same() -> None:
    assert list_filters(
        spec(user="app", db=("orders",), command=("Query",), host="10.0.0.5", info="SELECT", time=5)
    ) == {
        "User": "app",
        "DB": "orders",
        "Command": "Query",
    }
    assert list_filters(spec(db=("a", "b"), command=("Query", "Sleep"))) == {}


def test_summary_counts_breakdowns_and_longest() -> None:
    rows = [row(i, user="app" if i % 3 else "batch", time=i) for i in range(1, 31)]
    rows.append(row(99, user="monitor", time=5))
    rows.append(row(100, command="Sleep", time=500))
    preview = summarize(
        spec(command=("Query",)),
        rows,
        read_at=1.0,
        limit=5000,
        protected_users=frozenset({"monitor"}),
    )
    assert preview.read == 32 and preview.matched == 31
    assert dict(preview.by_user) == {"app": 20, "batch": 10, "monitor": 1}
    assert [s.time for s in preview.longest] == [30, 29, 28, 27, 26]
    assert preview.protected == (("monitor", 1),)
    assert not preview.truncated
    assert Preview.from_dict(preview.to_dict()) == preview


def test_statements_are_cut_to_80_characters_or_hidden() -> None:
    rows = [row(1, info="SELECT " + "x" * 200)]
    shown = summarize(spec(), rows, read_at=1.0, limit=10)
    assert len(shown.longest[0].statement) == 80
    hidden = summarize(spec(), rows, read_at=1.0, limit=10, show_statements=False)
    assert hidden.longest[0].statement is None


def test_an_answer_at_the_limit_is_flagged_as_cut() -> None:
    assert summarize(spec(), [row(i) for i in range(10)], read_at=1.0, limit=10).truncated


sessions = st.builds(
    row,
    id=st.integers(1, 10_000),
    user=st.sampled_from(["app", "batch", "report", "system user"]),
    host=st.sampled_from(["10.0.0.5:1", "10.0.0.6:2", "localhost"]),
    db=st.sampled_from(["orders", "billing", ""]),
    command=st.sampled_from(["Query", "Sleep", "Execute", "Binlog Dump"]),
    time=st.integers(0, 100),
    info=st.sampled_from(["", "SELECT 1", "UPDATE orders SET x = 1", "select 2"]),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(sessions, max_size=40),
    st.sampled_from(["app", None]),
    st.sampled_from([None, 10]),
    st.sampled_from([(), ("Query",), ("Query", "Sleep")]),
)
def test_reading_broadly_then_matching_equals_matching_everything(rows, user, time, commands):
    """Narrowing the read with list_filters never changes what the preview counts."""
    wanted = spec(user=user, time=time, command=commands)
    narrowed_rows = [
        r for r in rows if all(str(r[k]) == str(v) for k, v in list_filters(wanted).items())
    ]
    everything = summarize(wanted, rows, read_at=1.0, limit=10_000)
    narrowed = summarize(wanted, narrowed_rows, read_at=1.0, limit=10_000)
    assert everything.matched == narrowed.matched
    assert everything.matched == sum(matches(wanted, Session.from_row(r)) for r in rows)
