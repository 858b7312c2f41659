// The sandbox's own panels beside the Slack-like page: simulated traffic (with what each variant's
// modelbot-serve answered), Try a request (InvokeEndpoint), churn's world (labels, the clock, drift), PagerDuty.
(function () {
  "use strict";
  const { api, el, esc } = window.sandboxPage;
  const $ = (id) => document.getElementById(id);
  const pct = (x, digits) => (100 * x).toFixed(digits === undefined ? 1 : digits) + "%";
  const COLORS = ["#1264a3", "#e8912d", "#2bac76", "#cd2553", "#7c3085"];
  let hosting = {};  // endpoint -> variant -> what the hosting says about its server

  // ---- Simulated traffic ----
  async function pollTraffic() {
    let data;
    try {
      const [traffic, served] = await Promise.all([api("/api/traffic"), api("/api/hosting").catch(() => ({}))]);
      data = traffic;
      hosting = {};
      for (const [name, ep] of Object.entries(served.endpoints || {})) {
        hosting[name] = {};
        for (const v of ep.variants) hosting[name][v.name] = v;
      }
    } catch (e) { return; }
    const box = $("traffic");
    if (!data.endpoints) { box.textContent = data.error || "Traffic simulation not running."; return; }
    for (const [name, ep] of Object.entries(data.endpoints)) {
      const sig = ep.variants.map((v) => v.name).join(",");
      let card = box.querySelector('[data-endpoint="' + name + '"]');
      if (!card || card.dataset.sig !== sig) {
        const fresh = buildEndpointCard(name, ep);
        if (card) card.replaceWith(fresh); else box.appendChild(fresh);
        card = fresh;
      }
      card.querySelector(".volume").textContent = "~" + ep.per_minute.toLocaleString() + " requests/min";
      ep.variants.forEach((v) => {
        const seg = card.querySelector('[data-seg="' + v.name + '"]');
        seg.style.width = (100 * v.share) + "%";
        seg.textContent = v.share >= 0.12 ? v.name + " " + pct(v.share, 0) : "";
        seg.title = v.name + " " + pct(v.share, 0);
        const row = card.querySelector('[data-variant="' + v.name + '"]');
        row.querySelector(".share").textContent = pct(v.share, 0);
        const lm = v.last_minute || {};
        card.querySelector('[data-observed="' + v.name + '"]').textContent = lm.requests ? "CloudWatch: 5XX " + pct(lm.errors_5xx / lm.requests, 2) + " · 4XX " + pct(lm.errors_4xx / lm.requests, 2) : "no traffic";
        renderServed(card.querySelector('[data-served="' + v.name + '"]'), (hosting[name] || {})[v.name], v.served);
        for (const [cls, key] of [[".r5", "rate_5xx"], [".r4", "rate_4xx"]]) {
          const input = row.querySelector(cls);
          if (document.activeElement !== input && input.dataset.dirty !== "1") input.value = (100 * v[key]).toFixed(2);
        }
      });
      const next = card.querySelector("tr.new-variant");
      for (const [cls, key] of [[".r5", "rate_5xx"], [".r4", "rate_4xx"]]) {
        const input = next.querySelector(cls);
        if (document.activeElement !== input && input.dataset.dirty !== "1") input.value = (100 * ep.new_variant[key]).toFixed(2);
      }
      if (ep.example && !tryBox.examples[name]) { tryBox.examples[name] = ep.example; tryBox.fill(); }
    }
    tryBox.endpoints(data.endpoints);
    renderWorld(data.world);
  }

  // What the variant's own modelbot-serve answered: its state, the real sample's error rates, the last error.
  function renderServed(cell, server, served) {
    cell.innerHTML = "";
    const state = server ? server.state : "missing";
    const line = el("div", "served-line");
    if (state === "failed") {
      line.appendChild(el("span", "served-bad", "modelbot-serve did not start: " + esc(server.failure || "")));
    } else if (state !== "serving") {
      line.appendChild(el("span", "", "modelbot-serve " + esc(state === "missing" ? "not started yet" : state) + "…"));
    } else {
      const s = served || {};
      const sampled = s.window ? "real sample: 5XX " + pct(s.rate_5xx, 1) + " · 4XX " + pct(s.rate_4xx, 1) + " of " + s.window : "no sample yet";
      line.appendChild(el("span", "", "modelbot-serve " + esc(server.module || "") + " · " + sampled));
    }
    cell.appendChild(line);
    const last = served && served.last_error;  // the sample's own (the Try box shows its answers itself)
    if (last) cell.appendChild(el("div", "served-error", "last " + last.status + ": " + esc(last.message || "")));
  }

  function wireRates(tr, endpoint, variant) {
    for (const input of tr.querySelectorAll("input")) input.addEventListener("input", () => { input.dataset.dirty = "1"; });
    tr.querySelector("button").addEventListener("click", async () => {
      const r5 = parseFloat(tr.querySelector(".r5").value) / 100, r4 = parseFloat(tr.querySelector(".r4").value) / 100;
      const answer = await api("/api/traffic/rates", { endpoint, variant, rate_5xx: r5, rate_4xx: r4 });
      if (answer.error) alert(answer.error);
      for (const input of tr.querySelectorAll("input")) input.dataset.dirty = "0";
      pollTraffic();
    });
  }

  function buildEndpointCard(name, ep) {
    const card = el("div", "endpoint");
    card.dataset.endpoint = name;
    card.dataset.sig = ep.variants.map((v) => v.name).join(",");
    card.appendChild(el("div", "endpoint-head", "<b>" + esc(name) + "</b> <span class=\"volume\"></span>"));
    const bar = el("div", "split");
    bar.setAttribute("aria-label", "Traffic split of " + name);
    ep.variants.forEach((v, i) => { const s = el("div", "seg"); s.dataset.seg = v.name; s.style.background = COLORS[i % COLORS.length]; bar.appendChild(s); });
    card.appendChild(bar);
    const table = el("table", "variants");
    table.innerHTML = "<thead><tr><th>variant</th><th>share</th><th title='injected'>5XX %</th><th title='injected'>4XX %</th><th></th></tr></thead>";
    const tbody = el("tbody");
    ep.variants.forEach((v, i) => {
      const tr = el("tr");
      tr.dataset.variant = v.name;
      tr.innerHTML = '<td><span class="dot" style="background:' + COLORS[i % COLORS.length] + '"></span>' + esc(v.name) + '</td><td class="share"></td>' +
        '<td><input class="r5" type="number" min="0" max="100" step="0.1" aria-label="5XX error rate (%) of ' + esc(name) + " " + esc(v.name) + '"></td>' +
        '<td><input class="r4" type="number" min="0" max="100" step="0.1" aria-label="4XX error rate (%) of ' + esc(name) + " " + esc(v.name) + '"></td>' +
        '<td><button type="button" class="small-button" aria-label="Apply error rates to ' + esc(name) + " " + esc(v.name) + '">Apply</button></td>';
      const served = el("tr", "served-row");
      served.innerHTML = '<td></td><td colspan="4" class="served"></td>';
      served.querySelector(".served").dataset.served = v.name;
      served.setAttribute("aria-label", "What " + name + " " + v.name + " served");
      const obs = el("tr", "observed-row");
      obs.innerHTML = '<td></td><td colspan="4" class="observed"></td>';
      obs.querySelector(".observed").dataset.observed = v.name;
      wireRates(tr, name, v.name);
      tbody.append(tr, served, obs);
    });
    const next = el("tr", "new-variant");
    next.innerHTML = '<td colspan="2">next new variant</td>' +
      '<td><input class="r5" type="number" min="0" max="100" step="0.1" aria-label="5XX error rate (%) of ' + esc(name) + ' new variants"></td>' +
      '<td><input class="r4" type="number" min="0" max="100" step="0.1" aria-label="4XX error rate (%) of ' + esc(name) + ' new variants"></td>' +
      '<td><button type="button" class="small-button" aria-label="Apply error rates to ' + esc(name) + ' new variants">Apply</button></td>';
    wireRates(next, name, "*");
    tbody.append(next);
    table.appendChild(tbody);
    card.appendChild(table);
    if (ep.note) card.appendChild(el("div", "panel-note", esc(ep.note)));
    return card;
  }

  // ---- Try a request ----
  const tryBox = {
    examples: {},
    known: "",
    endpoints(endpoints) {
      const sig = JSON.stringify(Object.entries(endpoints).map(([n, ep]) => [n, ep.variants.map((v) => v.name)]));
      if (sig === this.known) return;
      this.known = sig;
      const select = $("try-endpoint");
      const chosen = select.value;
      select.innerHTML = "";
      for (const name of Object.keys(endpoints)) select.appendChild(new Option(name, name, false, name === chosen));
      this.variants = Object.fromEntries(Object.entries(endpoints).map(([n, ep]) => [n, ep.variants.map((v) => v.name)]));
      this.fillVariants();
    },
    fillVariants() {
      const select = $("try-variant");
      const chosen = select.value;
      select.innerHTML = "";
      select.appendChild(new Option("by weight", ""));
      for (const v of (this.variants || {})[$("try-endpoint").value] || []) select.appendChild(new Option(v, v, false, v === chosen));
    },
    fill() {
      const body = $("try-body");
      const example = this.examples[$("try-endpoint").value];
      if (example && (!body.value || body.dataset.example === "1")) {
        body.value = JSON.stringify({ instances: [example] }, null, 1);
        body.dataset.example = "1";
      }
    },
    broken() {
      // The endpoint's example with each of its first two fields broken: one out of range, one of another type.
      const example = Object.assign({}, this.examples[$("try-endpoint").value] || {});
      const keys = Object.keys(example);
      if (keys[0]) example[keys[0]] = 100000;
      if (keys[1]) example[keys[1]] = "high";
      $("try-body").value = JSON.stringify({ instances: [example] }, null, 1);
      $("try-body").dataset.example = "0";
    },
    async send() {
      const out = $("try-answer");
      out.innerHTML = "";
      out.appendChild(el("div", "try-pending", "Sending…"));
      let answer;
      try {
        answer = await api("/api/try", { endpoint: $("try-endpoint").value, variant: $("try-variant").value, body: $("try-body").value });
      } catch (e) { answer = { error: String(e) }; }
      render(out, answer);
    },
  };

  function render(out, a) {
    out.innerHTML = "";
    const ms = a.seconds !== undefined ? " in " + Math.round(a.seconds * 1000) + " ms" : "";
    const from = a.variant ? " from " + esc(a.variant) : "";
    if (a.ok) {
      out.appendChild(el("div", "try-status ok", "200" + from + ms));
      out.appendChild(el("pre", "", esc(JSON.stringify(a.answer, null, 1))));
      return;
    }
    if (a.status) {
      out.appendChild(el("div", "try-status bad", a.status + from + ms + ": " + esc(a.error || "")));
      if (a.errors && a.errors.length) {
        const list = el("ul", "try-errors");
        list.setAttribute("aria-label", "Field errors");
        for (const e of a.errors) list.appendChild(el("li", "", "<code>" + esc(e.field || "") + "</code> " + esc(e.message || "")));
        out.appendChild(list);
        if (a.more_errors) out.appendChild(el("div", "panel-note", "and " + a.more_errors + " more"));
      }
      out.appendChild(el("div", "panel-note", "Your application gets botocore's <code>ModelError</code>: the model's own answer is its <code>OriginalMessage</code>, status <code>OriginalStatusCode</code>."));
      return;
    }
    out.appendChild(el("div", "try-status bad", esc((a.exception ? a.exception + ": " : "") + (a.message || a.error || "no answer"))));
  }

  function setupTry() {
    $("try-endpoint").addEventListener("change", () => { tryBox.fillVariants(); $("try-body").dataset.example = "1"; tryBox.fill(); });
    $("try-body").addEventListener("input", () => { $("try-body").dataset.example = "0"; });
    $("try-send").addEventListener("click", () => tryBox.send());
    $("try-example").addEventListener("click", () => { $("try-body").dataset.example = "1"; tryBox.fill(); });
    $("try-broken").addEventListener("click", () => tryBox.broken());
  }

  // ---- churn's world ----
  function renderWorld(w) {
    if (!w) return;
    const clock = new Date(w.clock);
    const when = clock.toISOString().slice(0, 16).replace("T", " ") + " UTC";
    const behind = w.lag_days >= 0.01 ? w.lag_days.toFixed(w.lag_days >= 1 ? 1 : 2) + " days behind today" : "today, real time";
    const pace = w.catching_up ? "; a day passes every " + w.seconds_per_day + " s" : "";
    $("world-clock").textContent = when + " (" + behind + pace + ")";
    const c = w.coefficients;
    $("world-state").textContent = (w.drifting ? "drifting" : (w.drift_days > 0 ? "drift stopped" : "calm")) +
      " · " + w.drift_days.toFixed(1) + " days of drift · churn log-odds: tenure " + c.tenure_z.toFixed(2) + ", complaints " + c.complaints_z.toFixed(2);
    $("world-labels").textContent = w.predictions.toLocaleString() + " predictions labelled · " + w.labels_written.toLocaleString() +
      " labels uploaded, " + w.labels_pending.toLocaleString() + " on their way";
    const button = $("drift");
    button.setAttribute("aria-pressed", w.drifting ? "true" : "false");
    button.textContent = w.drifting ? "Stop drift" : "Start drift";
    button.dataset.on = w.drifting ? "1" : "0";
  }

  function setupWorld() {
    $("drift").addEventListener("click", async () => {
      const button = $("drift");
      button.disabled = true;
      try {
        const answer = await api("/api/world", { drift: button.dataset.on !== "1" });
        if (answer.error) alert(answer.error);
      } finally { button.disabled = false; }
      pollTraffic();
    });
  }

  // ---- PagerDuty ----
  async function pollPagerDuty() {
    let data;
    try { data = await api("/api/pagerduty"); } catch (e) { return; }
    const ul = $("pagerduty");
    const sig = JSON.stringify(data.events);
    if (ul.dataset.sig === sig) return;
    ul.dataset.sig = sig;
    ul.innerHTML = "";
    if (!data.events.length) { ul.appendChild(el("li", "empty", "No events yet.")); return; }
    for (const e of data.events.slice().reverse()) {
      const li = el("li", "pd-event");
      li.appendChild(el("span", "pd-action " + esc(e.action || ""), esc(e.action || "")));
      li.appendChild(el("span", "pd-summary", esc(e.summary || e.dedup_key || "")));
      li.appendChild(el("span", "pd-key", esc((e.severity ? e.severity + " · " : "") + (e.dedup_key || ""))));
      ul.appendChild(li);
    }
  }

  setupTry();
  setupWorld();
  pollTraffic(); setInterval(pollTraffic, 2000);
  pollPagerDuty(); setInterval(pollPagerDuty, 2000);
})();
