"""json_value_end, the import that checks each member value of a frame for the module: the bridge
core's C (through pigeonhub._bridge) against Python's json module on valid values, and on the ways
a value can be broken. The module's own scanner tests (test/module) cover the frames around them."""
import json
import random

import pytest

from pigeonhub._bridge import json_value_end

SYNTAX, UTF8, DEPTH = -1, -2, -4
MAX_DEPTH = 32   # PH_JSON_MAX_DEPTH: the frame's object counts, so a value may nest 31 deep


def random_value(rng, depth=0):
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice([0, -1, 12, 3.5, -0.25, 1e21, 123456789012345])
    if kind == 1:
        return rng.choice(["", "a", "é", "\u2026", "\U0001F600", 'q"uote', "back\\slash", "\r\n", "\x01"])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return "candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host"
    if kind == 4:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{i}": random_value(rng, depth + 1) for i in range(rng.randrange(4))}


def dumps(rng, value):
    """Compact, spaced or pretty, with or without escaping non-ASCII."""
    style = rng.randrange(3)
    ascii_only = rng.random() < 0.5
    if style == 0:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=ascii_only)
    if style == 1:
        return json.dumps(value, ensure_ascii=ascii_only)
    return json.dumps(value, indent=1, ensure_ascii=ascii_only)


def test_valid_values_end_exactly_where_json_says():
    rng = random.Random(7)
    for _ in range(3000):
        text = dumps(rng, random_value(rng)).encode()
        assert json_value_end(text) == len(text), text
        # what follows the value is not looked at: the module reads on from there
        assert json_value_end(text + b',"next":1}') == len(text), text


@pytest.mark.parametrize("text,expected", [
    (b"0", 1), (b"-0", 2), (b"1.5e+10", 7), (b"-12.0E-3", 8), (b"true", 4), (b"false", 5),
    (b"null", 4), (b'""', 2), (b"[]", 2), (b"{}", 2), (b"[ ]", 3), (b'{ "a" : [ 1 , 2 ] }', 19),
    (b"12}", 2), (b'"x"]', 3),
])
def test_values(text, expected):
    assert json_value_end(text) == expected


@pytest.mark.parametrize("text", [
    b"", b" 1", b"01", b"-", b"1.", b".5", b"1e", b"1e+", b"+1", b"tru", b"nul", b"True", b"[",
    b"[1,]", b"[1 2]", b"{", b'{"a"}', b'{"a":}', b'{"a":1,}', b'{a:1}', b"{'a':1}", b'{"a":1]',
    b'["a"', b'"abc', b'"\\x"', b'"\\u12G4"', b'"tab\there"', b"[1}", b"NaN", b"Infinity", b"}",
])
def test_syntax_errors(text):
    assert json_value_end(text) == SYNTAX, text


@pytest.mark.parametrize("text", [
    b'"\xff"', b'"\xc0\x80"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"', b'["ok", "\xe2\x82"]',
    b'{"\xc3":1}',
])
def test_utf8_errors(text):
    assert json_value_end(text) == UTF8, text


def test_every_truncation_of_a_container_is_refused():
    text = json.dumps({"type": "offer", "sdp": "v=0\r\n", "list": [1, 2.5, None, {"x": "y"}]}).encode()
    for cut in range(1, len(text)):
        assert json_value_end(text[:cut]) == SYNTAX, text[:cut]


def test_nesting_limit_counts_the_frames_own_object():
    deepest = b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)
    assert json_value_end(deepest) == len(deepest)
    too_deep = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert json_value_end(too_deep) == DEPTH
    mixed = b'{"a":' * (MAX_DEPTH - 1) + b"1" + b"}" * (MAX_DEPTH - 1)
    assert json_value_end(mixed) == len(mixed)
    # hostile nesting costs no stack: far beyond the limit is refused, not a crash
    assert json_value_end(b"[" * 100_000) == DEPTH
