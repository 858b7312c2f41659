import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.slack.command_line import UsageError, parse, parse_key_values
from bot.slack.text import escape


def test_flags_options_and_positionals():
    line = parse('promote churn --variant v42 "rolling it out" --force', flags=frozenset({"force"}),
                 options=frozenset({"variant"}))
    assert line.subcommand == "promote"
    assert line.args == ("churn", "rolling it out")
    assert line.flags == {"force"} and line.options == {"variant": "v42"}


def test_option_with_equals():
    assert parse("pricing 2 8 --region=eu-west-1", options=frozenset({"region"})).options == {"region": "eu-west-1"}


@pytest.mark.parametrize(
    "text, message",
    [
        ('rollback churn "unbalanced', "check your quotes"),
        ("promote churn --variant", "--variant needs a value"),
        ("promote churn --forse", "unknown option"),
        ("promote churn --force=yes", "takes no value"),
    ],
)
def test_usage_errors_say_what_was_wrong(text, message):
    with pytest.raises(UsageError, match=message):
        parse(text, flags=frozenset({"force"}), options=frozenset({"variant"}))


def test_curly_quotes_from_phones_work():
    assert parse("rollback churn \u201cbad auc\u201d").args == ("churn", "bad auc")


def test_key_values():
    assert parse_key_values(["epochs=3", "lr=0.1"]) == {"epochs": "3", "lr": "0.1"}
    with pytest.raises(UsageError, match="is not key=value"):
        parse_key_values(["epochs"])


@given(st.text())
def test_escape_leaves_no_control_sequences(text):
    out = escape(text)
    assert "<" not in out and ">" not in out
    assert out.replace("&amp;", "").count("&") == out.count("&lt;") + out.count("&gt;")
