"""The rule-line tokenizer follows iptables-restore's add_param_to_argv (xshared.c)."""

import pytest
from hypothesis import given, strategies as st

from conntrace.errors import InputError
from conntrace.ruleset.iptables_save import tokenize
from conntrace.ruleset.writer import quote_token, save_string
from conntrace.ruleset.ext import SaveString


@pytest.mark.parametrize("line,words", [
    ("-A INPUT  -j\tACCEPT", ["-A", "INPUT", "-j", "ACCEPT"]),
    ('--comment "a b"', ["--comment", "a b"]),
    (r'--comment "a \"b\""', ["--comment", 'a "b"']),
    # backslash escapes any character inside quotes (765855.txt: "\'[INPUT]\'")
    (r'--log-prefix "\'[INPUT]\'"', ["--log-prefix", "'[INPUT]'"]),
    # outside quotes, backslash and single quotes are ordinary characters
    (r"--comment x\'y", ["--comment", r"x\'y"]),
    ("--comment 'a b'", ["--comment", "'a", "b'"]),
    # a closing quote ends the word (iptables-restore: Bad argument `cd')
    ('"ab"cd', ["ab", "cd"]),
    # a quote inside a word opens a quoted part of the same word
    ('ab"c d"', ["abc d"]),
    ('""', [""]),
    ('x ""', ["x", ""]),
    ('"unterminated', ["unterminated"]),
    ("", []),
])
def test_tokenize(line, words):
    assert tokenize(line) == words


def test_parameter_too_long():
    with pytest.raises(InputError) as e:
        tokenize("-A " + "x" * 1100, "f", 3)
    assert str(e.value).startswith("f:3: parameter too long")


@pytest.mark.parametrize("value,written", [
    ("abc-_9", "abc-_9"),
    ("foo.bar", '"foo.bar"'),  # iptables-save quotes anything outside [A-Za-z0-9_-]
    ("", '""'),
    ('a"b', r'"a\"b"'),
    ("x'y", r'"x\'y"'),
    ("a\\b", r'"a\\b"'),
])
def test_save_string(value, written):
    assert save_string(value) == written
    assert tokenize(written) == [value]


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\n\r"),
               max_size=40))
def test_quote_token_reads_back(value):
    assert tokenize(quote_token(value)) == [value]
    assert tokenize(quote_token(SaveString(value))) == [value]
