// Slack's mrkdwn to HTML: *bold*, _italic_, ~strike~, `code`, ```pre```, > quotes, <url|text>, <@U..>,
// <#C..>, <!here>, :emoji:. Everything else is escaped.
(function () {
  const EMOJI = {
    warning: "⚠️", white_check_mark: "✅", x: "❌", no_entry: "⛔", double_vertical_bar: "⏸️",
    rotating_light: "🚨", rocket: "🚀", repeat: "🔁", hourglass_flowing_sand: "⏳", grey_question: "❔",
    rewind: "⏪", red_circle: "🔴", no_entry_sign: "🚫", hourglass: "⌛", clock3: "🕒", bar_chart: "📊",
    arrow_forward: "▶️", zzz: "💤", white_circle: "⚪", unreachable: "🔌", tada: "🎉", star: "⭐",
    package: "📦", memory: "🧠", large_yellow_circle: "🟡", large_green_circle: "🟢", information_source: "ℹ️",
    heavy_minus_sign: "➖", fast_forward: "⏩", boom: "💥", arrows_counterclockwise: "🔄",
    heavy_check_mark: "✔️", large_blue_circle: "🔵", green_circle: "🟢", red_circle_: "🔴",
    eyes: "👀", bell: "🔔", pager: "📟", chart_with_upwards_trend: "📈", chart_with_downwards_trend: "📉",
    construction: "🚧", stopwatch: "⏱️", moneybag: "💰", dollar: "💵", gear: "⚙️", link: "🔗", mag: "🔍",
  };
  const esc = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  // Slack text arrives with &amp; &lt; &gt; escaped; undo that before escaping once for HTML.
  const unslack = (s) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");

  const NAMES = { U0YOU: "You", U0MODELBOT: "modelbot" };
  function render(text, names) {
    if (!text) return "";
    names = names || NAMES;
    const keep = [];
    const hold = (html) => { keep.push(html); return "\u0000" + (keep.length - 1) + "\u0000"; };
    let s = String(text);
    s = s.replace(/```([\s\S]*?)```/g, (_, code) => hold("<pre>" + esc(unslack(code.replace(/^\n/, ""))) + "</pre>"));
    s = s.replace(/<([^<>\s][^<>]*)>/g, (_, inner) => {
      const [target, label] = inner.split("|");
      if (target.startsWith("@")) {
        const id = target.slice(1);
        return hold('<span class="mention">@' + esc(label || (names && names[id]) || id) + "</span>");
      }
      if (target.startsWith("#")) return hold('<span class="mention">#' + esc(label || target.slice(1)) + "</span>");
      if (target.startsWith("!date^")) {
        // <!date^epoch^format|fallback>: Slack shows the time in the reader's zone; the fallback is enough here.
        const epoch = Number(target.split("^")[1]);
        const shown = Number.isFinite(epoch) ? new Date(epoch * 1000).toLocaleString([], { dateStyle: "medium", timeStyle: "short" }) : (label || "");
        return hold("<time>" + esc(shown) + "</time>");
      }
      if (target.startsWith("!subteam^")) return hold('<span class="mention">@' + esc(label || "oncall") + "</span>");
      if (target.startsWith("!")) return hold('<span class="mention">@' + esc(label || target.slice(1).split("^")[0]) + "</span>");
      if (/^(https?:|mailto:)/.test(target)) {
        return hold('<a href="' + esc(unslack(target)) + '" target="_blank" rel="noopener">' + esc(unslack(label || target)) + "</a>");
      }
      return "<" + inner + ">";
    });
    s = s.replace(/`([^`\n]+)`/g, (_, code) => hold("<code>" + esc(unslack(code)) + "</code>"));
    s = esc(unslack(s));
    s = s.replace(/(^|[\s(>\u0000])\*(?!\s)([^*\n]+?)\*(?=$|[\s.,;:!?)\u0000])/g, "$1<b>$2</b>");
    s = s.replace(/(^|[\s(>\u0000])_(?!\s)([^_\n]+?)_(?=$|[\s.,;:!?)\u0000])/g, "$1<i>$2</i>");
    s = s.replace(/(^|[\s(>\u0000])~(?!\s)([^~\n]+?)~(?=$|[\s.,;:!?)\u0000])/g, "$1<s>$2</s>");
    s = s.replace(/:([a-z0-9_+-]+):/g, (m, name) => EMOJI[name] ? '<span class="emoji" title=":' + name + ':">' + EMOJI[name] + "</span>" : m);
    const lines = s.split("\n");
    const out = [];
    let quote = [];
    const flush = () => { if (quote.length) { out.push("<blockquote>" + quote.join("<br>") + "</blockquote>"); quote = []; } };
    for (const line of lines) {
      if (line.startsWith("&gt; ") || line === "&gt;") quote.push(line.replace(/^&gt; ?/, ""));
      else { flush(); out.push(line); }
    }
    flush();
    s = out.join("\n").replace(/\n/g, "<br>").replace(/<\/blockquote><br>/g, "</blockquote>").replace(/<br><blockquote>/g, "<blockquote>");
    return s.replace(/\u0000(\d+)\u0000/g, (_, i) => keep[Number(i)]);
  }

  function plain(obj) {
    if (!obj) return "";
    return obj.type === "mrkdwn" ? render(obj.text) : esc(obj.text || "").replace(/:([a-z0-9_+-]+):/g, (m, n) => EMOJI[n] || m);
  }

  window.mrkdwn = { render, plain, esc };
})();
