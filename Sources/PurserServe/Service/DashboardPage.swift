/// The dashboard's two pages, self-contained (no network, no CDN): a login form, and the page that polls
/// `/dashboard.json` every two seconds and draws it. Every figure is written with `textContent`, never as HTML.
enum DashboardPage {
    /// No framing, no scripts or styles from anywhere else, no referrer.
    static let headers: [(String, String)] = [
        ("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"),
        ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store"),
    ]

    static let style = """
        :root { color-scheme: light dark; --fg: #111; --bg: #fff; --muted: #444; --line: #bbb; --accent: #0b57d0; --bad: #a50e0e; --ok: #0d652d; }
        @media (prefers-color-scheme: dark) { :root { --fg: #f1f1f1; --bg: #121212; --muted: #c7c7c7; --line: #555; --accent: #8ab4f8; --bad: #f28b82; --ok: #81c995; } }
        * { box-sizing: border-box; }
        body { margin: 0; font: 16px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
        header, main { max-width: 72rem; margin: 0 auto; padding: 0.75rem 1rem; }
        header { display: flex; flex-wrap: wrap; gap: 0.5rem 1.5rem; align-items: baseline; border-bottom: 1px solid var(--line); }
        h1 { font-size: 1.3rem; margin: 0; } h2 { font-size: 1.1rem; margin: 1.5rem 0 0.5rem; }
        .muted { color: var(--muted); } .bad { color: var(--bad); } .ok { color: var(--ok); }
        .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(14rem, 1fr)); gap: 0.75rem; }
        .card { border: 1px solid var(--line); border-radius: 0.5rem; padding: 0.75rem; }
        .figure { font-size: 1.4rem; font-variant-numeric: tabular-nums; }
        .scroll { overflow-x: auto; }
        table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
        th, td { text-align: left; padding: 0.35rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        td.n, th.n { text-align: right; }
        progress { width: 100%; height: 1rem; accent-color: var(--accent); }
        a, button { color: var(--accent); } button, input { font: inherit; padding: 0.4rem 0.8rem; }
        :focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
        .skip { position: absolute; left: -100vw; } .skip:focus { left: 1rem; top: 1rem; background: var(--bg); padding: 0.5rem; }
        """

    static func login(message: String?) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Purser: sign in</title><style>\(style)</style></head>
        <body><main>
        <h1>Purser</h1>
        <p>Sign in with a project key (<code>purser keys create --project NAME</code> makes one). The key is checked, then kept
        only as a session cookie this browser cannot read from scripts.</p>
        \(message.map { "<p class=\"bad\" role=\"alert\">\($0)</p>" } ?? "")
        <form method="post" action="/login">
        <label for="key">Project key</label><br>
        <input id="key" name="key" type="password" autocomplete="off" required size="56" autofocus>
        <button type="submit">Sign in</button>
        </form>
        </main></body></html>
        """
    }

    static let page = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Purser</title><style>\(style)</style></head>
        <body>
        <a class="skip" href="#main">Skip to the figures</a>
        <header>
          <h1>Purser <span class="muted" id="project"></span></h1>
          <span class="muted" id="updated" aria-live="polite"></span>
          <form method="post" action="/logout"><button type="submit">Sign out</button></form>
        </header>
        <main id="main">
          <p class="bad" id="trouble" role="alert" hidden></p>
          <section aria-labelledby="money-heading">
            <h2 id="money-heading">This month</h2>
            <div class="cards">
              <div class="card"><div class="muted">Spent</div><div class="figure" id="spent">-</div><div class="muted" id="forecast"></div></div>
              <div class="card"><div class="muted">Cap</div><div class="figure" id="cap">none</div>
                <progress id="cap-bar" max="10000" value="0" aria-label="Share of the cap used"></progress><div class="muted" id="cap-left"></div></div>
              <div class="card"><div class="muted">Saved against the baseline</div><div class="figure" id="saved">-</div><div class="muted" id="baseline"></div></div>
              <div class="card"><div class="muted">Run service</div><div class="figure" id="in-flight">-</div><div class="muted" id="retries"></div></div>
            </div>
          </section>
          <section aria-labelledby="jobs-heading"><h2 id="jobs-heading">Jobs</h2>
            <div class="scroll"><table><caption class="muted">The project's latest jobs: progress, ETA and requests by state</caption>
            <thead><tr><th scope="col">Job</th><th scope="col">Progress</th><th scope="col" class="n">Done</th><th scope="col">ETA</th><th scope="col">States</th>
            <th scope="col" class="n">Spent</th><th scope="col" class="n">Estimate</th><th scope="col" class="n">Baseline</th></tr></thead>
            <tbody id="jobs"></tbody></table></div>
          </section>
          <section aria-labelledby="models-heading"><h2 id="models-heading">Spend by model and provider</h2>
            <div class="cards">
              <div class="scroll"><table><caption class="muted">By model</caption><thead><tr><th scope="col">Model</th><th scope="col" class="n">Requests</th>
              <th scope="col" class="n">Cost</th><th scope="col" class="n">Saved</th></tr></thead><tbody id="by-model"></tbody></table></div>
              <div class="scroll"><table><caption class="muted">By provider</caption><thead><tr><th scope="col">Provider</th><th scope="col" class="n">Requests</th>
              <th scope="col" class="n">Cost</th><th scope="col" class="n">Saved</th></tr></thead><tbody id="by-provider"></tbody></table></div>
            </div>
          </section>
          <section aria-labelledby="batches-heading"><h2 id="batches-heading">Open provider batches</h2>
            <div class="scroll"><table><thead><tr><th scope="col">Job</th><th scope="col">Model</th><th scope="col">State</th><th scope="col" class="n">Requests</th>
            <th scope="col">Age</th><th scope="col">Expected by</th></tr></thead><tbody id="batches"></tbody></table></div>
          </section>
          <section aria-labelledby="failures-heading"><h2 id="failures-heading">Recent failures</h2>
            <div class="scroll"><table><thead><tr><th scope="col">Job</th><th scope="col">Request</th><th scope="col">State</th><th scope="col">Reason</th></tr></thead>
            <tbody id="failures"></tbody></table></div>
          </section>
        </main>
        <script>
        "use strict";
        const $ = (id) => document.getElementById(id);
        function usd(text) {
          const value = Number(text);
          if (!isFinite(value)) return text;
          if (value === 0) return "$0.00";
          const digits = Math.abs(value) >= 1 ? 2 : Math.abs(value) >= 0.01 ? 4 : 6;
          return "$" + value.toFixed(digits);
        }
        function duration(seconds) {
          if (seconds === null || seconds === undefined) return "-";
          if (seconds < 90) return seconds + " s";
          if (seconds < 5400) return Math.round(seconds / 60) + " min";
          return (seconds / 3600).toFixed(1) + " h";
        }
        function row(cells) {
          const tr = document.createElement("tr");
          for (const cell of cells) {
            const td = document.createElement("td");
            if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell.text !== undefined ? cell.text : cell;
            if (cell.numeric) td.className = "n";
            tr.appendChild(td);
          }
          return tr;
        }
        function fill(id, rows, empty, columns) {
          const body = $(id);
          body.replaceChildren(...(rows.length ? rows : [row([{ text: empty }].concat(Array(columns - 1).fill("")))]));
        }
        const n = (text) => ({ text: String(text), numeric: true });
        function draw(data) {
          $("project").textContent = "· project " + data.project + (data.simulated ? " · simulated" : "");
          $("updated").textContent = "updated " + data.generated_at;
          $("spent").textContent = usd(data.spend.cost_usd);
          $("forecast").textContent = data.spend.forecast_usd ? "forecast for the month " + usd(data.spend.forecast_usd) : "";
          $("saved").textContent = usd(data.spend.savings_usd);
          $("baseline").textContent = "baseline " + usd(data.spend.baseline_usd) + " · " + data.spend.requests + " requests";
          if (data.cap) {
            $("cap").textContent = usd(data.cap.cap_usd);
            $("cap-bar").value = Math.min(Number(data.cap.used_basis_points || 0), 10000);
            $("cap-left").textContent = usd(data.cap.left_usd) + " left · " + usd(data.cap.reserved_usd) + " reserved";
          } else {
            $("cap").textContent = "none"; $("cap-bar").value = 0; $("cap-left").textContent = "no cap set for this month";
          }
          $("in-flight").textContent = data.live.calls_in_flight + " calls in flight";
          $("retries").textContent = data.live.retries + " retries · " + data.live.slowdowns + " rate-limit slow-downs";
          fill("jobs", data.jobs.map((job) => {
            const bar = document.createElement("progress");
            bar.max = Math.max(job.total, 1); bar.value = job.done;
            bar.setAttribute("aria-label", "job " + job.name + ": " + job.done + " of " + job.total + " done");
            const states = Object.entries(job.states).map(([state, count]) => state + " " + count).join(", ");
            return row([job.id + " " + job.name, bar, n(job.done + "/" + job.total), duration(job.eta_seconds), states,
              n(usd(job.spent_usd)), n(usd(job.estimated_usd)), n(usd(job.baseline_usd))]);
          }), "no jobs yet", 8);
          const spendRows = (lines) => lines.map((line) => row([line.key, n(line.requests), n(usd(line.cost_usd)), n(usd(line.savings_usd))]));
          fill("by-model", spendRows(data.by_model), "nothing spent this month", 4);
          fill("by-provider", spendRows(data.by_provider), "nothing spent this month", 4);
          fill("batches", data.open_batches.map((batch) => row([String(batch.job), batch.model, batch.state, n(batch.requests),
            duration(batch.age_seconds), batch.expected_end || "-"])), "no batch open", 6);
          fill("failures", data.failures.map((failure) => row([String(failure.job), failure.custom_id, failure.state, failure.reason])), "no failures", 4);
        }
        async function poll() {
          try {
            const answer = await fetch("/dashboard.json", { credentials: "same-origin", cache: "no-store" });
            if (answer.status === 401) { location.href = "/"; return; }
            if (!answer.ok) throw new Error("the server answered " + answer.status);
            draw(await answer.json());
            $("trouble").hidden = true;
          } catch (error) {
            $("trouble").textContent = "Cannot reach the server: " + error.message + " (retrying)";
            $("trouble").hidden = false;
          }
          setTimeout(poll, 2000);
        }
        poll();
        </script>
        </body></html>
        """
}
