"""Two vendors' artwork of the same emoji, for the badges benchmark's "other artwork of the same subject": EmojiOne's
PNGs (Debian's ruby-gemojione) and Google's Noto Color Emoji (Debian's fonts-noto-color-emoji) rendered with Pillow.
Fetched with `apt-get download` into the bench cache on first use (no network at run time after that)."""

import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from bench.common import CACHE

FOLDER = CACHE / "emoji"
EMOJIONE = FOLDER / "usr/share/rubygems-integration/all/gems/gemojione-3.3.0/assets/png"
NOTO = FOLDER / "usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
PACKAGES = ("ruby-gemojione", "fonts-noto-color-emoji")


def fetch():
    """Download and unpack the two packages into FOLDER unless they are there."""
    if EMOJIONE.is_dir() and NOTO.is_file():
        return
    FOLDER.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        download = ["apt-get", "download", *PACKAGES]
        if subprocess.run(download, cwd=work, capture_output=True).returncode:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(download, cwd=work, check=True, capture_output=True)
        for deb in Path(work).glob("*.deb"):
            subprocess.run(["dpkg", "-x", str(deb), str(FOLDER)], check=True)


def emojione():
    """{codepoints (a str of the emoji's characters): its EmojiOne PNG path}, skin-tone variants left out."""
    fetch()
    found = {}
    for path in sorted(EMOJIONE.glob("*.png")):
        points = [int(part, 16) for part in path.stem.split("-")]
        if any(0x1F3FB <= p <= 0x1F3FF for p in points):  # skin tones: five more of the same drawing
            continue
        found["".join(map(chr, points))] = path
    return found


class Noto:
    """Renders emoji with the Noto Color Emoji font (a bitmap font: 109 pixels is its size)."""

    def __init__(self):
        fetch()
        self.font = ImageFont.truetype(str(NOTO), 109)
        self.missing = self._draw("\U000f0000")  # a private-use character: the font's "no glyph" drawing

    def _draw(self, text):
        img = Image.new("RGBA", (160, 136), (255, 255, 255, 0))
        ImageDraw.Draw(img).text((0, 0), text, font=self.font, embedded_color=True)
        box = img.getbbox()
        return None if box is None else img.crop(box)

    def render(self, text):
        """The emoji on white (RGB), or None where the font has no single glyph for it."""
        img = self._draw(text)
        if img is None or img.width > 140 or (self.missing is not None and img.tobytes() == self.missing.tobytes()):
            return None  # nothing drawn, several glyphs side by side, or the no-glyph box
        white = Image.new("RGBA", img.size, "white")
        return Image.alpha_composite(white, img).convert("RGB")
