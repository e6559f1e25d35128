"""What an encoded image's header says before it is decoded: its declared size, and whether it is a palette BMP.

TensorFlow's decoders read BMP, GIF, JPEG and PNG. Two things must be caught before decoding: a palette (8-bit or
less) BMP, whose colour table TensorFlow's BMP decoder ignores (the image comes out grey), and an image whose header
declares so many pixels that decoding it would take the memory of the process (a decompression bomb).
"""

import struct

DEFAULT_MAX_PIXELS = 40_000_000


def is_palette_bmp(data):
    """Whether ``data`` is a BMP of 8 bits per pixel or fewer (colours from a palette).

    Example:
        >>> is_palette_bmp(b"BM" + bytes(26) + (8).to_bytes(2, "little") + bytes(24))
        True
    """
    return data[:2] == b"BM" and len(data) >= 30 and struct.unpack_from("<H", data, 28)[0] <= 8


def declared_size(data):
    """``(width, height)`` as the header of a PNG, GIF, BMP, JPEG or WebP declares it, or ``None`` if unknown.

    Example:
        >>> declared_size(b"GIF89a" + (640).to_bytes(2, "little") + (480).to_bytes(2, "little"))
        (640, 480)
    """
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return struct.unpack_from(">II", data, 16)
        if data[:4] == b"GIF8":
            return struct.unpack_from("<HH", data, 6)
        if data[:2] == b"BM":
            width, height = struct.unpack_from("<ii", data, 18)
            return abs(width), abs(height)
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data):
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        length = struct.unpack_from(">H", data, position + 2)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            height, width = struct.unpack_from(">HH", data, position + 5)
            return width, height
        position += 2 + length
    return None


def _webp_size(data):
    chunk = data[12:16]
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    if chunk == b"VP8 ":
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def header_problem(data, max_pixels=DEFAULT_MAX_PIXELS):
    """Why ``data`` must not be decoded, from its header alone, or ``None``.

    Example:
        >>> header_problem(b"GIF89a" + (60000).to_bytes(2, "little") + (60000).to_bytes(2, "little"))
        'its header declares 60000x60000 = 3600.0 megapixels, over the limit of 40.0'
    """
    if is_palette_bmp(data):
        return "an 8-bit palette BMP, whose colours TensorFlow's decoder would read as grey; re-save it as PNG or 24-bit BMP"
    return size_problem(data, max_pixels)


def size_problem(data, max_pixels=DEFAULT_MAX_PIXELS):
    """Why ``data`` is too large to decode, from the size its header declares, or ``None``.

    Example:
        >>> size_problem(b"GIF89a" + (640).to_bytes(2, "little") + (480).to_bytes(2, "little")) is None
        True
    """
    size = declared_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        width, height = size
        return (f"its header declares {width}x{height} = {width * height / 1e6:.1f} megapixels, over the limit of "
                f"{max_pixels / 1e6:.1f}")
    return None
