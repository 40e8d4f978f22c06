"""The serial line protocol as pure functions: framing, CRC, requests, replies, fuzzing."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import serial_protocol as sp
from tracker.mount.axis import Limit

finite_deg = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)


# --------------------------------------------------------------------------- CRC and frames

def test_crc8_is_crc8_smbus():
    # Catalogue check value of CRC-8/SMBUS (poly 0x07, init 0): crc("123456789") = 0xF4.
    assert sp.crc8(b"123456789") == 0xF4
    assert sp.crc8(b"") == 0
    assert sp.crc8(b"\x01") == 0x07


def test_encode_frame_layout():
    frame = sp.encode_frame(12, ["RD", "A"])
    assert frame.startswith(b"#12 RD A*") and frame.endswith(b"\r\n")
    assert frame[-4:-2] == f"{sp.crc8(b'#12 RD A'):02X}".encode()
    assert len(frame) == len(b"#12 RD A*XX\r\n")


def test_decode_round_trip_and_lower_case_checksum():
    frame = sp.encode_frame(65535, ["PS", "E", "+12.345678", "+0.25000000"])
    assert sp.decode_frame(frame) == sp.Frame(65535, ("PS", "E", "+12.345678", "+0.25000000"))
    assert sp.decode_frame(frame[:-2]).seq == 65535  # terminator optional
    lower = frame[:-4] + frame[-4:-2].lower() + b"\r\n"
    assert sp.decode_frame(lower).words[0] == "PS"


@pytest.mark.parametrize("line, error", [
    (b"12 RD A*00\r\n", sp.FrameError),              # no '#'
    (b"#12 RD A\r\n", sp.FrameError),                # no checksum
    (b"#12 RD A*0\r\n", sp.FrameError),              # one checksum digit
    (b"#12 RD A*G1\r\n", sp.FrameError),             # not hex
    (b"#12 RD A* 1\r\n", sp.FrameError),             # int() would accept ' 1'
    (b"#12 RD A*00\r\n", sp.ChecksumError),          # wrong checksum
    (b"#" + b"9" * 200 + b"*00\r\n", sp.FrameError),  # too long
])
def test_decode_rejects(line, error):
    with pytest.raises(error):
        sp.decode_frame(line)


def _with_crc(body: bytes) -> bytes:
    return body + b"*" + f"{sp.crc8(body):02X}".encode() + b"\r\n"


@pytest.mark.parametrize("body", [
    b"#12  RD A",       # double space
    b"#12",             # no words
    b"#RD A",           # no sequence number
    b"#99999 RD A",     # sequence number above 65535
    b"#12 RD\xb0A",     # non-ASCII byte
    b"#12 RD\tA",       # control character
])
def test_decode_rejects_bad_contents_with_good_checksum(body):
    with pytest.raises(sp.FrameError):
        sp.decode_frame(_with_crc(body))


def test_checksum_error_carries_the_sequence_number():
    frame = bytearray(sp.encode_frame(321, ["OK"]))
    frame[-3] ^= 0x01  # flip the last checksum digit
    with pytest.raises(sp.ChecksumError) as info:
        sp.decode_frame(bytes(frame))
    assert info.value.seq == 321


@pytest.mark.parametrize("words", [[], ["R D"], [""], ["RD", "A*"], ["RD#"], ["RÖ"]])
def test_encode_refuses_unsendable_words(words):
    with pytest.raises(sp.MessageError):
        sp.encode_frame(1, words)


def test_encode_refuses_bad_sequence_number():
    with pytest.raises(sp.MessageError):
        sp.encode_frame(65536, ["HB"])
    with pytest.raises(sp.MessageError):
        sp.encode_frame(-1, ["HB"])


# --------------------------------------------------------------------------- line splitter

def test_splitter_drops_garbage_and_partial_lines():
    a = sp.encode_frame(1, ["OK"])
    b = sp.encode_frame(2, ["OK"])
    s = sp.LineSplitter()
    stream = b"\x00\xffnoise" + a[:5] + b"\r" + b + b"junk\r\n" + a
    assert s.feed(stream) == [b, a]
    assert s.dropped_bytes == len(b"\x00\xffnoise") + 6 + len(b"junk\r\n")
    assert s.pending == 0


def test_splitter_reassembles_byte_by_byte():
    frame = sp.encode_frame(7, ["OK", "A", "+1.000000", "+0.00000000", "EM", "N", "0"])
    s = sp.LineSplitter()
    out = []
    for i in range(len(frame)):
        out += s.feed(frame[i:i + 1])
        if i < len(frame) - 1:
            assert s.pending == i + 1
    assert out == [frame]


def test_splitter_drops_overlong_line_and_resyncs():
    s = sp.LineSplitter()
    good = sp.encode_frame(3, ["HB"])
    assert s.feed(b"#" + b"x" * 500) == []
    assert s.pending < sp.MAX_FRAME_BYTES
    assert s.feed(good) == [good]


# --------------------------------------------------------------------------- requests

@pytest.mark.parametrize("cmd, axis, args, expected", [
    ("RD", "A", (), ["RD", "A"]),
    ("RD", "B", (), ["RD", "B"]),
    ("VL", "E", (0.00416667,), ["VL", "E", "+0.00416667"]),
    ("VL", "A", (-0.5,), ["VL", "A", "-0.50000000"]),
    ("PS", "A", (-269.1234567, 0.5), ["PS", "A", "-269.123457", "+0.50000000"]),
    ("SP", "B", (), ["SP", "B"]),
    ("EN", "A", (), ["EN", "A"]),
    ("DI", "E", (), ["DI", "E"]),
    ("RS", "A", (), ["RS", "A"]),
    ("HB", "", (), ["HB"]),
])
def test_request_round_trip(cmd, axis, args, expected):
    words = sp.request_words(cmd, axis, *args)
    assert words == expected
    req = sp.parse_request(sp.decode_frame(sp.encode_frame(9, words)))
    assert (req.seq, req.command, req.axis) == (9, cmd, axis)
    assert req.args == pytest.approx(args, abs=1e-6)


@pytest.mark.parametrize("cmd, axis, args", [
    ("XX", "A", ()), ("VL", "B", (0.1,)), ("HB", "A", ()), ("RD", "", ()),
    ("VL", "A", ()), ("VL", "A", (math.nan,)), ("PS", "A", (1.0, math.inf)),
    ("VL", "A", (1e9,)), ("VL", "A", (True,)),
])
def test_request_words_refuses(cmd, axis, args):
    with pytest.raises(sp.MessageError):
        sp.request_words(cmd, axis, *args)


@pytest.mark.parametrize("words, code", [
    (["ZZ", "A"], sp.ERR_SYNTAX),
    (["RD"], sp.ERR_SYNTAX),
    (["VL", "A", "1", "2"], sp.ERR_SYNTAX),
    (["VL", "B", "+0.1"], sp.ERR_AXIS),
    (["RD", "X"], sp.ERR_AXIS),
    (["VL", "A", "nan"], sp.ERR_ARGUMENT),
    (["VL", "A", "1e3"], sp.ERR_ARGUMENT),
    (["PS", "A", "+1.0", "-0.5"], sp.ERR_ARGUMENT),
    (["PS", "A", "+1.0", "0"], sp.ERR_ARGUMENT),
])
def test_parse_request_error_codes(words, code):
    with pytest.raises(sp.MessageError) as info:
        sp.parse_request(sp.Frame(5, tuple(words)))
    assert info.value.error_code == code
    assert info.value.seq == 5


# --------------------------------------------------------------------------- replies

def test_state_reply_round_trip_both_axes():
    az = sp.AxisReport("A", 181.2345674, 0.0041666, True, True, Limit.NONE, 0)
    el = sp.AxisReport("E", -25.4, -0.000001, False, False, Limit.SOFT_LOW, 5)
    frame = sp.encode_frame(44, sp.ok_words([az, el]))
    reply = sp.parse_reply(sp.decode_frame(frame))
    assert reply.ok and reply.seq == 44
    got_az, got_el = reply.report("A"), reply.report("E")
    assert got_az.position_deg == pytest.approx(181.234567, abs=1e-9)
    assert got_az.velocity_deg_s == pytest.approx(0.0041666, abs=1e-12)
    assert (got_az.enabled, got_az.moving, got_az.limit, got_az.fault_code) == (
        True, True, Limit.NONE, 0)
    assert got_el.position_deg == pytest.approx(-25.4, abs=1e-9)
    assert (got_el.enabled, got_el.moving, got_el.limit, got_el.fault_code) == (
        False, False, Limit.SOFT_LOW, 5)
    assert b" - SL 5*" in frame


def test_error_reply_round_trip_and_cleaning():
    words = sp.error_words(sp.ERR_REFUSED, "faulted: hard limit switch hit #3 * now\n")
    assert words == ["ER", "RF", "faulted:", "hard", "limit", "switch", "hit", "3", "now"]
    reply = sp.parse_reply(sp.decode_frame(sp.encode_frame(8, words)))
    assert not reply.ok
    assert (reply.error_code, reply.error_text) == ("RF", "faulted: hard limit switch hit 3 now")
    long_words = sp.error_words(sp.ERR_INTERNAL, "word " * 100)
    assert len(sp.encode_frame(65535, long_words)) <= sp.MAX_FRAME_BYTES


@pytest.mark.parametrize("words", [
    ["MAYBE"], ["ER"], ["ER", "ZZ"], ["OK", "A", "+1.0"],
    ["OK", "X", "+1.0", "+0.0", "E", "N", "0"],
    ["OK", "A", "one", "+0.0", "E", "N", "0"],
    ["OK", "A", "+1.0", "+0.0", "ME", "N", "0"],
    ["OK", "A", "+1.0", "+0.0", "E", "Q", "0"],
    ["OK", "A", "+1.0", "+0.0", "E", "N", "1000"],
])
def test_parse_reply_rejects(words):
    with pytest.raises(sp.MessageError):
        sp.parse_reply(sp.Frame(1, tuple(words)))


# --------------------------------------------------------------------------- fuzzing

@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_raise_protocol_errors(data):
    for line in [data, *sp.LineSplitter().feed(data)]:
        try:
            frame = sp.decode_frame(line)
        except sp.SerialProtocolError:
            continue
        for parse in (sp.parse_reply, sp.parse_request):
            try:
                parse(frame)
            except sp.SerialProtocolError:
                pass


_frame_chars = st.sampled_from(list(b"#*\r\n 0123456789ABCDEFOKREVLPSNM+-.ab"))


@settings(max_examples=300, deadline=None)
@given(st.lists(_frame_chars, max_size=80).map(bytes))
def test_fuzz_frame_like_bytes_only_raise_protocol_errors(data):
    # Bytes drawn from the protocol's own alphabet reach deeper into the parser.
    try:
        frame = sp.decode_frame(data)
    except sp.SerialProtocolError:
        return
    for parse in (sp.parse_reply, sp.parse_request):
        try:
            parse(frame)
        except sp.SerialProtocolError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 65535), finite_deg, finite_deg, st.integers(0, 200),
       st.integers(1, 255))
def test_fuzz_single_byte_corruption_is_detected(seq, pos, vel, where, xor):
    report = sp.AxisReport("A", pos, vel / 1e3, True, False, Limit.NONE, 0)
    frame = sp.encode_frame(seq, sp.ok_words([report]))
    i = where % (len(frame) - 2)  # corrupt anything but the terminator
    bad = bytearray(frame)
    bad[i] ^= xor
    try:
        decoded = sp.decode_frame(bytes(bad))
    except sp.SerialProtocolError:
        return
    # Only a case change of a checksum digit keeps the same meaning.
    assert decoded == sp.decode_frame(frame)
    assert i >= len(frame) - 4


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 65535), finite_deg, st.floats(-10, 10), st.booleans(), st.booleans(),
       st.sampled_from(list(Limit)), st.integers(0, 999))
def test_fuzz_report_round_trip_precision(seq, pos, vel, enabled, moving, limit, code):
    report = sp.AxisReport("E", pos, vel, enabled, moving, limit, code)
    reply = sp.parse_reply(sp.decode_frame(sp.encode_frame(seq, sp.ok_words([report]))))
    got = reply.report("E")
    assert reply.seq == seq
    assert abs(got.position_deg - pos) <= 5e-7 + 1e-12 * abs(pos)
    assert abs(got.velocity_deg_s - vel) <= 5e-9 + 1e-15
    assert (got.enabled, got.moving, got.limit, got.fault_code) == (enabled, moving, limit, code)
