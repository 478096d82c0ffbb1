/* Baton console behaviour. No inline handlers: everything is wired here. */
(function () {
  "use strict";

  function typing(target) {
    var tag = target && target.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }

  function submit(form) {
    if (!form) return;
    if (typeof form.requestSubmit === "function") form.requestSubmit();
    else form.submit();
  }

  document.addEventListener("DOMContentLoaded", function () {
    // Filters apply as soon as a value changes.
    document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { submit(el.form); });
    });

    // Select all on this page, and highlight selected rows.
    var all = document.getElementById("select-all");
    var boxes = Array.prototype.slice.call(document.querySelectorAll("input[name=ids]"));
    function paint() {
      boxes.forEach(function (b) {
        var row = b.closest("tr");
        if (row) row.classList.toggle("is-selected", b.checked);
      });
    }
    if (all) {
      all.addEventListener("change", function () {
        boxes.forEach(function (b) { b.checked = all.checked; });
        paint();
      });
    }
    boxes.forEach(function (b) { b.addEventListener("change", paint); });

    // Bulk bar: show only the inputs the chosen action needs.
    var action = document.getElementById("bulk-action");
    function showFor() {
      if (!action) return;
      document.querySelectorAll("[data-for-action]").forEach(function (el) {
        var wanted = el.getAttribute("data-for-action").split(" ");
        el.classList.toggle("is-hidden", wanted.indexOf(action.value) === -1);
      });
    }
    if (action) { action.addEventListener("change", showFor); showFor(); }

    // Snooze: the date field only for "Until…".
    var duration = document.getElementById("snooze-duration");
    function showUntil() {
      document.querySelectorAll("[data-for-duration]").forEach(function (el) {
        el.classList.toggle("is-hidden", !duration || duration.value !== el.getAttribute("data-for-duration"));
      });
    }
    if (duration) { duration.addEventListener("change", showUntil); showUntil(); }

    // Keyboard shortcuts (listed on each page).
    var rows = Array.prototype.slice.call(document.querySelectorAll("[data-item-row]"));
    var cursor = -1;
    var pendingG = false;
    function moveTo(i) {
      if (!rows.length) return;
      if (cursor >= 0 && rows[cursor]) rows[cursor].classList.remove("is-cursor");
      cursor = Math.max(0, Math.min(rows.length - 1, i));
      rows[cursor].classList.add("is-cursor");
      rows[cursor].scrollIntoView({ block: "nearest" });
    }
    document.addEventListener("keydown", function (ev) {
      if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev.target)) return;
      var key = ev.key;
      if (pendingG) {
        pendingG = false;
        var dest = { m: "/console/queue/mine/", u: "/console/queue/unassigned/", o: "/console/queue/open/" }[key];
        if (dest) { window.location.href = dest; ev.preventDefault(); }
        return;
      }
      if (key === "g") { pendingG = true; return; }
      if (key === "n") {
        var claim = document.getElementById("claim-next-form");
        if (claim) { ev.preventDefault(); submit(claim); }
      } else if (key === "j") { ev.preventDefault(); moveTo(cursor + 1); }
      else if (key === "k") { ev.preventDefault(); moveTo(cursor - 1); }
      else if (key === "Enter" && cursor >= 0) {
        var link = rows[cursor].querySelector("[data-item-link]");
        if (link) { ev.preventDefault(); window.location.href = link.href; }
      } else if (key === "r") {
        var note = document.getElementById("resolve-note");
        if (note) { ev.preventDefault(); note.focus(); }
      } else if (key === "s") {
        var snooze = document.getElementById("snooze-form");
        if (snooze) { ev.preventDefault(); submit(snooze); }
      }
    });
  });
})();
