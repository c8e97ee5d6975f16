"""read_cookie: the session cookie found exactly, whatever else the header carries."""

from __future__ import annotations

import pytest

from regcopilot.web.middleware import DuplicateCookie, read_cookie, read_session_cookie

NAME = "regcopilot.session-token"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"regcopilot.session-token=abc", "abc"),
        (b"a=1; regcopilot.session-token=abc; b=2", "abc"),
        (b"x=1;regcopilot.session-token=t2", "t2"),
        (b"__Secure-regcopilot.session-token=zzz", None),  # another cookie's name ends like ours
        (b"__Secure-regcopilot.session-token=zzz; regcopilot.session-token=ok", "ok"),
        (b"regcopilot.session-token=", None),
        (b'regcopilot.session-token="quoted"', "quoted"),
        (b"other=1", None),
    ],
)
def test_read_cookie(header, expected):
    assert read_cookie({"headers": [(b"cookie", header)]}, NAME) == expected


def test_read_cookie_looks_at_every_cookie_header():
    scope = {"headers": [(b"cookie", b"a=1"), (b"cookie", b"regcopilot.session-token=two")]}
    assert read_cookie(scope, NAME) == "two"


@pytest.mark.parametrize(
    "headers",
    [
        [b"regcopilot.session-token=good; regcopilot.session-token=garbage"],
        [b"regcopilot.session-token=good;regcopilot.session-token=good"],
        [b"a=1; regcopilot.session-token=; b=2; regcopilot.session-token=good"],
        [b"regcopilot.session-token=good", b"regcopilot.session-token=garbage"],
        [b"a=1", b"regcopilot.session-token=x; b=2", b"c=3; regcopilot.session-token=y"],
    ],
)
def test_read_session_cookie_refuses_a_second_copy(headers):
    scope = {"headers": [(b"cookie", h) for h in headers]}
    with pytest.raises(DuplicateCookie):
        read_session_cookie(scope, NAME)
    # The lenient reader (sign-out, the session probe) still takes the first.
    assert read_cookie(scope, NAME) is not None or b"=;" in headers[0]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"__Secure-regcopilot.session-token=zzz; regcopilot.session-token=ok", "ok"),
        (b"regcopilot.session-token=ok; x-regcopilot.session-token=zzz", "ok"),
        (b"regcopilot.session-token=ok; other=regcopilot.session-token=zzz", "ok"),
        (b"xregcopilot.session-token=zzz", None),
    ],
)
def test_read_session_cookie_ignores_names_that_merely_end_like_ours(header, expected):
    assert read_session_cookie({"headers": [(b"cookie", header)]}, NAME) == expected
