// The sandbox's Slack-like page. Polls /api/state for the open channel and thread; sends commands, messages
// and button clicks to the sandbox, which signs them and posts them to modelbot the way Slack does.
(function () {
  "use strict";
  const { render, plain, esc } = window.mrkdwn;
  const SUBCOMMANDS = [
    ["status", "[model]", "every model, or one in detail with its chart"],
    ["retrain", "<model> [key=value ...]", "trigger the model's Airflow DAG"],
    ["rollback", "<model> [reason]", "all traffic back to the stable variant"],
    ["promote", "<model> [variant] [--force]", "promote the candidate"],
    ["pause", "<model> [reason]", "pause the model's rollout"],
    ["resume", "<model>", "resume a paused rollout"],
    ["pricing", "<vcpu> <memory_gib> [gpus] | <model>", "cheapest SageMaker instances that fit"],
    ["help", "", "usage"],
  ];
  const TOPICS = {
    C0CHURN: "churn: retraining finds a better candidate, which rolls out step by step and is promoted",
    C0FRAUD: "fraud: the candidate evaluates better but fails more in production; its rollout rolls back by itself",
    C0ALERTS: "pages for the on-call: automatic rollbacks, stuck rollouts",
  };
  const params = new URLSearchParams(location.search);
  const state = {
    channel: params.get("channel") || "C0CHURN", thread: null, channels: [], seen: {}, history: [],
    last: "", lastThread: "", names: { U0YOU: "You", U0MODELBOT: "modelbot" }, completion: -1,
  };
  const $ = (id) => document.getElementById(id);

  async function api(path, body) {
    const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const response = await fetch(path, init);
    return response.json();
  }

  // ---- time and small helpers ----
  const time = (ts) => new Date(parseFloat(ts) * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const el = (tag, cls, html) => { const e = document.createElement(tag); if (cls) e.className = cls; if (html !== undefined) e.innerHTML = html; return e; };
  const replies = (n) => n === 1 ? "1 reply" : n + " replies";
  const channelName = (id) => (state.channels.find((c) => c.id === id) || { name: id }).name;

  // ---- Block Kit ----
  function button(elem, msg, inThread) {
    const b = el("button", "bk-button" + (elem.style ? " " + elem.style : ""));
    b.type = "button";
    b.textContent = (elem.text && elem.text.text) || "Button";
    if (elem.url) {
      b.addEventListener("click", () => window.open(elem.url, "_blank", "noopener"));
      return b;
    }
    b.addEventListener("click", () => {
      const send = () => click(msg, elem, b);
      if (elem.confirm) confirmDialog(elem.confirm, send, b); else send();
    });
    return b;
  }

  async function click(msg, elem, b) {
    b.disabled = true;
    const body = { channel: state.channel, action_id: elem.action_id };
    if (msg.ephemeral) body.ephemeral = msg.ephemeral; else body.message_ts = msg.ts;
    try { await api("/api/action", body); } finally { setTimeout(() => { b.disabled = false; }, 800); }
    poll();
  }

  function confirmDialog(confirm, onConfirm, opener) {
    const backdrop = $("dialog-backdrop");
    backdrop.innerHTML = "";
    const d = el("div", "dialog");
    d.setAttribute("role", "dialog");
    d.setAttribute("aria-modal", "true");
    d.setAttribute("aria-labelledby", "dialog-title");
    const title = el("h2", "", plain(confirm.title || { type: "plain_text", text: "Are you sure?" }));
    title.id = "dialog-title";
    d.appendChild(title);
    d.appendChild(el("div", "dialog-text", plain(confirm.text || { type: "plain_text", text: "" })));
    const row = el("div", "dialog-buttons");
    const deny = el("button", "bk-button");
    deny.type = "button";
    deny.textContent = (confirm.deny && confirm.deny.text) || "Cancel";
    const ok = el("button", "bk-button " + (confirm.style === "danger" ? "danger" : "primary"));
    ok.type = "button";
    ok.textContent = (confirm.confirm && confirm.confirm.text) || "Yes";
    const close = () => { backdrop.hidden = true; backdrop.innerHTML = ""; document.removeEventListener("keydown", onKey); if (opener) opener.focus(); };
    const onKey = (e) => { if (e.key === "Escape") close(); };
    deny.addEventListener("click", close);
    ok.addEventListener("click", () => { close(); onConfirm(); });
    row.append(deny, ok);
    d.appendChild(row);
    backdrop.appendChild(d);
    backdrop.hidden = false;
    document.addEventListener("keydown", onKey);
    ok.focus();
  }

  function image(url, alt, title, cls) {
    const fig = el("figure", cls || "bk-image");
    if (title) fig.appendChild(el("figcaption", "", esc(title)));
    const img = el("img");
    img.src = url;
    img.alt = alt || "";
    img.loading = "eager";
    img.addEventListener("load", () => stickIfNeeded(img));
    fig.appendChild(img);
    return fig;
  }

  function blocks(list, msg, inThread) {
    const out = el("div", "blocks");
    for (const b of list || []) {
      if (b.type === "section") {
        const s = el("div", "bk-section");
        const main = el("div", "bk-section-main");
        if (b.text) main.appendChild(el("div", "bk-text", plain(b.text)));
        if (b.fields) {
          const f = el("div", "bk-fields");
          for (const field of b.fields) f.appendChild(el("div", "bk-field", plain(field)));
          main.appendChild(f);
        }
        s.appendChild(main);
        if (b.accessory) {
          if (b.accessory.type === "button") s.appendChild(button(b.accessory, msg, inThread));
          else if (b.accessory.type === "image") { const i = el("img", "bk-accessory-image"); i.src = b.accessory.image_url; i.alt = b.accessory.alt_text || ""; s.appendChild(i); }
        }
        out.appendChild(s);
      } else if (b.type === "header") {
        out.appendChild(el("div", "bk-header", plain(b.text)));
      } else if (b.type === "divider") {
        out.appendChild(el("hr", "bk-divider"));
      } else if (b.type === "context") {
        const c = el("div", "bk-context");
        for (const e of b.elements || []) {
          if (e.type === "image") { const i = el("img", "bk-context-image"); i.src = e.image_url; i.alt = e.alt_text || ""; c.appendChild(i); }
          else c.appendChild(el("span", "", plain(e)));
        }
        out.appendChild(c);
      } else if (b.type === "actions") {
        const a = el("div", "bk-actions");
        for (const e of b.elements || []) if (e.type === "button") a.appendChild(button(e, msg, inThread));
        out.appendChild(a);
      } else if (b.type === "image") {
        out.appendChild(image(b.image_url || (b.slack_file && b.slack_file.url) || "", b.alt_text, b.title && b.title.text));
      } else if (b.type === "rich_text" || b.type === "markdown") {
        out.appendChild(el("div", "bk-text", render(b.text || "")));
      }
    }
    return out;
  }

  // ---- messages ----
  function message(msg, inThread) {
    const m = el("div", "message" + (msg.ephemeral ? " ephemeral" : ""));
    m.dataset.ts = msg.ts;
    if (msg.ephemeral) {
      const note = el("div", "ephemeral-note", '<span class="eye" aria-hidden="true">i</span> Only visible to you');
      const dismiss = el("button", "link-button", "Dismiss");
      dismiss.type = "button";
      dismiss.addEventListener("click", async () => { await api("/api/dismiss", { ephemeral: msg.ephemeral }); poll(); });
      note.appendChild(dismiss);
      m.appendChild(note);
    }
    const row = el("div", "message-row");
    const avatar = el("div", "avatar " + (msg.bot ? "bot" : "person"), msg.bot ? "M" : esc((msg.name || "?")[0]));
    avatar.setAttribute("aria-hidden", "true");
    row.appendChild(avatar);
    const body = el("div", "message-body");
    const head = el("div", "message-head");
    head.appendChild(el("span", "author", esc(msg.name || "")));
    if (msg.bot) head.appendChild(el("span", "app-badge", "APP"));
    head.appendChild(el("time", "stamp", time(msg.ts)));
    body.appendChild(head);
    if (msg.broadcast) body.appendChild(el("div", "broadcast-note", "replied to a thread"));
    if (msg.blocks && msg.blocks.length) body.appendChild(blocks(msg.blocks, msg, inThread));
    else if (msg.text) body.appendChild(el("div", "text", render(msg.text, state.names)));
    for (const f of msg.files || []) {
      if ((f.mimetype || "").startsWith("image/")) body.appendChild(image(f.url, f.alt, f.title, "file-image"));
      else { const a = el("a", "file", esc(f.title || f.id)); a.href = f.url; body.appendChild(a); }
    }
    if (msg.edited) body.appendChild(el("span", "edited", "(edited)"));
    if (!inThread && msg.reply_count > 0) {
      const r = el("div", "replies");
      const open = el("button", "replies-link", replies(msg.reply_count));
      open.type = "button";
      open.addEventListener("click", () => openThread(msg.ts));
      r.appendChild(open);
      if (msg.latest_reply) r.appendChild(el("span", "last-reply", "Last reply " + time(msg.latest_reply)));
      body.appendChild(r);
    }
    row.appendChild(body);
    m.appendChild(row);
    return m;
  }

  function atBottom(box) { return box.scrollHeight - box.scrollTop - box.clientHeight < 60; }
  function stickIfNeeded(img) {
    const box = img.closest(".messages");
    if (box && box.dataset.stick === "1") box.scrollTop = box.scrollHeight;
  }

  function renderList(box, msgs, inThread) {
    const stick = box.childElementCount === 0 || atBottom(box);
    box.dataset.stick = stick ? "1" : "0";
    box.innerHTML = "";
    if (!msgs.length) box.appendChild(el("div", "empty-channel", "No messages yet. Type <code>/model help</code> below."));
    msgs.forEach((msg, i) => {
      box.appendChild(message(msg, inThread));
      if (inThread && i === 0 && msgs.length > 1) box.appendChild(el("div", "thread-divider", "<span>" + replies(msgs.length - 1) + "</span>"));
    });
    if (stick) box.scrollTop = box.scrollHeight;
  }

  // ---- channels ----
  function renderChannels() {
    const lists = { channel: $("channel-list"), dm: $("dm-list") };
    for (const kind of Object.keys(lists)) {
      const ul = lists[kind];
      const wanted = state.channels.filter((c) => c.kind === kind);
      if (ul.dataset.sig !== wanted.map((c) => c.id).join(",")) {
        ul.innerHTML = "";
        for (const c of wanted) {
          const li = el("li");
          const b = el("button", "nav-item");
          b.type = "button";
          b.textContent = c.name;
          b.dataset.id = c.id;
          b.addEventListener("click", () => selectChannel(c.id));
          li.appendChild(b);
          ul.appendChild(li);
        }
        ul.dataset.sig = wanted.map((c) => c.id).join(",");
      }
      for (const b of ul.querySelectorAll("button")) {
        const c = state.channels.find((x) => x.id === b.dataset.id);
        const active = c.id === state.channel;
        if (active) state.seen[c.id] = c.latest;
        b.classList.toggle("active", active);
        b.classList.toggle("unread", !active && c.latest > (state.seen[c.id] || "0"));
        if (active) b.setAttribute("aria-current", "page"); else b.removeAttribute("aria-current");
      }
    }
  }

  function selectChannel(id) {
    state.channel = id;
    state.thread = null;
    state.last = "";
    $("thread").hidden = true;
    $("messages").innerHTML = "";
    const name = channelName(id);
    $("channel-title").textContent = name;
    $("channel-topic").textContent = TOPICS[id] || "";
    const input = $("composer-input");
    input.setAttribute("aria-label", "Message " + name);
    input.placeholder = "Message " + name;
    history.replaceState(null, "", "?channel=" + id);
    renderChannels();
    poll();
    input.focus();
  }

  function openThread(ts) {
    state.thread = ts;
    state.lastThread = "";
    $("thread").hidden = false;
    $("thread-messages").innerHTML = "";
    $("thread-channel").textContent = channelName(state.channel);
    poll();
  }

  // ---- polling ----
  let polling = false;
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      const q = "/api/state?channel=" + encodeURIComponent(state.channel) + (state.thread ? "&thread=" + state.thread : "");
      const s = await api(q);
      state.channels = s.channels;
      if (!state.history.length && s.history) state.history = s.history.slice();
      renderChannels();
      const title = channelName(state.channel);
      if ($("channel-title").textContent !== title) selectChannel(state.channel);
      const sig = JSON.stringify(s.messages || []);
      if (sig !== state.last) { state.last = sig; renderList($("messages"), s.messages || [], false); }
      if (state.thread) {
        const tsig = JSON.stringify(s.thread || []);
        if (tsig !== state.lastThread) { state.lastThread = tsig; renderList($("thread-messages"), s.thread || [], true); }
      }
    } catch (e) {
      console.warn("poll failed", e);
    } finally {
      polling = false;
    }
  }

  // ---- composer ----
  async function send(text, threadTs) {
    text = text.trim();
    if (!text) return;
    if (text.startsWith("/")) {
      if (!/^\/model(\s|$)/.test(text)) {
        alert(text.split(/\s/)[0] + " is not a command here: modelbot answers /model");
        return;
      }
      state.history.push(text);
      await api("/api/command", { channel: state.channel, text });
    } else {
      await api("/api/message", { channel: state.channel, text, thread_ts: threadTs || null });
    }
    poll();
  }

  function completions(value) {
    if (/^\/m?o?d?e?l?$/.test(value) && "/model".startsWith(value) && value !== "/model") return [["/model", "", "modelbot's command"]].map((x) => ({ insert: "/model ", ...fmt(x) }));
    const m = value.match(/^\/model (\S*)$/);
    if (!m) return [];
    const word = m[1];
    const found = SUBCOMMANDS.filter(([name]) => name.startsWith(word) && name !== word);
    return found.map((x) => ({ insert: "/model " + x[0] + " ", ...fmt(x) }));
  }
  const fmt = ([name, args, summary]) => ({ label: name, args, summary });

  function showCompletions() {
    const list = $("autocomplete");
    const input = $("composer-input");
    const items = completions(input.value);
    list.innerHTML = "";
    if (!items.length) { list.hidden = true; state.completion = -1; input.removeAttribute("aria-activedescendant"); return; }
    state.completion = Math.min(state.completion, items.length - 1);
    items.forEach((item, i) => {
      const li = el("li", "option" + (i === state.completion ? " selected" : ""),
        "<b>" + esc(item.label) + "</b> <span class=\"args\">" + esc(item.args) + "</span> <span class=\"summary\">" + esc(item.summary) + "</span>");
      li.id = "completion-" + i;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === state.completion ? "true" : "false");
      li.addEventListener("mousedown", (e) => { e.preventDefault(); complete(item); });
      list.appendChild(li);
    });
    list.hidden = false;
    list._items = items;
  }

  function complete(item) {
    const input = $("composer-input");
    input.value = item.insert;
    state.completion = -1;
    showCompletions();
    input.focus();
  }

  function setupComposer() {
    const input = $("composer-input");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-controls", "autocomplete");
    input.addEventListener("input", () => { state.completion = -1; showCompletions(); autosize(input); });
    input.addEventListener("keydown", async (e) => {
      const list = $("autocomplete");
      const open = !list.hidden && list._items && list._items.length;
      if (open && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
        e.preventDefault();
        const n = list._items.length;
        state.completion = e.key === "ArrowDown" ? (state.completion + 1) % n : (state.completion - 1 + n) % n;
        showCompletions();
        return;
      }
      if (open && (e.key === "Tab" || (e.key === "Enter" && state.completion >= 0))) {
        e.preventDefault();
        complete(list._items[Math.max(0, state.completion)]);
        return;
      }
      if (e.key === "Escape" && open) { list.hidden = true; return; }
      if (e.key === "ArrowUp" && !input.value) {
        const last = state.history[state.history.length - 1];
        if (last) { e.preventDefault(); input.value = last; autosize(input); }
        return;
      }
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        const text = input.value;
        input.value = "";
        autosize(input);
        showCompletions();
        await send(text);
      }
    });
    const tinput = $("thread-input");
    tinput.addEventListener("keydown", async (e) => {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        const text = tinput.value;
        tinput.value = "";
        await send(text, state.thread);
      }
    });
    $("thread-close").addEventListener("click", () => { state.thread = null; $("thread").hidden = true; });
    $("composer").addEventListener("submit", (e) => e.preventDefault());
    $("thread-composer").addEventListener("submit", (e) => e.preventDefault());
  }
  function autosize(t) { t.style.height = "auto"; t.style.height = Math.min(t.scrollHeight, 160) + "px"; }

  // Permalinks into the emulated workspace open the channel, and the thread, here.
  document.addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest("a[href]");
    if (!a) return;
    const m = a.href.match(/^https:\/\/emulator\.slack\/archives\/([A-Z0-9]+)\/p(\d+)(\d{6})(?:\?thread_ts=([\d.]+))?/);
    if (!m) return;
    e.preventDefault();
    const [, channel, secs, micros, threadTs] = m;
    if (channel !== state.channel) selectChannel(channel);
    openThread(threadTs || secs + "." + micros);
  });

  setupComposer();
  selectChannel(state.channel);
  setInterval(poll, 1000);
  // The sandbox's own panels (traffic, Try a request, churn's world, PagerDuty): panels.js.
  window.sandboxPage = { api, el, esc };
})();
