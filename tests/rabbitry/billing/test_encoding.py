"""GSM-7 / UCS-2 detection and segment counting, against the figures of sms-domain.md 1.4 and an
independent reference (encode to bytes, then cut the bytes)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rabbitry.billing import Encoding, encoding_of, is_gsm7, segment

# The GSM 03.38 default alphabet written as code points, row by row (0x1B is ESC, None here).
REFERENCE_BASIC = [
    0x40, 0xA3, 0x24, 0xA5, 0xE8, 0xE9, 0xF9, 0xEC, 0xF2, 0xC7, 0x0A, 0xD8, 0xF8, 0x0D, 0xC5, 0xE5,
    0x394, 0x5F, 0x3A6, 0x393, 0x39B, 0x3A9, 0x3A0, 0x3A8, 0x3A3, 0x398, 0x39E, None, 0xC6, 0xE6,
    0xDF, 0xC9, 0x20, 0x21, 0x22, 0x23, 0xA4, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D,
    0x2E, 0x2F, *range(0x30, 0x3A), 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F,
    0xA1, *range(0x41, 0x5B), 0xC4, 0xD6, 0xD1, 0xDC, 0xA7,
    0xBF, *range(0x61, 0x7B), 0xE4, 0xF6, 0xF1, 0xFC, 0xE0,
]  # fmt: skip
REFERENCE_EXTENSION = {0x0C: 0x0A, 0x5E: 0x14, 0x7B: 0x28, 0x7D: 0x29, 0x5C: 0x2F, 0x5B: 0x3C,
                       0x7E: 0x3D, 0x5D: 0x3E, 0x7C: 0x40, 0x20AC: 0x65}  # fmt: skip
GSM_CHARS = [chr(code) for code in REFERENCE_BASIC if code is not None]
EXTENSION_CHARS = [chr(code) for code in REFERENCE_EXTENSION]


def reference_gsm_bytes(text: str) -> bytes | None:
    """Unpacked GSM-7: one septet per byte, ESC (0x1B) before an extension code; None if not GSM."""
    out = bytearray()
    for char in text:
        if ord(char) in REFERENCE_EXTENSION:
            out += bytes([0x1B, REFERENCE_EXTENSION[ord(char)]])
        elif ord(char) in REFERENCE_BASIC:
            out.append(REFERENCE_BASIC.index(ord(char)))
        else:
            return None
    return bytes(out)


def reference_split(text: str) -> tuple[str, int, list[bytes]]:
    """(encoding, length, parts as bytes), cutting encoded bytes and backing off a split pair."""
    encoded = reference_gsm_bytes(text)
    if encoded is not None:
        encoding, data, single, part, unit = "gsm7", encoded, 160, 153, 1
    else:
        encoding, data, unit = "ucs2", text.encode("utf-16-be", "surrogatepass"), 2
        single, part = 70 * unit, 67 * unit
    if len(data) <= single:
        return encoding, len(data) // unit, [data]
    parts, start = [], 0
    while start < len(data):
        end = min(start + part, len(data))
        if end < len(data):
            if unit == 1 and data[end - 1] == 0x1B:
                end -= 1  # never end a part on ESC
            if unit == 2 and 0xD8 <= data[end - 2] <= 0xDB:
                end -= 2  # never end a part on a high surrogate
        parts.append(data[start:end])
        start = end
    return encoding, len(data) // unit, parts


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("a" * 160, Encoding.GSM7, 1),
        ("a" * 161, Encoding.GSM7, 2),
        ("a" * 306, Encoding.GSM7, 2),
        ("a" * 307, Encoding.GSM7, 3),
        ("€" * 80, Encoding.GSM7, 1),
        ("€" * 81, Encoding.GSM7, 2),
        ("ю" * 70, Encoding.UCS2, 1),
        ("ю" * 71, Encoding.UCS2, 2),
        ("ю" * 134, Encoding.UCS2, 2),
        ("ю" * 135, Encoding.UCS2, 3),
        ("😀" * 35, Encoding.UCS2, 1),
        ("😀" * 36, Encoding.UCS2, 2),
        ("ç", Encoding.UCS2, 1),
        ("Ç", Encoding.GSM7, 1),
        ("", Encoding.GSM7, 1),
    ],
)
def test_figures_of_the_domain_notes(text: str, encoding: Encoding, segments: int) -> None:
    split = segment(text)
    assert (split.encoding, split.segments) == (encoding, segments)
    assert "".join(split.parts) == text


@pytest.mark.parametrize("char", ["^", "{", "}", "\\", "[", "~", "]", "|", "€", "\f"])
def test_extension_characters_take_two_septets(char: str) -> None:
    assert segment(f"a{char}").length == 3
    assert segment(char * 80).segments == 1
    assert segment(char * 81).segments == 2


def test_one_non_gsm_character_makes_the_whole_text_ucs2() -> None:
    text = "a" * 100 + "ç"
    assert not is_gsm7(text)
    assert encoding_of(text) is Encoding.UCS2
    split = segment(text)
    assert (split.length, split.segments) == (101, 2)


def test_an_esc_pair_on_a_boundary_moves_to_the_next_part() -> None:
    # 152 septets then "€": the formula says ceil(154 / 153) = 2, the pair starts part two.
    split = segment("a" * 152 + "€" + "a" * 150)
    assert split.length == 304
    assert [len(part) for part in split.parts] == [152, 151]
    # 306 septets: the formula says ceil(306 / 153) = 2, but the cut gives 152 + 153 + 1: 3 parts.
    split = segment("a" * 152 + "€" + "a" * 152)
    assert split.length == 306
    assert [len(part) for part in split.parts] == [152, 152, 1]
    assert split.segments == 3


def test_a_surrogate_pair_on_a_boundary_moves_to_the_next_part() -> None:
    split = segment("ю" * 66 + "😀" + "ю" * 10)
    assert [len(part) for part in split.parts] == [66, 11]
    assert split.parts[1].startswith("😀")


# Runs of plain characters ending in a two-septet (or two-unit) one, sized so that the pair lands
# on or near a part boundary (153 septets, 67 units), which uniform text rarely does.
boundary_runs = st.tuples(
    st.sampled_from([65, 66, 67, 150, 151, 152, 153]),
    st.sampled_from(["a", "ю"]),
    st.sampled_from(["€", "😀", "{"]),
).map(lambda run: run[1] * run[0] + run[2])
boundary_texts = st.tuples(
    st.lists(boundary_runs, min_size=1, max_size=3),
    st.text(st.sampled_from(["a", "€", "ю", "😀"]), max_size=40),
).map(lambda runs_and_tail: "".join(runs_and_tail[0]) + runs_and_tail[1])
texts = st.one_of(
    boundary_texts,
    st.text(st.sampled_from(GSM_CHARS + EXTENSION_CHARS), max_size=480),
    st.text(st.sampled_from(["a", "€", "{"]), max_size=480),
    st.text(st.sampled_from(["a", "ю", "😀", "€", "ç"]), max_size=300),
    st.text(max_size=300),
)


@given(texts)
def test_segmentation_matches_the_reference(text: str) -> None:
    encoding, length, reference_parts = reference_split(text)
    split = segment(text)
    assert split.encoding.value == encoding
    assert split.length == length
    assert split.segments == len(split.parts) == len(reference_parts)
    if encoding == "gsm7":
        assert [reference_gsm_bytes(part) for part in split.parts] == reference_parts
    else:
        encoded = [part.encode("utf-16-be", "surrogatepass") for part in split.parts]
        assert encoded == reference_parts
    assert "".join(split.parts) == text
