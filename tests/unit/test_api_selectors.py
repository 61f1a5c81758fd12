"""Label selectors (kubeless.api.selectors) as kubectl reads them, on plain data."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from kubeless.api.selectors import InvalidSelector, Requirement, Selector, parse_selector

R = Requirement
PARSED = {
    "empty": ("", ()),
    "blank": ("  ", ()),
    "equals": ("app=web", (R("app", "=", ("web",)),)),
    "double equals": ("app==web", (R("app", "=", ("web",)),)),
    "not equals": ("app!=web", (R("app", "!=", ("web",)),)),
    "empty value": ("tier=", (R("tier", "=", ("",)),)),
    "exists": ("app", (R("app", "exists"),)),
    "does not exist": ("!canary", (R("canary", "!"),)),
    "in": ("app in (web)", (R("app", "in", ("web",)),)),
    "in, several values, spaces": ("app in ( web , api )", (R("app", "in", ("web", "api")),)),
    "notin": ("app notin (a,b)", (R("app", "notin", ("a", "b")),)),
    "commas inside parentheses": ("app in (a,b),tier=db,!x",
                                  (R("app", "in", ("a", "b")), R("tier", "=", ("db",)), R("x", "!"))),
    "spaces around operators": ("app = web , tier != db",
                                (R("app", "=", ("web",)), R("tier", "!=", ("db",)))),
    "prefixed key": ("kubeless.io/owner=git", (R("kubeless.io/owner", "=", ("git",)),)),
    "one key twice": ("app!=a,app!=b", (R("app", "!=", ("a",)), R("app", "!=", ("b",)))),
    "in and notin as values": ("op=in", (R("op", "=", ("in",)),)),
}


@pytest.mark.parametrize(("text", "expected"), PARSED.values(), ids=PARSED.keys())
def test_parse(text: str, expected: tuple[Requirement, ...]) -> None:
    assert parse_selector(text) == Selector(expected)


def test_str_parses_back() -> None:
    for text, _ in PARSED.values():
        sel = parse_selector(text)
        assert parse_selector(str(sel)) == sel


REFUSED = {
    "in without parentheses": ("app in web", 'expected "(" after in'),
    "unclosed": ("app in (a,", 'expected ")" to close the values of in'),
    "empty set": ("app in ()", "in needs at least one value"),
    "values without comma": ("app in (a b)", 'expected "," or ")" in the values of in'),
    "two words": ("app web", 'expected =, ==, !=, in or notin after "app", found "web"'),
    "no key": ("=web", 'expected a label key, found "="'),
    "lonely comma": (",", 'expected a label key, found ","'),
    "trailing comma": ("app=web,", 'nothing after the last ","'),
    "bang alone": ("!", "expected a label key"),
    "bad key": ("a b c=1", 'found "b"'),
    "greater than": ("replicas>1", '"replicas>1" is not a valid label key'),
    "bad value": ("app=we*b", '"we*b" is not a valid label value'),
    "value is a symbol": ("app=(", 'expected a label value, found "("'),
    "two operators": ("app=web=x", 'expected "," between requirements, found "="'),
    "bad value in a set": ("app in (a,b!)", "expected"),
}


@pytest.mark.parametrize(("text", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidSelector) as caught:
        parse_selector(text)
    assert str(caught.value).startswith(f'bad label selector "{text}": ')
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


WEB = {"app": "web", "tier": "front"}
MATCHES = {
    "empty selects everything": ("", WEB, True),
    "equals": ("app=web", WEB, True),
    "equals, other value": ("app=api", WEB, False),
    "equals needs the key": ("zone=eu", WEB, False),
    "empty value needs the key": ("zone=", WEB, False),
    "empty value matches an empty label": ("zone=", {"zone": ""}, True),
    "not equals": ("app!=api", WEB, True),
    "not equals, same value": ("app!=web", WEB, False),
    "not equals matches without the key": ("zone!=eu", WEB, True),
    "in": ("app in (api,web)", WEB, True),
    "in, not there": ("app in (api,db)", WEB, False),
    "in needs the key": ("zone in (eu)", WEB, False),
    "notin": ("app notin (api,db)", WEB, True),
    "notin, there": ("app notin (web)", WEB, False),
    "notin matches without the key": ("zone notin (eu)", WEB, True),
    "exists": ("tier", WEB, True),
    "exists, absent": ("zone", WEB, False),
    "does not exist": ("!zone", WEB, True),
    "does not exist, present": ("!app", WEB, False),
    "all must hold": ("app=web,tier=back", WEB, False),
    "no labels at all": ("app!=web,!tier", {}, True),
}


@pytest.mark.parametrize(("text", "labels", "expected"), MATCHES.values(), ids=MATCHES.keys())
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(text).matches(labels) is expected


def test_none_labels_read_as_none() -> None:
    assert parse_selector("!app").matches(None)
    assert not parse_selector("app").matches(None)


_keys = st.sampled_from(["app", "tier", "zone"])
_values = st.sampled_from(["web", "api", ""])


@given(labels=st.dictionaries(_keys, _values), key=_keys, value=_values,
       values=st.lists(st.sampled_from(["web", "api"]), min_size=1, max_size=3))
def test_negations_are_complements(labels: dict[str, str], key: str, value: str,
                                   values: list[str]) -> None:
    """kubectl's negative forms hold exactly where the positive ones fail (so they also
    match objects without the key)."""
    joined = ",".join(values)
    for positive, negative in ((f"{key}={value}", f"{key}!={value}"),
                               (f"{key} in ({joined})", f"{key} notin ({joined})"),
                               (key, f"!{key}")):
        assert parse_selector(positive).matches(labels) != parse_selector(negative).matches(labels)
