"""Takes the README's pictures from the real programs: `python docs/pictures.py [report] [nvim]`.

- docs/report.png: `mmx-lsp replay` of fixtures/sessions/vscode/ledger_hour.jsonl, then
  `mmx-lsp report --demo`, the page rendered by headless Chromium;
- docs/nvim-statusline.png: Neovim (.cache/nvim/0.12, from scripts/install-nvim.sh) with
  editors/nvim, in tmux, after a completion from the real server (both tiers on the loopback
  stub of tests/support/openai_stub.py); the pane is captured with its colours and drawn
  with DejaVu Sans Mono.

The VS Code picture, editors/vscode/images/status-bar.png, is taken by the extension's
end-to-end run in code-server (editors/vscode/test/e2e/run.mjs, `readmePicture`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def mmx(home: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env["XDG_DATA_HOME"] = str(home)
    subprocess.run([sys.executable, "-m", "mmx_lsp", *args], check=True, env=env, cwd=home)


def report() -> Path:
    out = DOCS / "report.png"
    with tempfile.TemporaryDirectory(prefix="mmx-picture-") as tmp:
        home = Path(tmp)
        session = REPO / "fixtures" / "sessions" / "vscode" / "ledger_hour.jsonl"
        mmx(home, "replay", str(session))
        mmx(home, "report", "--demo", "--out", str(home / "report"))
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={home / 'chromium'}",
                "--window-size=1000,1120",
                f"--screenshot={out}",
                (home / "report" / "index.html").as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    _shrink(out)
    return out


def nvim() -> Path:
    out = DOCS / "nvim-statusline.png"
    binary = REPO / ".cache" / "nvim" / "0.12" / "bin" / "nvim"
    if not binary.exists():
        raise SystemExit(f"{binary} is missing: run scripts/install-nvim.sh")
    stub = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "support" / "openai_stub.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "MMX_STUB_REPLY": "return a + b"},
    )
    session = f"mmx-picture-{os.getpid()}"
    try:
        assert stub.stdout is not None
        url = stub.stdout.readline().strip()
        with tempfile.TemporaryDirectory(prefix="mmx-picture-") as tmp:
            work = Path(tmp)
            source = work / "calc.py"
            source.write_text('def add(a: int, b: int) -> int:\n    """Return a + b."""\n   \n')
            done = work / "done"
            env = {
                "MMX_PICTURE_PLUGIN": str(REPO / "editors" / "nvim"),
                "MMX_PICTURE_SERVER": json.dumps([sys.executable, "-m", "mmx_lsp"]),
                "MMX_PICTURE_STUB": url,
                "MMX_PICTURE_DONE": str(done),
                "MMX_STUB_KEY": "sk-picture-not-a-secret",
                "PYTHONPATH": str(REPO),
            }
            for name in ("CONFIG", "CACHE", "DATA", "STATE"):
                env[f"XDG_{name}_HOME"] = str(work / name.lower())
            exports = " ".join(f"{k}={_quote(v)}" for k, v in env.items())
            command = (
                f"cd {_quote(str(work))} && env {exports} TERM=tmux-256color "
                f"{_quote(str(binary))} --clean -u {_quote(str(DOCS / 'nvim_picture.lua'))} calc.py"
            )
            subprocess.run(
                ["tmux", "new-session", "-d", "-s", session, "-x", "78", "-y", "8", command],
                check=True,
            )
            deadline = time.monotonic() + 60
            while not done.exists():
                if time.monotonic() > deadline:
                    raise SystemExit("Neovim showed no status in 60 s")
                time.sleep(0.2)
            time.sleep(0.5)
            pane = subprocess.run(
                ["tmux", "capture-pane", "-e", "-p", "-t", session],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        stub.terminate()
        stub.wait(timeout=10)
    draw_terminal(pane, out)
    return out


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# ------------------------------------------------------------------ a terminal, drawn

DEFAULT_FG = (220, 220, 220)
DEFAULT_BG = (20, 22, 28)
BASIC = [
    (0, 0, 0),
    (205, 49, 49),
    (13, 188, 121),
    (229, 229, 16),
    (36, 114, 200),
    (188, 63, 188),
    (17, 168, 205),
    (229, 229, 229),
    (102, 102, 102),
    (241, 76, 76),
    (35, 209, 139),
    (245, 245, 67),
    (59, 142, 234),
    (214, 112, 214),
    (41, 184, 219),
    (255, 255, 255),
]


def _palette(n: int) -> tuple[int, int, int]:
    if n < 16:
        return BASIC[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return steps[n // 36], steps[(n // 6) % 6], steps[n % 6]
    level = 8 + (n - 232) * 10
    return level, level, level


def _cells(pane: str) -> list[list[tuple[str, tuple, tuple]]]:
    """The pane's characters with their colours (SGR sequences of `capture-pane -e`)."""
    rows = []
    for line in pane.rstrip("\n").split("\n"):
        fg, bg, reverse = DEFAULT_FG, DEFAULT_BG, False
        row: list[tuple[str, tuple, tuple]] = []
        for part in re.split(r"(\x1b\[[0-9;]*m)", line):
            if part.startswith("\x1b["):
                codes = [int(c) if c else 0 for c in part[2:-1].split(";")]
                i = 0
                while i < len(codes):
                    c = codes[i]
                    if c == 0:
                        fg, bg, reverse = DEFAULT_FG, DEFAULT_BG, False
                    elif c == 7:
                        reverse = True
                    elif c == 27:
                        reverse = False
                    elif 30 <= c <= 37 or 90 <= c <= 97:
                        fg = BASIC[c - 30 if c < 90 else c - 82]
                    elif 40 <= c <= 47 or 100 <= c <= 107:
                        bg = BASIC[c - 40 if c < 100 else c - 92]
                    elif c == 39:
                        fg = DEFAULT_FG
                    elif c == 49:
                        bg = DEFAULT_BG
                    elif c in (38, 48) and i + 1 < len(codes):
                        if codes[i + 1] == 5 and i + 2 < len(codes):
                            color = _palette(codes[i + 2])
                            i += 2
                        elif codes[i + 1] == 2 and i + 4 < len(codes):
                            color = (codes[i + 2], codes[i + 3], codes[i + 4])
                            i += 4
                        else:
                            color = DEFAULT_FG if c == 38 else DEFAULT_BG
                        if c == 38:
                            fg = color
                        else:
                            bg = color
                    i += 1
                continue
            for char in part:
                row.append((char, bg if reverse else fg, fg if reverse else bg))
        rows.append(row)
    return rows


def draw_terminal(pane: str, out: Path, size: int = 15) -> None:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONT), size)
    _, top, _, bottom = font.getbbox("M")
    width, height = int(font.getlength("M")), int(size * 1.35)
    rows = _cells(pane)
    columns = max(len(row) for row in rows)
    pad = 10
    image = Image.new("RGB", (columns * width + 2 * pad, len(rows) * height + 2 * pad), DEFAULT_BG)
    draw = ImageDraw.Draw(image)
    for y, row in enumerate(rows):
        for x, (char, fg, bg) in enumerate(row):
            at = (pad + x * width, pad + y * height)
            draw.rectangle([at, (at[0] + width, at[1] + height)], fill=bg)
            if char.strip():
                baseline = at[1] + (height - (bottom - top)) // 2 - top
                draw.text((at[0], baseline), char, font=font, fill=fg)
    image.save(out, optimize=True)


def _shrink(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        quantized = image.convert("RGB").quantize(colors=128)
        quantized.save(path, optimize=True)


def main(argv: list[str]) -> int:
    wanted = argv or ["report", "nvim"]
    for name in wanted:
        print({"report": report, "nvim": nvim}[name]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
