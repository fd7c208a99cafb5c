/// The HTML dashboard (`cortex dashboard`, docs/decisions/016-dashboard.md): one self-contained
/// page, inline CSS and JS, no CDN. Pure rendering: the caller gathers the data.
///
/// Safety: no data is ever spliced into HTML. The whole snapshot goes into one
/// `<script type="application/json">` block with `<`, `>`, `&`, U+2028 and U+2029 written as
/// `\uXXXX` escapes (so no `</script>` can end the block early), and the page's script renders
/// every value with `textContent`, never `innerHTML`. Task descriptions are user input.
public enum Dashboard {
    /// What one page shows: the three views (as written to disk), optional metrics, recent events.
    public struct Snapshot: Sendable {
        /// `token-budget.json`'s content.
        public var budget: JSONValue
        /// `task-queue.json`'s content.
        public var taskQueue: JSONValue
        /// `worker-pool.json`'s content.
        public var workerPool: JSONValue
        /// `metrics.json`'s content, or nil when there is none yet.
        public var metrics: JSONValue?
        /// The last journal events, oldest first, each in `cortex tail --json`'s shape.
        public var events: [JSONValue]
        /// The coordination folder, shown in the header.
        public var directory: String
        /// When the snapshot was taken.
        public var generatedMilliseconds: Int64
        /// True: the page never reloads (a frozen snapshot). False: served over HTTP it reloads
        /// the view files beside it every `refreshSeconds`.
        public var frozen: Bool
        /// How often a served page reloads its data.
        public var refreshSeconds: Int

        /// A snapshot.
        public init(
            budget: JSONValue, taskQueue: JSONValue, workerPool: JSONValue, metrics: JSONValue?, events: [JSONValue],
            directory: String, generatedMilliseconds: Int64, frozen: Bool, refreshSeconds: Int = 3
        ) {
            self.budget = budget
            self.taskQueue = taskQueue
            self.workerPool = workerPool
            self.metrics = metrics
            self.events = events
            self.directory = directory
            self.generatedMilliseconds = generatedMilliseconds
            self.frozen = frozen
            self.refreshSeconds = refreshSeconds
        }

        /// The embedded data object (the names the page's script reads).
        public var json: JSONValue {
            .object([
                "budget": budget, "directory": .string(directory), "events": .array(events), "frozen": .bool(frozen),
                "generated_at": .string(ISOTime.format(milliseconds: generatedMilliseconds)),
                "metrics": metrics ?? .null, "pool": workerPool, "queue": taskQueue, "refresh_seconds": .int(refreshSeconds),
            ])
        }
    }

    /// The file a served page reads its events from, beside the page.
    public static let eventsFileName = "events.json"

    /// The metrics file a served page reads, beside the views (written by `cortex metrics`).
    public static let metricsFileName = "metrics.json"

    /// `events.json`: `{"events": [...], "updated_at": ...}`, the last events oldest first.
    public static func eventsDocument(_ events: [JSONValue], nowMilliseconds: Int64) -> JSONValue {
        .object(["events": .array(events), "updated_at": .string(ISOTime.format(milliseconds: nowMilliseconds))])
    }

    /// The whole page.
    public static func page(_ snapshot: Snapshot) -> [UInt8] {
        var bytes = Array(pageHead.utf8)
        bytes += scriptSafeJSON(snapshot.json)
        bytes += Array(pageTail.utf8)
        return bytes
    }

    /// `value` serialised so that it can sit inside a `<script>` element: `<`, `>`, `&`, U+2028
    /// and U+2029 become `\uXXXX` escapes. They can only occur inside JSON strings, where the
    /// escape means the same character, so `JSON.parse` gives back exactly `value`.
    public static func scriptSafeJSON(_ value: JSONValue) -> [UInt8] {
        let plain = value.serialized()
        var safe: [UInt8] = []
        safe.reserveCapacity(plain.count + plain.count / 16)
        var index = 0
        func escape(_ hex: String) { safe += Array("\\u\(hex)".utf8) }
        while index < plain.count {
            let byte = plain[index]
            switch byte {
            case UInt8(ascii: "<"): escape("003c")
            case UInt8(ascii: ">"): escape("003e")
            case UInt8(ascii: "&"): escape("0026")
            case 0xE2 where index + 2 < plain.count && plain[index + 1] == 0x80 && (plain[index + 2] == 0xA8 || plain[index + 2] == 0xA9):
                escape(plain[index + 2] == 0xA8 ? "2028" : "2029")
                index += 2
            default: safe.append(byte)
            }
            index += 1
        }
        return safe
    }

    // The page: markup and style, then the data block, then the script. Every element the
    // tests (and people's scripts) read has a `data-testid`.
    private static let pageHead = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Cortex dashboard</title>
        <style>
        :root { --bg:#f4f6f9; --card:#fff; --ink:#1c2430; --muted:#667085; --line:#e3e8ef;
          --run:#1f9d55; --start:#38b2ac; --stop:#dd8a1f; --queued:#98a2b3; --exited:#5b6b82; --stopped:#b8c0cc;
          --lost:#d64545; --claimer:#7c5cd6; --spent:#e0a030; --reserved:#3b82f6; --avail:#1f9d55; }
        * { box-sizing: border-box; }
        body { margin:0; background:var(--bg); color:var(--ink); font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
        header { display:flex; align-items:baseline; gap:16px; padding:14px 24px; background:#1c2430; color:#fff; }
        header h1 { margin:0; font-size:20px; letter-spacing:.5px; }
        header .dir { color:#c8d0dc; font-family:ui-monospace,"DejaVu Sans Mono",monospace; font-size:13px; }
        header .source { margin-left:auto; font-size:13px; color:#c8d0dc; }
        header .dot { display:inline-block; width:9px; height:9px; border-radius:50%; background:#98a2b3; margin-right:6px; }
        header .dot.live { background:#4ade80; }
        main { display:grid; grid-template-columns:repeat(12,1fr); gap:16px; padding:16px 24px 24px; }
        section { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:14px 16px; min-width:0; }
        h2 { margin:0 0 10px; font-size:13px; text-transform:uppercase; letter-spacing:.8px; color:var(--muted); display:flex; gap:10px; align-items:baseline; }
        h2 .aside { text-transform:none; letter-spacing:0; font-weight:normal; }
        h3 { margin:12px 0 6px; font-size:12px; color:var(--muted); font-weight:600; }
        #tokens { grid-column:span 6; } #workers { grid-column:span 6; }
        #queue { grid-column:span 7; } #latency { grid-column:span 5; } #events { grid-column:span 12; }
        .stats { display:grid; grid-template-columns:repeat(4,1fr); gap:8px; margin:0 0 12px; }
        .stat { padding:6px 8px; border-left:4px solid var(--line); }
        .stat .label { color:var(--muted); font-size:12px; }
        .stat .value { font-size:22px; font-weight:600; font-variant-numeric:tabular-nums; white-space:nowrap; }
        .stat .value.long { font-size:17px; line-height:26px; }
        .stat.total { border-color:var(--ink); } .stat.reserved { border-color:var(--reserved); }
        .stat.spent { border-color:var(--spent); } .stat.available { border-color:var(--avail); }
        .gauge { display:flex; height:18px; border-radius:9px; overflow:hidden; background:#eef1f5; }
        .gauge div { height:100%; }
        .gauge .spent { background:var(--spent); } .gauge .reserved { background:var(--reserved); } .gauge .available { background:var(--avail); opacity:.35; }
        .gauge.small { height:8px; margin-top:3px; }
        .tenant { margin-top:8px; font-size:12px; }
        .tenant .name { font-weight:600; }
        .note { color:var(--muted); font-size:12px; }
        .chips { display:flex; flex-wrap:wrap; gap:6px; margin-bottom:6px; }
        .chip { border:1px solid var(--line); border-radius:12px; padding:2px 10px; font-size:12px; background:#fafbfc; }
        .chip b { font-variant-numeric:tabular-nums; }
        .grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(150px,1fr)); gap:8px; }
        .tile { border-radius:8px; padding:6px 8px; color:#fff; min-height:58px; font-size:12px; overflow:hidden; }
        .tile .id { font-weight:700; font-size:13px; }
        .tile .sub { opacity:.92; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
        .grid.compact { grid-template-columns:repeat(auto-fill,minmax(66px,1fr)); gap:3px; }
        .grid.compact .tile { min-height:0; padding:1px 3px; border-radius:4px; border-width:1px; }
        .grid.compact .tile .id { font-size:10px; font-weight:600; white-space:nowrap; overflow:hidden; text-overflow:clip; }
        .grid.compact .tile .sub { display:none; }
        .state-running.idle { background:#9ad7b1; color:#0f3d22; }
        .state-running { background:var(--run); } .state-starting { background:var(--start); } .state-stopping { background:var(--stop); }
        .state-queued { background:#fff; color:var(--ink); border:2px dashed var(--queued); } .state-exited { background:var(--exited); }
        .state-stopped { background:var(--stopped); color:var(--ink); } .state-lost { background:var(--lost); } .state-claimer { background:var(--claimer); }
        .legend { display:flex; flex-wrap:wrap; gap:10px; font-size:12px; color:var(--muted); margin-bottom:8px; }
        .legend span::before { content:""; display:inline-block; width:10px; height:10px; border-radius:3px; margin-right:4px; vertical-align:-1px; background:var(--c); }
        table { width:100%; border-collapse:collapse; font-size:12px; table-layout:fixed; }
        th { text-align:left; color:var(--muted); font-weight:600; border-bottom:1px solid var(--line); padding:3px 6px; }
        td { padding:3px 6px; border-bottom:1px solid #f0f2f5; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
        td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
        th.group { text-align:center; border-bottom:1px solid var(--line); }
        .mono { font-family:ui-monospace,"DejaVu Sans Mono",monospace; }
        .pri-critical { color:#b42318; font-weight:700; } .pri-high { color:#b54708; font-weight:600; } .pri-low { color:var(--muted); }
        .empty { color:var(--muted); font-style:italic; padding:6px 0; }
        #event-list td.time { width:72px; color:var(--muted); } #event-list td.kind { width:150px; font-weight:600; }
        </style>
        </head>
        <body>
        <header>
          <h1>Cortex</h1>
          <span class="dir" id="dir" data-testid="dir"></span>
          <span class="source"><span class="dot" id="source-dot"></span><span id="source" data-testid="source"></span></span>
        </header>
        <main>
          <section id="tokens">
            <h2>Tokens <span class="aside note" id="budget-period"></span></h2>
            <div class="stats">
              <div class="stat total"><div class="label">total</div><div class="value" data-testid="tokens-total">–</div></div>
              <div class="stat reserved"><div class="label">reserved</div><div class="value" data-testid="tokens-reserved">–</div></div>
              <div class="stat spent"><div class="label">spent</div><div class="value" data-testid="tokens-spent">–</div></div>
              <div class="stat available"><div class="label">available</div><div class="value" data-testid="tokens-available">–</div></div>
            </div>
            <div class="gauge" id="token-gauge" data-testid="token-gauge"><div class="spent"></div><div class="reserved"></div><div class="available"></div></div>
            <div class="note" id="allocations-note"></div>
            <div id="tenants"></div>
          </section>
          <section id="workers">
            <h2>Workers <span class="aside" data-testid="workers-summary" id="workers-summary"></span></h2>
            <div class="legend">
              <span style="--c:var(--run)">busy</span><span style="--c:#9ad7b1">idle</span><span style="--c:var(--start)">starting</span><span style="--c:var(--stop)">stopping</span>
              <span style="--c:var(--queued)">queued</span><span style="--c:var(--claimer)">claimer</span>
              <span style="--c:var(--exited)">exited</span><span style="--c:var(--stopped)">stopped</span><span style="--c:var(--lost)">lost</span>
            </div>
            <div class="grid" id="worker-grid" data-testid="worker-grid"></div>
          </section>
          <section id="queue">
            <h2>Queue <span class="aside" id="queue-summary"></span></h2>
            <div class="chips" id="task-counts"></div>
            <h3>Running <span class="note" id="running-note"></span></h3>
            <table id="running-table" data-testid="running-table">
              <colgroup><col style="width:24%"><col style="width:16%"><col style="width:22%"><col style="width:10%"><col style="width:28%"></colgroup>
              <thead><tr><th>task</th><th>type</th><th>worker</th><th class="num">claim</th><th>claimed at</th></tr></thead><tbody></tbody>
            </table>
            <h3>Pending, in claim order <span class="note" id="pending-note"></span></h3>
            <table id="pending-table" data-testid="pending-table">
              <colgroup><col style="width:6%"><col style="width:20%"><col style="width:12%"><col style="width:14%"><col style="width:48%"></colgroup>
              <thead><tr><th class="num">#</th><th>task</th><th>priority</th><th>type</th><th>description</th></tr></thead><tbody></tbody>
            </table>
          </section>
          <section id="latency">
            <h2>Latency <span class="aside note" id="metrics-note"></span></h2>
            <table id="latency-table" data-testid="latency-table">
              <thead>
                <tr><th rowspan="2">type</th><th class="group" colspan="3">queue wait</th><th class="group" colspan="3">run time</th></tr>
                <tr><th class="num">p50</th><th class="num">p95</th><th class="num">p99</th><th class="num">p50</th><th class="num">p95</th><th class="num">p99</th></tr>
              </thead><tbody></tbody>
            </table>
          </section>
          <section id="events">
            <h2>Last events <span class="aside note" id="events-note"></span></h2>
            <table id="event-list" data-testid="event-list"><tbody></tbody></table>
          </section>
        </main>
        <script type="application/json" id="cortex-data">
        """#

    private static let pageTail = #"""

        </script>
        <script>
        "use strict";
        (function () {
          var data = JSON.parse(document.getElementById("cortex-data").textContent);
          var fetchedAt = null;
          var pendingRows = 12;   // the next ones in claim order; the counts say how many wait

          function $(id) { return document.getElementById(id); }
          function el(tag, cls, text) {
            var node = document.createElement(tag);
            if (cls) node.className = cls;
            if (text !== undefined && text !== null) node.textContent = String(text);
            return node;
          }
          function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
          function num(value) { return typeof value === "number" ? value.toLocaleString("en-US") : "–"; }
          function setNumber(testid, value) {
            var node = document.querySelector('[data-testid="' + testid + '"]');
            node.textContent = num(value);
            node.className = node.textContent.length > 9 ? "value long" : "value";
            node.setAttribute("data-value", typeof value === "number" ? String(value) : "");
          }
          function cell(row, text, cls) { var td = el("td", cls, text); td.title = td.textContent; row.appendChild(td); return td; }
          function clock(iso) { return typeof iso === "string" && iso.length >= 19 ? iso.slice(11, 19) : "–"; }
          function seconds(value) {
            if (typeof value !== "number") return "–";
            if (value < 1) return Math.round(value * 1000) + " ms";
            if (value < 120) return (Math.round(value * 10) / 10) + " s";
            return (Math.round(value / 6) / 10) + " min";
          }
          function emptyRow(tbody, columns, text) {
            var row = el("tr"); var td = el("td", "empty", text); td.colSpan = columns; row.appendChild(td); tbody.appendChild(row);
          }

          function renderTokens(budget) {
            budget = budget || {};
            var total = budget.total_budget, reserved = budget.allocated, spent = budget.spent, available = budget.available;
            setNumber("tokens-total", total); setNumber("tokens-reserved", reserved);
            setNumber("tokens-spent", spent); setNumber("tokens-available", available);
            var parts = $("token-gauge").children, whole = Math.max(1, total || 0);
            parts[0].style.width = (100 * (spent || 0) / whole) + "%";
            parts[1].style.width = (100 * (reserved || 0) / whole) + "%";
            parts[2].style.width = (100 * (available || 0) / whole) + "%";
            var outstanding = typeof budget.outstanding_allocations === "number" ? budget.outstanding_allocations : (budget.allocations || []).length;
            $("allocations-note").textContent = outstanding + " outstanding allocation" + (outstanding === 1 ? "" : "s");
            $("budget-period").textContent = typeof budget.period === "number" ? "period " + budget.period : "";
            var tenants = $("tenants"); clear(tenants);
            Object.keys(budget.tenants || {}).sort().forEach(function (name) {
              var t = budget.tenants[name], box = el("div", "tenant");
              box.appendChild(el("span", "name", name));
              box.appendChild(el("span", "note", "  reserved " + num(t.reserved) + " · spent " + num(t.spent) +
                (typeof t.quota === "number" ? " · quota " + num(t.quota) : " · no quota")));
              if (typeof t.quota === "number" && t.quota > 0) {
                var g = el("div", "gauge small"), s = el("div", "spent"), r = el("div", "reserved");
                s.style.width = (100 * t.spent / t.quota) + "%"; r.style.width = (100 * t.reserved / t.quota) + "%";
                g.appendChild(s); g.appendChild(r); box.appendChild(g);
              }
              tenants.appendChild(box);
            });
          }

          function renderWorkers(pool, queue) {
            pool = pool || {}; queue = queue || {};
            var grid = $("worker-grid"); clear(grid);
            var taskOf = {};
            (queue.running || []).forEach(function (task) { if (task.worker) taskOf[task.worker] = task; });
            var seen = {}, tiles = [];
            (pool.workers || []).concat(pool.queued || [], pool.recent || []).forEach(function (w) {
              if (!w || seen[w.id]) return; seen[w.id] = true; tiles.push(w);
            });
            Object.keys(taskOf).sort().forEach(function (id) {
              if (!seen[id]) { seen[id] = true; tiles.push({ id: id, state: "claimer", type: taskOf[id].type }); }
            });
            tiles.forEach(function (w) {
              var task = taskOf[w.id];
              var tile = el("div", "tile state-" + (w.state || "queued") + (w.state === "running" && !task ? " idle" : ""));
              tile.setAttribute("data-testid", "worker");
              tile.setAttribute("data-worker", w.id);
              tile.setAttribute("data-state", w.state || "");
              tile.appendChild(el("div", "id", w.id));
              tile.appendChild(el("div", "sub", (w.state || "") + (w.type ? " · " + w.type : "")));
              var line = task ? "▶ " + task.id : w.state === "queued" ? (w.queued_reason || "waiting for room")
                : w.state === "running" ? "idle" : (typeof w.exit_code === "number" ? "exit " + w.exit_code
                : typeof w.signal === "number" ? "signal " + w.signal : "");
              tile.appendChild(el("div", "sub", line));
              var facts = [];
              if (typeof w.pid === "number") facts.push("pid " + w.pid);
              if (typeof w.heartbeat_age_s === "number") facts.push("♥ " + seconds(w.heartbeat_age_s));
              if (w.restarts) facts.push("↻" + w.restarts);
              if (facts.length) tile.appendChild(el("div", "sub", facts.join(" · ")));
              tile.title = [w.id, w.state, w.type, line].concat(facts).filter(Boolean).join(" · ");
              grid.appendChild(tile);
            });
            if (!tiles.length) grid.appendChild(el("div", "empty", "no workers yet"));
            // Many workers (a pool of 100): small tiles, id and task only; the rest on hover.
            grid.className = tiles.length > 24 ? "grid compact" : "grid";
            var cap = pool.capacity || {}, counts = pool.counts || {};
            var summary = num(cap.running) + " of " + num(cap.max_workers) + " running · " + num((pool.queued || []).length) + " queued";
            ["lost", "exited", "stopped"].forEach(function (k) { if (counts[k]) summary += " · " + counts[k] + " " + k; });
            $("workers-summary").textContent = summary;
            $("workers-summary").setAttribute("data-running", String(cap.running || 0));
          }

          function renderQueue(queue) {
            queue = queue || {};
            var counts = queue.counts || {}, chips = $("task-counts"); clear(chips);
            ["pending", "running", "done", "failed", "dead", "cancelled"].forEach(function (status) {
              var chip = el("span", "chip"); chip.appendChild(document.createTextNode(status + " "));
              var b = el("b", null, num(counts[status] || 0)); b.setAttribute("data-testid", "tasks-" + status);
              b.setAttribute("data-value", String(counts[status] || 0)); chip.appendChild(b); chips.appendChild(chip);
            });
            $("queue-summary").textContent = num(queue.total_created) + " created";
            var running = $("running-table").tBodies[0]; clear(running);
            (queue.running || []).slice(0, pendingRows).forEach(function (task) {
              var row = el("tr"); row.setAttribute("data-testid", "running-task"); row.setAttribute("data-task", task.id);
              cell(row, task.id, "mono"); cell(row, task.type); cell(row, task.worker || "–", "mono");
              cell(row, task.claim, "num"); cell(row, clock(task.claimed_at)); running.appendChild(row);
            });
            if (!(queue.running || []).length) emptyRow(running, 5, "nothing running");
            var busy = (queue.running || []).length;
            $("running-note").textContent = busy > pendingRows ? "(first " + pendingRows + " of " + num(busy) + ")" : "";
            var pending = $("pending-table").tBodies[0]; clear(pending);
            var list = queue.pending || [];
            list.slice(0, pendingRows).forEach(function (task, index) {
              var row = el("tr"); row.setAttribute("data-testid", "pending-task"); row.setAttribute("data-task", task.id);
              cell(row, index + 1, "num"); cell(row, task.id, "mono"); cell(row, task.priority, "pri-" + task.priority);
              cell(row, task.type); cell(row, task.description || (task.last_error ? "retry: " + task.last_error : ""));
              pending.appendChild(row);
            });
            if (!list.length) emptyRow(pending, 5, "queue empty");
            var shown = Math.min(pendingRows, list.length), waiting = (counts.pending || 0) + (counts.failed || 0);
            $("pending-note").textContent = waiting > shown ? "(first " + shown + " of " + num(waiting) + ")" : "";
          }

          function pick(object, names) {
            for (var i = 0; i < names.length; i++) if (object && object[names[i]] !== undefined) return object[names[i]];
            return undefined;
          }
          function renderLatency(metrics) {
            var tbody = $("latency-table").tBodies[0]; clear(tbody);
            var types = metrics ? pick(metrics, ["task_types", "types", "by_type"]) : null;
            var names = types ? Object.keys(types).sort() : [];
            names.forEach(function (name) {
              var m = types[name] || {}, row = el("tr"); row.setAttribute("data-testid", "latency-row"); row.setAttribute("data-type", name);
              cell(row, name);
              var wait = pick(m, ["queue_wait_seconds", "queue_wait_s", "queue_wait"]) || {};
              var run = pick(m, ["run_time_seconds", "run_time_s", "run_time"]) || {};
              [wait, run].forEach(function (q) {
                ["p50", "p95", "p99"].forEach(function (p) { cell(row, seconds(q[p]), "num"); });
              });
              tbody.appendChild(row);
            });
            if (!names.length) emptyRow(tbody, 7, metrics ? "no finished tasks yet" : "– no metrics yet (metrics.json appears once 'cortex metrics' writes it)");
            $("metrics-note").textContent = metrics && metrics.updated_at ? "as of " + clock(metrics.updated_at) : "";
          }

          function summary(event) {
            // Plain values first (worker=…, task=…), nested objects (evidence, spec) after them.
            var dataObject = event.data || {}, parts = [];
            var keys = Object.keys(dataObject).sort(function (a, b) {
              var nestedA = typeof dataObject[a] === "object" && dataObject[a] !== null;
              var nestedB = typeof dataObject[b] === "object" && dataObject[b] !== null;
              return nestedA === nestedB ? (a < b ? -1 : a > b ? 1 : 0) : nestedA ? 1 : -1;
            });
            keys.forEach(function (key) {
              var value = dataObject[key];
              parts.push(key + "=" + (typeof value === "string" ? value : JSON.stringify(value)));
            });
            return parts.join(" ");
          }
          function renderEvents(events) {
            var tbody = $("event-list").tBodies[0]; clear(tbody);
            var list = (events || []).slice().reverse();
            list.forEach(function (event) {
              var row = el("tr"); row.setAttribute("data-testid", "event");
              cell(row, clock(event.at), "time"); cell(row, event.kind, "kind"); cell(row, summary(event), "mono");
              tbody.appendChild(row);
            });
            if (!list.length) emptyRow(tbody, 3, "no events");
            $("events-note").textContent = list.length ? "newest first · " + list.length + " shown" : "";
          }

          function render() {
            $("dir").textContent = data.directory || "";
            renderTokens(data.budget); renderWorkers(data.pool, data.queue); renderQueue(data.queue);
            renderLatency(data.metrics); renderEvents(data.events);
            var source = $("source"), dot = $("source-dot");
            if (fetchedAt) {
              source.textContent = "live · reloaded " + fetchedAt.toISOString().slice(11, 19) + " UTC every " + data.refresh_seconds + " s";
              source.setAttribute("data-mode", "live"); dot.className = "dot live";
            } else {
              source.textContent = (data.frozen ? "snapshot" : "embedded snapshot") + " of " + clock(data.generated_at) + " UTC";
              source.setAttribute("data-mode", "embedded"); dot.className = "dot";
            }
          }

          function load(name) {
            return fetch(name, { cache: "no-store" }).then(function (response) {
              if (!response.ok) throw new Error(name + ": HTTP " + response.status);
              return response.json();
            });
          }
          function refresh() {
            var names = ["token-budget.json", "task-queue.json", "worker-pool.json", "metrics.json", "events.json"];
            return Promise.all(names.map(function (name) {
              return load(name).then(function (v) { return { ok: true, value: v }; }, function () { return { ok: false }; });
            })).then(function (results) {
              if (!results[0].ok && !results[1].ok && !results[2].ok) return;   // not served beside the views
              if (results[0].ok) data.budget = results[0].value;
              if (results[1].ok) data.queue = results[1].value;
              if (results[2].ok) data.pool = results[2].value;
              if (results[3].ok) data.metrics = results[3].value;
              if (results[4].ok && results[4].value && results[4].value.events) data.events = results[4].value.events;
              fetchedAt = new Date();
              render();
            });
          }

          render();
          // Opened from disk (file://) fetch fails: the embedded data stays, silently.
          if (!data.frozen && /^https?:$/.test(location.protocol)) {
            refresh();
            setInterval(refresh, Math.max(1, data.refresh_seconds || 3) * 1000);
          }
        })();
        </script>
        </body>
        </html>

        """#
}
