"""HTML report: charts are drawn, the page stands alone, and a real Chromium shows it."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from mmx_lsp import stats_cli
from mmx_lsp.metrics import MetricsStore, open_database
from mmx_lsp.report import CHARTS, write_report

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
INSTALL = "apt-get install -y chromium"


def fill(path: Path, n: int = 240) -> None:
    rng = random.Random(7)
    now = time.time()
    with MetricsStore(path, linger_s=0) as store:
        for i in range(n):
            model, tier = rng.choice([("gpt-5-mini", "cheap"), ("gpt-5.5", "premium")])
            store.record(
                {
                    "request_id": f"q{i}",
                    "time": now - rng.random() * 14 * 86400,
                    "kind": rng.choice(["inline", "refactor", "fix"]),
                    "language": rng.choice(["python", "go"]),
                    "tier": tier,
                    "model": model,
                    "cached": rng.random() < 0.2,
                    "escalated": rng.random() < 0.1,
                    "latency_ms": rng.lognormvariate(6, 0.5),
                    "input_tokens": 900,
                    "output_tokens": 40,
                    "cost_usd": Decimal(rng.randint(10, 900)) / Decimal(10**6),
                    "saved_usd": Decimal(rng.randint(10, 900)) / Decimal(10**6),
                }
            )
            if rng.random() < 0.6:
                store.verdict(f"q{i}", "accepted" if rng.random() < 0.7 else "rejected")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"Chromium is needed to check the report: {INSTALL}")


def screenshot(page: Path, out: Path, profile: Path) -> Image.Image:
    result = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1100,1800",
            f"--screenshot={out}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert out.exists(), f"chromium wrote no screenshot: {result.stderr[-2000:]}"
    return Image.open(out).convert("RGB")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One report for the module, written by the CLI entry point (charts take seconds)."""
    base = tmp_path_factory.mktemp("report")
    db = base / "m.sqlite3"
    fill(db)
    out = base / "report"
    assert stats_cli.report_main(["--db", str(db), "--out", str(out), "--since", "30d"]) == 0
    return out


def test_report_writes_a_standalone_page_and_one_png_per_chart(report_dir: Path) -> None:
    text = (report_dir / "index.html").read_text("utf-8")
    for name, _title, _draw in CHARTS:
        png = report_dir / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert text.count('src="data:image/png;base64,') == len(CHARTS)
    # Nothing is fetched from anywhere: no external scripts, styles or images.
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)
    assert "gpt-5-mini" in text and "saved vs all-premium" in text


def test_report_renders_in_chromium_and_is_not_blank(report_dir: Path, tmp_path: Path) -> None:
    image = screenshot(report_dir / "index.html", tmp_path / "shot.png", tmp_path / "profile")
    small = image.resize((image.width // 4, image.height // 4))
    colours = small.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 200, "the page looks blank"
    background = max(colours)[1]
    covered = sum(n for n, c in colours if c != background) / (small.width * small.height)
    assert covered > 0.05
    # The cheap tier's colour from the charts is on screen.
    assert any(abs(c[0] - 0x2A) + abs(c[1] - 0x9D) + abs(c[2] - 0x8F) < 30 for _n, c in colours)


def test_an_empty_window_still_gives_a_page(tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite3"
    fill(db, n=5)
    conn, _ = open_database(db)
    try:
        page = write_report(conn, tmp_path / "r", since=time.time() + 3600)
    finally:
        conn.close()
    assert '<div class="card">requests<b>0</b></div>' in page.read_text("utf-8")
    assert (tmp_path / "r" / "spend_per_day.png").stat().st_size > 1000


def test_report_refuses_a_malformed_since(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = stats_cli.report_main(["--db", str(tmp_path / "m.sqlite3"), "--since", "soon"])
    assert code == 2
    assert "--since: cannot read since='soon'" in capsys.readouterr().err
