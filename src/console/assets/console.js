// The console's live calls: rows arrive as Server-Sent Events and are added as text
// (textContent, never markup). Served by latchkey itself; the page allows no other script.
"use strict";

(function () {
  const main = document.querySelector("main[data-events]");
  if (!main) return;
  const body = document.getElementById("calls");
  const status = document.getElementById("status");
  status.textContent = "connecting…";
  const empty = document.getElementById("empty");
  const filters = {
    name: document.getElementById("f-name"),
    client: document.getElementById("f-client"),
    outcome: document.getElementById("f-outcome"),
  };
  const MAX_ROWS = 1000;
  let last = Number(main.dataset.after) || 0;

  function time(ms) {
    return new Date(Number(ms)).toLocaleTimeString();
  }

  function shown(row) {
    const name = filters.name.value.trim().toLowerCase();
    const client = filters.client.value.trim().toLowerCase();
    const outcome = filters.outcome.value;
    return (!name || row.dataset.name.toLowerCase().includes(name)) &&
      (!client || row.dataset.client.toLowerCase().includes(client)) &&
      (!outcome || row.dataset.outcome === outcome);
  }

  function refilter() {
    let any = false;
    for (const row of body.rows) {
      row.hidden = !shown(row);
      any = any || !row.hidden;
    }
    empty.hidden = any;
  }

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
  }

  function outcomeText(call) {
    switch (call.outcome) {
      case "ok": return "ok";
      case "tool_error": return "tool error";
      case "error": return call.error ? "error " + call.error : "error";
      default: return "cancelled";
    }
  }

  function add(call) {
    const row = document.createElement("tr");
    const name = call.tool || call.prompt || "";
    row.dataset.at = String(call.at_ms);
    row.dataset.name = name;
    row.dataset.client = call.client || "";
    row.dataset.outcome = call.outcome;
    row.className = "new";
    cell(row, time(call.at_ms), "at");
    cell(row, call.client || "");
    cell(row, call.method);
    cell(row, name);
    cell(row, outcomeText(call), call.outcome);
    cell(row, call.duration_ms.toFixed(1), "n");
    cell(row, call.arguments_bytes == null ? "" : String(call.arguments_bytes), "n");
    cell(row, call.answer_bytes == null ? "" : String(call.answer_bytes), "n");
    cell(row, call.trace_id || "", "trace");
    const io = row.insertCell();
    if (call.arguments != null || call.result != null) {
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = "show";
      const pre = document.createElement("pre");
      pre.textContent = (call.arguments != null ? "arguments: " + call.arguments + "\n" : "") +
        (call.result != null ? "result: " + call.result + "\n" : "");
      details.append(summary, pre);
      io.append(details);
    }
    row.hidden = !shown(row);
    body.prepend(row);
    while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
    if (!row.hidden) empty.hidden = true;
  }

  for (const row of body.rows) row.cells[0].textContent = time(row.dataset.at);
  for (const input of Object.values(filters)) input.addEventListener("input", refilter);
  refilter();

  const source = new EventSource(main.dataset.events + "?after=" + last);
  source.addEventListener("open", function () {
    status.textContent = "live";
    status.className = "live";
  });
  // The feed keeps the last 1,000 calls for a reader: at a pace it cannot keep up with, it
  // passes over the older ones, and the ids say how many.
  let passedOver = 0;
  // Each event is the calls that came since the last, oldest first.
  source.addEventListener("calls", function (event) {
    for (const call of JSON.parse(event.data)) {
      if (call.id <= last) continue;
      if (last > 0 && call.id > last + 1) {
        passedOver += call.id - last - 1;
        status.textContent = "live (" + passedOver + " calls came too fast to show)";
      }
      last = call.id;
      add(call);
    }
  });
  source.addEventListener("error", function () {
    status.textContent = "reconnecting…";
    status.className = "";
  });
})();
