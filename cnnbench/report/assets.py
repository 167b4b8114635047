"""The page's only style sheet and its only (optional) script, inlined: the report loads nothing."""

CSS = """
:root { --ink: #1d1d1f; --muted: #5a5a60; --line: #d8d8de; --accent: #1f5fa8; --bad: #a3261b; --good: #1d6b33; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink);
       max-width: 1100px; margin: 0 auto; padding: 1.5rem 1.2rem 4rem; }
h1 { font-size: 1.7rem; margin: 0 0 .3rem; }
h2 { font-size: 1.3rem; border-bottom: 2px solid var(--line); padding-bottom: .2rem; margin-top: 2.4rem; }
h3 { font-size: 1.08rem; margin: 1.6rem 0 .4rem; }
a { color: var(--accent); }
.meta, figcaption, .note { color: var(--muted); font-size: .88rem; }
nav.toc ol { columns: 2; margin: .4rem 0; }
.verdicts { border: 1px solid var(--line); border-left: 5px solid var(--accent); padding: .6rem 1rem; background: #f7f9fc; }
.verdicts li { margin: .35rem 0; }
.bad { color: var(--bad); } .good { color: var(--good); }
figure.cnb-figure { margin: 1.2rem 0 1.6rem; }
figure.cnb-figure svg { max-width: 100%; height: auto; display: block; }
.cnb-off { display: none; }
.cnb-dim { opacity: .35; }
.cnb-key { cursor: pointer; pointer-events: bounding-box; }  /* a click between the glyphs of a label counts */
table { border-collapse: collapse; font-size: .85rem; margin: .4rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .15rem .45rem; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
thead th { background: #f0f1f4; }
details { margin: .3rem 0 .8rem; }
summary { cursor: pointer; color: var(--accent); }
pre, code { font: .82rem/1.4 ui-monospace, "DejaVu Sans Mono", monospace; }
pre { background: #f4f4f6; padding: .5rem .7rem; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
.warn { color: var(--bad); }
@media print {
  @page { size: A4; margin: 14mm 12mm; }
  body { max-width: none; padding: 0; font-size: 10.5pt; }
  nav.toc ol { columns: 2; }
  h2 { break-before: page; } #verdicts h2, h2:first-of-type { break-before: avoid; }
  h2, h3 { break-after: avoid; }
  figure.cnb-figure, table, pre { break-inside: avoid; }
  details > summary { display: none; }
  details:not([open]) > :not(summary) { display: none; }
  a { color: inherit; text-decoration: none; }
  .cnb-off { display: inline; } .cnb-dim { opacity: 1; }
}
"""

# Legend entries toggle their series (click, Enter or Space); everything the page says is there without it.
SCRIPT = """
(function () {
  document.querySelectorAll("figure.cnb-figure").forEach(function (fig) {
    fig.querySelectorAll("g.cnb-key").forEach(function (key) {
      key.setAttribute("tabindex", "0");
      key.setAttribute("role", "button");
      key.setAttribute("aria-pressed", "true");
      function toggle() {
        var s = key.getAttribute("data-series");
        var hide = !fig.querySelector('g.cnb-series[data-series="' + s + '"].cnb-off');
        fig.querySelectorAll('g.cnb-series[data-series="' + s + '"]').forEach(function (g) { g.classList.toggle("cnb-off", hide); });
        fig.querySelectorAll('g.cnb-key[data-series="' + s + '"]').forEach(function (g) {
          g.classList.toggle("cnb-dim", hide); g.setAttribute("aria-pressed", hide ? "false" : "true");
        });
      }
      key.addEventListener("click", toggle);
      key.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } });
    });
  });
})();
"""
