// The inbox's keyboard and live list (templates/inbox.html).
//   j / ArrowDown  next appeal      k / ArrowUp  previous appeal
//   Enter          open the selected appeal      /  focus the search box (Escape leaves it)
// The list is refreshed by htmx when the event stream says appeals changed: the selection is kept
// (by appeal number) and the rows that changed are marked for a moment.
"use strict";
(function () {
  let selected = null; // the number of the selected appeal
  let fresh = [];
  let opens = 0;

  function rows() {
    return Array.from(document.querySelectorAll("#inbox-results tr.appeal-row"));
  }

  function select(row, scroll) {
    rows().forEach((r) => { r.classList.remove("selected"); r.removeAttribute("aria-selected"); });
    if (!row) { selected = null; return; }
    row.classList.add("selected");
    row.setAttribute("aria-selected", "true");
    selected = row.dataset.number;
    if (scroll) row.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    const list = rows();
    if (!list.length) return;
    const at = list.findIndex((r) => r.dataset.number === selected);
    const next = at < 0 ? (step > 0 ? 0 : list.length - 1) : Math.min(Math.max(at + step, 0), list.length - 1);
    select(list[next], true);
  }

  function typing(target) {
    return target instanceof HTMLElement &&
      (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    switch (event.key) {
      case "j": case "ArrowDown": move(1); break;
      case "k": case "ArrowUp": move(-1); break;
      case "Enter": {
        const row = rows().find((r) => r.dataset.number === selected);
        if (!row) return;
        window.location.href = row.dataset.href;
        break;
      }
      case "/": {
        const box = document.getElementById("inbox-search");
        if (!box) return;
        box.focus();
        box.select();
        break;
      }
      default: return;
    }
    event.preventDefault();
  });

  document.addEventListener("click", (event) => {
    const row = event.target instanceof Element ? event.target.closest("#inbox-results tr.appeal-row") : null;
    if (!row || event.target.closest("a")) return;
    select(row, false);
    window.location.href = row.dataset.href;
  });

  // The stream said which appeals changed: remember them to mark after the list is swapped in.
  document.addEventListener("htmx:sseMessage", (event) => {
    try {
      fresh = JSON.parse(event.detail.data).numbers || [];
    } catch (_) {
      fresh = [];
    }
  });

  // A stream that was broken (server restarted, network lost) reconnects by itself; what changed
  // meanwhile was not announced, so the list is read again once it is back.
  document.addEventListener("htmx:sseOpen", () => {
    opens += 1;
    if (opens > 1) {
      const results = document.getElementById("inbox-results");
      if (results) htmx.trigger(results, "inbox:refresh");
    }
  });

  document.addEventListener("htmx:afterSwap", (event) => {
    if (!(event.target instanceof Element) || event.target.id !== "inbox-results") return;
    const list = rows();
    select(list.find((r) => r.dataset.number === selected) || null, false);
    list.filter((r) => fresh.includes(r.dataset.number)).forEach((r) => {
      r.classList.add("fresh");
      window.setTimeout(() => r.classList.remove("fresh"), 4000);
    });
    fresh = [];
  });
})();
