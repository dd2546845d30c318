"""examples/resizer, the seed's image-processor, served by a real `wasmlet serve`.

Images are made here with Pillow and the answers decoded with it: the resizer
must return a real JPEG of the asked size, encoded at the manifest's QUALITY
(same quantisation tables as libjpeg at that quality), close to Pillow's own
bicubic resize. Hostile bodies get a clear 4xx and the host keeps serving.
"""

from __future__ import annotations

import concurrent.futures
import io
import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat
from tests.conftest import EXAMPLES, Server, write_manifest

Serve = Callable[..., Server]
RESIZER = EXAMPLES / "resizer"


def photo(width: int, height: int, seed: int = 1) -> Image.Image:
    """A photo-like RGB picture: gradients, shapes and noise (JPEG-compresses like a photo)."""
    gradient = Image.linear_gradient("L").resize((width, height))
    picture = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
                                  gradient.transpose(Image.Transpose.FLIP_TOP_BOTTOM)))
    draw = ImageDraw.Draw(picture)
    rnd = random.Random(seed)
    for _ in range(60):
        x, y = rnd.randrange(width), rnd.randrange(height)
        colour = (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256))
        draw.ellipse((x, y, x + rnd.randrange(5, max(6, width // 4)), y + rnd.randrange(5, max(6, height // 4))),
                     fill=colour)
    return Image.blend(picture, Image.effect_noise((width, height), 30).convert("RGB"), 0.1)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, idat: bytes) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` RGB, with ``idat`` as its (compressed) data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def deflate_bomb(megabytes: int) -> bytes:
    """A zlib stream of ``megabytes`` MiB of zeros, built from one repeated block (fast, ~1000:1)."""
    zeros = bytes(1 << 20)
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = raw.compress(zeros) + raw.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, no reference to what precedes it
    checksum = 1
    for _ in range(megabytes):
        checksum = zlib.adler32(zeros, checksum)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty final block
    return b"\x78\xda" + block * megabytes + final + checksum.to_bytes(4, "big")


def jpeg_quantization(data: bytes) -> dict[int, list[int]]:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    tables: dict[int, list[int]] = getattr(image, "quantization")  # noqa: B009 - JpegImageFile only
    return tables


def decoded(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content[:3] == b"\xff\xd8\xff"
    image = Image.open(io.BytesIO(response.content))
    image.load()  # decodes every scan: a truncated or corrupt JPEG fails here
    assert image.format == "JPEG" and image.mode == "RGB"
    return image


@pytest.fixture
def host(serve: Serve) -> Server:
    """The committed manifest (examples/resizer/app.yaml) next to hello: /resizer and /hello."""
    return serve(str(RESIZER / "app.yaml"), str(EXAMPLES / "hello" / "app.yaml"))


def post(server: Server, body: bytes, query: str = "width=640", path: str = "/resizer") -> httpx.Response:
    return httpx.post(f"{server.url}{path}?{query}", content=body, timeout=60)


def test_resizes_a_jpeg_keeping_its_aspect_ratio(host: Server) -> None:
    source = photo(1920, 1080)
    response = post(host, encode(source, "JPEG", quality=92))
    image = decoded(response)
    assert image.size == (640, 360)
    assert response.headers["x-image-size"] == "640x360"
    # QUALITY=85 from the manifest: the IJG tables scaled for 85, as libjpeg (Pillow) writes them.
    assert jpeg_quantization(response.content) == jpeg_quantization(encode(Image.new("RGB", (8, 8)), "JPEG",
                                                                           quality=85))
    # The picture itself: close to Pillow's bicubic resize of the same source (both Catmull-Rom).
    reference = source.resize((640, 360), Image.Resampling.BICUBIC)
    difference = ImageStat.Stat(ImageChops.difference(image, reference)).mean
    assert max(difference) < 6, difference
    # Odd sizes round to the nearest pixel.
    assert decoded(post(host, encode(photo(1001, 333), "JPEG"), "width=100")).size == (100, 33)
    assert httpx.get(host.url + "/hello").status_code == 200


def test_many_at_once_are_all_answered_and_hello_keeps_serving(host: Server) -> None:
    # Twelve uploads at once against the manifest's concurrency (4 running, 32 waiting): every one is
    # resized, and hello, on the same worker, answers meanwhile.
    body = encode(photo(1920, 1080), "JPEG")
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(post, host, body, f"width={100 + i}") for i in range(12)]
        while not all(f.done() for f in futures):
            assert httpx.get(host.url + "/hello", timeout=10).status_code == 200
        sizes = [decoded(f.result()).size for f in futures]
    assert sizes == [(100 + i, (1080 * (100 + i) + 960) // 1920) for i in range(12)]  # halves round up


def test_resizes_pngs_flattening_transparency_onto_white(host: Server) -> None:
    source = photo(800, 600).convert("RGBA")
    ImageDraw.Draw(source).rectangle((0, 0, 399, 599), fill=(0, 0, 0, 0))  # left half transparent
    image = decoded(post(host, encode(source, "PNG"), "width=200"))
    assert image.size == (200, 150)
    r, g, b = image.getpixel((20, 75))  # type: ignore[misc]
    assert min(r, g, b) > 240, (r, g, b)
    # Grey, palette and 16-bit PNGs decode too; upscaling is allowed within the output limit.
    for variant in (photo(300, 200).convert("L"), photo(300, 200).convert("P"), photo(300, 200).convert("I;16")):
        assert decoded(post(host, encode(variant, "PNG"), "width=600")).size == (600, 400)
    # The largest source accepted, 4096x3072 as an RGBA PNG, decodes within the manifest's 128Mi.
    big = Image.linear_gradient("L").resize((4096, 3072)).convert("RGBA")
    assert decoded(post(host, encode(big, "PNG"), "width=1024")).size == (1024, 768)


def test_quality_comes_from_the_manifest(serve: Serve, tmp_path: Path) -> None:
    def component(name: str, quality: str) -> dict[str, object]:
        return {"name": name, "properties": {
            "moduleURL": str(RESIZER / "resizer.wasm"), "memoryLimit": "128Mi", "route": f"/{name}",
            "environment": [{"name": "QUALITY", "value": quality}]}}

    manifest = write_manifest(tmp_path / "q.yaml", [component("low", "20"), component("broken", "high")])
    server = serve(str(manifest))
    body = encode(photo(640, 480), "JPEG", quality=95)
    low = post(server, body, "width=320", "/low")
    decoded(low)
    assert jpeg_quantization(low.content) == jpeg_quantization(encode(Image.new("RGB", (8, 8)), "JPEG", quality=20))
    broken = post(server, body, "width=320", "/broken")
    assert broken.status_code == 500 and "QUALITY" in broken.text


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is rewritten to claim ``width`` x ``height``."""
    data = bytearray(encode(photo(64, 64), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bad_inputs() -> list[tuple[str, bytes, str, int, str]]:
    """(what, body, query, status, words the message must contain)."""
    return [
        ("garbage body", b"this is not an image at all", "width=640", 415, "not a JPEG or PNG"),
        ("empty body", b"", "width=640", 400, "empty body"),
        ("width=0", b"\xff\xd8\xff", "width=0", 400, "between 1 and 4096"),
        ("width=100000", b"\xff\xd8\xff", "width=100000", 400, "between 1 and 4096"),
        ("width not a number", b"\xff\xd8\xff", "width=12px", 400, "whole number"),
        ("negative width", b"\xff\xd8\xff", "width=-5", 400, "whole number"),
        ("no width", b"\xff\xd8\xff", "height=5", 400, "missing ?width"),
        ("PNG bomb header 100000x100000", png_claiming(100000, 100000, zlib.compress(b"\0" * 1000)), "width=640",
         413, "100000x100000"),
        ("JPEG claiming 65000x65000", _jpeg_claiming(65000, 65000), "width=640", 413, "65000x65000"),
        ("one pixel over the limit", png_claiming(4097, 3072, zlib.compress(b"\0" * 1000)), "width=640", 413,
         "4097x3072"),
        ("truncated JPEG", encode(photo(640, 480), "JPEG")[:600], "width=64", 400, "cannot decode"),
        ("PNG with corrupt data", png_claiming(64, 64, b"\x78\x9c" + b"\xff" * 200), "width=32", 400, "cannot decode"),
        # A deflate bomb inside a PNG of sane size: inflates past 128Mi, malloc fails inside the sandbox.
        ("PNG deflate bomb", png_claiming(4000, 3000, deflate_bomb(200)), "width=64", 413,
         "memory limit"),
        # The largest size accepted, as a progressive 4:4:4 JPEG: stb keeps every DCT coefficient too,
        # past 128Mi; refused cleanly (docs/examples.md says so).
        ("progressive 4096x3072 JPEG", encode(Image.linear_gradient("L").resize((4096, 3072)).convert("RGB"), "JPEG",
                                              progressive=True, subsampling=0), "width=64", 413, "memory limit"),
        ("output taller than 4096", encode(photo(10, 1000), "PNG"), "width=100", 400, "10000 pixels high"),
    ]


def test_bad_input_gets_a_clear_4xx_and_the_host_keeps_serving(host: Server) -> None:
    for what, body, query, status, words in bad_inputs():
        response = post(host, body, query)
        assert response.status_code == status, (what, response.status_code, response.text)
        assert response.headers["content-type"].startswith("text/plain"), what
        assert words in response.text, (what, response.text)
        assert httpx.get(host.url + "/hello", timeout=10).status_code == 200, what
    # Not a POST: 405, saying what to send.
    response = httpx.get(host.url + "/resizer?width=10", timeout=10)
    assert response.status_code == 405 and "POST a JPEG or PNG" in response.text
    assert response.headers["allow"] == "POST, PUT"
    # A body over the manifest's maxBodySize (16Mi) is refused by the host before the guest runs.
    assert post(host, b"\xff\xd8\xff" + bytes(17 << 20)).status_code == 413
    # ... and after all of it, the resizer still resizes.
    assert decoded(post(host, encode(photo(320, 240), "JPEG"), "width=32")).size == (32, 24)
