"""read_cookie: the session cookie found exactly, whatever else the header carries."""

from __future__ import annotations

import pytest

from regcopilot.web.middleware import read_cookie

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
