"""Text encoding and segmentation: GSM-7 or UCS-2, and the parts a text is sent in.

    >>> split = segment("Hello €")
    >>> split.encoding, split.length, split.segments, split.parts
    (<Encoding.GSM7: 'gsm7'>, 8, 1, ('Hello €',))

A text is GSM-7 when every character is in the GSM 03.38 basic table or its extension table;
one other character makes the whole text UCS-2 (so "ç" is UCS-2, while "Ç" is GSM). Lengths are
counted in septets for GSM-7 (the extension characters `^ { } \\ [ ~ ] | €` and form feed take
two: ESC plus a code) and in UTF-16 code units for UCS-2 (an emoji outside the BMP takes two).

A text that fits one message (160 septets, 70 units) is one segment. A longer one is cut into parts
of at most 153 septets or 67 units (the rest of each message carries the 6-octet concatenation
header). The parts are found by actually cutting, never splitting an ESC pair or a surrogate
pair across two parts, so the count may exceed the ceil(length / 153) formula when a two-septet
character sits on a boundary. An empty text is one (empty) segment, as a carrier bills it.

This module is pure: no trio, no I/O; Hypothesis drives it.
"""

import enum

import attrs

# GSM 03.38 basic character set, in code order 0x00..0x7F; 0x1B (ESC) is not a character.
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# GSM 03.38 extension table (reached by ESC): form feed ^ { } \ [ ~ ] | €, two septets each.
_EXTENSION = "\f^{}\\[~]|€"

GSM7_BASIC = frozenset(_BASIC) - {"\x1b"}
GSM7_EXTENSION = frozenset(_EXTENSION)

GSM7_SINGLE = 160
GSM7_PART = 153
UCS2_SINGLE = 70
UCS2_PART = 67


class Encoding(enum.Enum):
    """The SMPP data coding a text is sent in (GSM-7 is data_coding 0, UCS-2 is 8)."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"

    @property
    def data_coding(self) -> int:
        return 0 if self is Encoding.GSM7 else 8


@attrs.frozen
class Segmentation:
    """How one text goes on the air.

    `length` is in septets (GSM-7) or UTF-16 code units (UCS-2); `parts` are the texts of the
    segments, in order, and `"".join(parts)` is the text.
    """

    encoding: Encoding
    length: int
    segments: int
    parts: tuple[str, ...]


def is_gsm7(text: str) -> bool:
    """Whether every character of `text` is in the GSM 03.38 basic or extension table."""
    return all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text)


def encoding_of(text: str) -> Encoding:
    """GSM-7 when the whole text is GSM 03.38, otherwise UCS-2."""
    return Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2


def septets(char: str) -> int:
    """The septets one GSM-7 character takes: 2 for the extension table, 1 for the basic one."""
    return 2 if char in GSM7_EXTENSION else 1


def utf16_units(char: str) -> int:
    """The UTF-16 code units one character takes: 2 outside the BMP (a surrogate pair)."""
    return 2 if ord(char) > 0xFFFF else 1


def most_characters(segments: int) -> int:
    """The most characters a text of at most `segments` segments can have, in any encoding:
    every character takes a septet or a code unit at least, and GSM-7 holds the most per part.
    A longer text needs more segments, and is known to without measuring it.

    >>> most_characters(1), most_characters(10)
    (160, 1530)
    """
    return GSM7_SINGLE if segments <= 1 else segments * GSM7_PART


def segment(text: str) -> Segmentation:
    """Detects the encoding of `text`, measures it and cuts it into the parts it is sent in.

    >>> segment("a" * 161).segments
    2
    >>> segment("ç").encoding
    <Encoding.UCS2: 'ucs2'>
    """
    if is_gsm7(text):
        encoding, cost, single, part = Encoding.GSM7, septets, GSM7_SINGLE, GSM7_PART
    else:
        encoding, cost, single, part = Encoding.UCS2, utf16_units, UCS2_SINGLE, UCS2_PART
    costs = [cost(char) for char in text]
    length = sum(costs)
    if length <= single:
        return Segmentation(encoding, length, 1, (text,))
    parts = _cut(text, costs, part)
    return Segmentation(encoding, length, len(parts), parts)


def _cut(text: str, costs: list[int], limit: int) -> tuple[str, ...]:
    # Greedy: a character goes into the current part if all of its septets (units) fit, so an
    # ESC pair or a surrogate pair is never split; greedy gives the fewest parts for this rule.
    parts: list[str] = []
    start = 0
    used = 0
    for index, cost in enumerate(costs):
        if used + cost > limit:
            parts.append(text[start:index])
            start, used = index, 0
        used += cost
    parts.append(text[start:])
    return tuple(parts)
