"""GSM 03.38 default alphabet, unpacked: one septet per octet, as SMPP's data_coding 0 carries it.

    encode_gsm7("Hi €")        # b'Hi \\x1be': the extension table's characters take ESC + code
    decode_gsm7(b'Hi \\x1be')  # 'Hi €'

`encode_gsm7` takes what `rabbitry.billing.is_gsm7` accepts (the basic table and its extension
table) and raises `ValueError` naming the first other character. `decode_gsm7` never fails: an
escape to a code the extension table lacks reads as the basic character (GSM 03.38 says so), a lone
trailing ESC as a space, and octets above 0x7F (not septets) as U+FFFD.

Pure: no trio, no I/O.
"""

# The basic table in code order 0x00..0x7F; 0x1B is ESC, not a character.
BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
ESC = 0x1B

_ENCODE: dict[str, bytes] = {char: bytes((code,)) for code, char in enumerate(BASIC)}
del _ENCODE["\x1b"]
_ENCODE.update({char: bytes((ESC, code)) for char, code in EXTENSION.items()})
_DECODE_EXTENSION = {code: char for char, code in EXTENSION.items()}


def encode_gsm7(text: str) -> bytes:
    """`text` as unpacked GSM-7 septets; raises ValueError for a character outside GSM 03.38."""
    try:
        return b"".join([_ENCODE[char] for char in text])
    except KeyError as exc:
        raise ValueError(
            f"{exc.args[0]!r} is not in the GSM 03.38 alphabet (in {text!r}); send the text as"
            " UCS-2"
        ) from None


def decode_gsm7(data: bytes) -> str:
    """Unpacked GSM-7 septets as text (see the module docstring for odd input)."""
    chars = []
    escaped = False
    for octet in data:
        if escaped:
            escaped = False
            extension = _DECODE_EXTENSION.get(octet)
            chars.append(extension if extension is not None else _basic(octet))
        elif octet == ESC:
            escaped = True
        else:
            chars.append(_basic(octet))
    if escaped:
        chars.append(" ")
    return "".join(chars)


def _basic(octet: int) -> str:
    if octet >= len(BASIC) or octet == ESC:
        return "\ufffd"
    return BASIC[octet]
