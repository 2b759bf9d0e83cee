"""Tests of evo.report and `evo report`: the page's content from real short runs, and the page
loaded in a real headless browser (Debian's chromium, driven through its DevTools protocol on a
pipe: no extra Python package), where every figure must decode and render, nothing may be
fetched from the network, no error may be logged, and a screenshot is taken.

Without chromium the browser test is skipped with the reason, and fails under CI (CI=true),
like the Slurm tests.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from evo.cli import main
from evo.population import Population
from evo.report import build_report, run_labels, write_report
from evo.report.drawings import text_listing
from slurm_cluster import unavailable

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
POP_KW = dict(dataset="synthetic", dataset_kwargs={"n_train": 1500, "n_val": 400, "n_test": 0},
              population_size=4, steps_per_child=60, lock="flock", keep_checkpoints="all")


def _evolve(root: Path, individuals: int, seed: int) -> Path:
    """A real short run: one worker in this process until the budget."""
    from evo.worker.loop import run_worker

    Population.create(str(root), **POP_KW, max_individuals=individuals, seed=seed)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = run_worker(str(root), handle_signals=False, progress=lambda m: None)
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    base = tmp_path_factory.mktemp("evo-report")
    os.environ.setdefault("EVO_CACHE_DIR", str(base / "cache"))
    return [_evolve(base / "run-a", 22, 1), _evolve(base / "run-b", 14, 2)]


def _external_refs(html: str) -> list[str]:
    """Every src/href that would need a file or the network (data: and #anchors are inside)."""
    refs = re.findall(r'\b(?:src|href)="([^"]*)"', html)
    return [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]


def test_one_population_page(runs):
    from evo import analysis

    pop = runs[0]
    html, info = build_report([pop])
    h = analysis.load(pop)
    best = h.best()
    assert info["populations"][0]["individuals"] == len(h) == 22
    assert info["populations"][0]["state"] == "finished"
    for title in ("State and budget", "Progress", "Leaderboard", "Lineage of the best individual",
                  "Architecture trends", "Workers and warnings"):
        assert f">{title}</h3>" in html, title
    assert "<script" not in html and _external_refs(html) == []
    # two figures (progress, trends) embedded as PNG data that decodes to a real PNG
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(pngs) == 2
    assert all(base64.b64decode(p)[:8] == PNG_SIGNATURE for p in pngs)
    # the leaderboard's first row is the best individual
    first = re.search(r'<tr class="best"><td class="num">1</td><td class="num">(\d+)</td>', html)
    assert first and int(first.group(1)) == best.id
    # the lineage table lists every ancestor from the seed, with a drawing per change of graph
    chain = h.lineage(best.id)
    lineage_html = html.split("Lineage of the best individual")[1].split("Architecture trends")[0]
    for r in chain:
        assert f"individual {r.id}" in lineage_html or f'<td class="num">{r.id}</td>' in lineage_html
    graphs = []
    for r in chain:
        g = json.dumps({k: v for k, v in h.dna(r.id).items() if k != "learning_rate"}, sort_keys=True)
        if not graphs or graphs[-1] != g:
            graphs.append(g)
    cards = lineage_html.count('class="ancestor"')
    assert cards == len(graphs)
    if shutil.which("dot"):
        assert lineage_html.count("<svg") == cards
        ids = re.findall(r'<svg[^>]*\bid="([^"]+)"', html) + re.findall(r'<g id="([^"]+)"', html)
        assert len(ids) == len(set(ids)), "element ids repeat across drawings"
    assert f"{analysis.status(h)['counts']['trained']} of 22" in html  # the budget bar


def test_text_fallback_without_graphviz(runs):
    html, info = build_report([runs[0]], graphviz=False)
    lineage_html = html.split("Lineage of the best individual")[1].split("Architecture trends")[0]
    assert "<svg" not in lineage_html and "<pre>" in lineage_html
    assert "listed as text" in lineage_html and info["populations"][0]["graphviz"] is False
    assert "global pool -&gt; linear -&gt; 10 classes" in lineage_html


def test_text_listing_names_every_connection():
    dna = {"input_vertex": 0, "output_vertex": 2, "learning_rate": 0.1, "num_classes": 10,
           "vertices": [{"id": 0, "type": "LINEAR"}, {"id": 1, "type": "BN_RELU"}, {"id": 2, "type": "LINEAR"}],
           "edges": [{"id": 1, "src": 0, "dst": 1, "type": "CONV", "kernel": [3, 3], "stride": 2, "channels": 16},
                     {"id": 2, "src": 1, "dst": 2, "type": "IDENTITY"},
                     {"id": 3, "src": 0, "dst": 2, "type": "IDENTITY", "skip": True}]}
    text = text_listing(dna)
    assert "v0 -> v1 [BN_RELU]: conv 3x3 /2 16ch" in text
    assert "v0 -> v2 [LINEAR]: identity (skip)" in text
    assert text.count("\n") == 4


def test_empty_population_shows_warnings(tmp_path):
    root = tmp_path / "fresh"
    Population.create(str(root), dataset="synthetic", population_size=3, lock="flock")
    html, info = build_report([root])
    assert info["populations"][0]["individuals"] == 0
    assert "no worker holds a lease" in html and 'class="warn"' in html
    assert "No individual with a validation accuracy yet" in html and "No best individual yet" in html


def test_labels_tell_runs_apart():
    assert run_labels(["/x/aging/seed-0", "/x/tournament/seed-0"]) == ["aging/seed-0", "tournament/seed-0"]
    assert run_labels(["/x/a", "/y/b"]) == ["a", "b"]


def test_cli_several_populations(runs, tmp_path):
    out = tmp_path / "sub" / "report.html"
    res = CliRunner().invoke(main, ["report", *map(str, runs), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["output"] == str(out) and [p["label"] for p in info["populations"]] == ["run-a", "run-b"]
    html = out.read_text()
    comparison = html.split('id="comparison"')[1].split('class="population"')[0]
    assert comparison.count("<img") == 2  # against FLOPs and against wall-clock time
    assert "run-a" in comparison and "run-b" in comparison and "over 2 runs" in comparison
    assert html.count('class="population"') == 2 and _external_refs(html) == []
    bad = CliRunner().invoke(main, ["report", str(tmp_path), "-o", str(tmp_path / "x.html")])
    assert bad.exit_code == 2 and "population" in bad.output and "Traceback" not in bad.output


# ------------------------------------------------------------------------------------------- browser
class Chromium:
    """A headless chromium driven through the DevTools protocol on a pipe
    (``--remote-debugging-pipe``: NUL-terminated JSON on file descriptors 3 and 4)."""

    def __init__(self, exe: str, timeout_s: float = 120.0):
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()
        self.profile = tempfile.mkdtemp(prefix="evo-chromium-")

        def fds() -> None:
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--no-default-browser-check", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
             "--window-size=1280,900", "about:blank"],
            pass_fds=(3, 4, to_chrome_r, from_chrome_w), preexec_fn=fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.timeout_s = timeout_s
        self.events: list[dict] = []
        self._buf = b""
        self._n = 0

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._n += 1
        msg: dict = {"id": self._n, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read()
            if m.get("id") == self._n:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str) -> dict:
        for k, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(k)
        while True:
            m = self._read()
            if m.get("method") == method:
                return m
            self.events.append(m)

    def _read(self) -> dict:
        deadline = time.monotonic() + self.timeout_s
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium did not answer within {self.timeout_s:.0f} s")
            if select.select([self._r], [], [], left)[0]:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                    raise RuntimeError(f"chromium closed its pipe: {err[-2000:]}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\0", 1)
        return json.loads(line)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - already gone
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


def _chromium() -> str:
    exe = os.environ.get("EVO_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if exe is None:
        unavailable("chromium is not installed (apt-get install chromium), so the report page cannot be "
                    "checked in a browser")
    return exe  # type: ignore[return-value]


_CHECK = r"""(async () => {
  const imgs = [...document.images];
  const failed = await Promise.all(imgs.map(i => i.decode().then(() => null, e => i.alt + ': ' + e)));
  return {
    images: imgs.map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,
                           shown: i.getBoundingClientRect().width})),
    decodeErrors: failed.filter(x => x),
    svgs: [...document.querySelectorAll('svg')].map(s => {
      const b = s.getBBox(), r = s.getBoundingClientRect();
      return {bbox: [b.width, b.height], shown: [r.width, r.height], shapes: s.querySelectorAll('g.node').length};
    }),
    sections: [...document.querySelectorAll('h2, h3')].map(h => h.textContent),
    title: document.title,
    height: document.documentElement.scrollHeight,
  };
})()"""


def test_report_in_headless_browser(runs, tmp_path):
    exe = _chromium()
    page = tmp_path / "report.html"
    info = write_report(runs, page)
    n_drawings = page.read_text().count("<svg")
    browser = Chromium(exe)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=s)
        url = page.resolve().as_uri()
        nav = browser.send("Page.navigate", {"url": url}, session=s)
        assert not nav.get("errorText"), nav
        browser.wait_event("Page.loadEventFired")
        res = browser.send("Runtime.evaluate", {"expression": _CHECK, "awaitPromise": True, "returnByValue": True},
                           session=s)
        assert "exceptionDetails" not in res, res
        got = res["result"]["value"]
        shot = browser.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                            session=s)
    finally:
        browser.close()
    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))

    # the page loaded without an error
    errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error")
              or e.get("method") == "Network.loadingFailed"]
    assert errors == [], errors
    requests = [e["params"]["request"]["url"] for e in browser.events if e.get("method") == "Network.requestWillBeSent"]
    assert requests and requests[0] == url
    assert all(u == url or u.startswith("data:") for u in requests), requests  # nothing from outside
    assert got["title"].startswith("evo report")
    # every figure decoded and is shown: 2 comparison figures + 2 per population
    assert got["decodeErrors"] == []
    assert len(got["images"]) == 2 + 2 * len(runs)
    for im in got["images"]:
        assert im["complete"] and im["width"] >= 300 and im["height"] >= 200 and im["shown"] > 100, im
    # every architecture drawing rendered with its nodes
    assert len(got["svgs"]) == n_drawings
    if shutil.which("dot"):
        assert n_drawings >= 2
    for sv in got["svgs"]:
        assert sv["bbox"][0] > 10 and sv["bbox"][1] > 10 and sv["shown"][0] > 10 and sv["shapes"] >= 2, sv
    assert "Comparison of 2 runs" in got["sections"] and got["sections"].count("Lineage of the best individual") == 2
    # the screenshot is the whole page, drawn
    data = screenshot.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    from matplotlib import image

    img = image.imread(str(screenshot))
    assert img.shape[0] >= min(got["height"], 16000) * 0.9 and img.shape[1] >= 1000
    assert img[..., :3].std() > 0.05
    assert info["bytes"] == len(page.read_bytes())


def test_writing_a_report_never_imports_torch(runs, tmp_path):
    out = tmp_path / "r.html"
    code = ("import sys; from evo.report import write_report; "
            f"write_report([{str(runs[0])!r}], {str(out)!r}); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "EVO_CACHE_DIR": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr[-2000:]
    assert out.read_text().count("<img") == 2
