"""UTF-16 / UTF-8 / UTF-32 position conversion, including emoji (surrogate pairs)."""

from hypothesis import given
from hypothesis import strategies as st

from lsp_server.positions import (
    UTF8,
    UTF16,
    UTF32,
    LineIndex,
    apply_change,
    column_to_index,
    index_to_column,
    line_starts,
)

EMOJI = "\U0001f600"  # 😀: 1 code point, 2 UTF-16 units, 4 UTF-8 bytes


def ref_units(s: str, enc: str) -> int:
    if enc == UTF16:
        return len(s.encode("utf-16-le", "surrogatepass")) // 2
    if enc == UTF8:
        return len(s.encode("utf-8", "surrogatepass"))
    return len(s)


def test_emoji_columns():
    line = f"a{EMOJI}b"
    assert index_to_column(line, 2, UTF16) == 3
    assert index_to_column(line, 2, UTF8) == 5
    assert index_to_column(line, 2, UTF32) == 2
    assert column_to_index(line, 3, UTF16) == 2  # after the emoji
    assert column_to_index(line, 1, UTF16) == 1  # before it
    assert column_to_index(line, 2, UTF16) == 1  # inside the surrogate pair: rounds down
    assert column_to_index(line, 3, UTF8) == 1  # inside the 4 bytes: rounds down
    assert column_to_index(line, 99, UTF16) == len(line)  # past the end: end of line


def test_line_breaks_and_clamping():
    text = "ab\r\ncd\ref\n" + EMOJI
    assert line_starts(text) == [0, 4, 7, 10]
    idx = LineIndex(text)
    assert idx.line_text(0) == "ab" and idx.line_text(1) == "cd" and idx.line_text(3) == EMOJI
    assert idx.offset(0, 10) == 2  # clamps before "\r\n"
    assert idx.offset(9, 0) == len(text)  # line past the end: end of document
    assert idx.position(3) == (0, 2)  # between "\r" and "\n": end of the line
    assert idx.position(len(text)) == (3, 2)
    assert idx.position(len(text), UTF8) == (3, 4)


def test_apply_change_after_emoji():
    text = f'x = "{EMOJI}"\ny = 1\n'
    # insert after the closing quote of line 0: UTF-16 column 8 (the emoji counts 2)
    out = apply_change(text, (0, 8), (0, 8), " + z", UTF16)
    assert out == f'x = "{EMOJI}" + z\ny = 1\n'
    out8 = apply_change(text, (0, 10), (0, 10), " + z", UTF8)
    assert out8 == out
    # replace the emoji itself
    assert apply_change(text, (0, 5), (0, 7), "E", UTF16) == 'x = "E"\ny = 1\n'
    # a range spanning a line break
    assert apply_change(text, (0, 9), (1, 0), "; ", UTF16) == f'x = "{EMOJI}"; y = 1\n'


PIECES = ["a", " ", "\n", "\r", "\r\n", "é", "中", EMOJI, "\U0001f9d1\u200d\U0001f4bb", "\t"]
text_chars = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


@given(text_chars, st.sampled_from([UTF8, UTF16, UTF32]))
def test_round_trip_matches_reference(text, enc):
    idx = LineIndex(text)
    for off in range(len(text) + 1):
        if 0 < off < len(text) and text[off - 1] == "\r" and text[off] == "\n":
            continue  # inside a "\r\n": not a position
        line, col = idx.position(off, enc)
        start, _ = idx.line_bounds(line)
        assert col == ref_units(text[start:off], enc)
        assert idx.offset(line, col, enc) == off


@given(text_chars, st.integers(0, 60), st.integers(0, 60), st.sampled_from([UTF8, UTF16, UTF32]))
def test_offsets_are_clamped_and_on_code_points(text, line, col, enc):
    idx = LineIndex(text)
    off = idx.offset(line, col, enc)
    assert 0 <= off <= len(text)
    if line < idx.line_count:
        start, end = idx.line_bounds(line)
        assert start <= off <= end
        assert ref_units(text[start:off], enc) <= col


@given(text_chars, text_chars, st.data())
def test_apply_change_equals_splice(text, new, data):
    a = data.draw(st.integers(0, len(text)))
    b = data.draw(st.integers(a, len(text)))
    idx = LineIndex(text)
    pa, pb = idx.position(a), idx.position(b)
    got = apply_change(text, pa, pb, new, UTF16)
    a2, b2 = idx.offset(*pa), idx.offset(*pb)  # offsets inside "\r\n" move to the line end
    assert got == text[:a2] + new + text[b2:]


@given(text_chars, text_chars, st.data())
def test_incremental_index_equals_a_fresh_one(text, new, data):
    # raw offsets, so that edits land inside "\r\n" too and join or split pairs
    a = data.draw(st.integers(0, len(text)))
    b = data.draw(st.integers(a, len(text)))
    got = LineIndex(text).replaced(a, b, new)
    want = text[:a] + new + text[b:]
    assert got.text == want
    assert got.starts == line_starts(want)


def test_incremental_index_joins_and_splits_crlf():
    idx = LineIndex("ab\rcd\n")
    assert idx.replaced(3, 3, "\n").starts == [0, 4, 7]  # "\r" + "\n" is one break
    assert LineIndex("ab\r\ncd").replaced(3, 3, "x").starts == [0, 3, 5]  # split in two
    assert idx.replaced(0, 7, "").starts == [0]

