/* Automatic logoff warning (Baton access security).
 *
 * The server signs a session out after SESSION_IDLE_TIMEOUT without requests
 * (programs.security.middleware.SessionTimeoutMiddleware). This script asks
 * the server how long is left (a GET that does not count as activity), shows
 * a warning one minute before logoff with a "Stay signed in" button, tells the
 * server when the person is typing or clicking on the page, and goes to the
 * sign-in page once the session has ended. No inline script: configuration
 * comes from data-* attributes on the <script> tag.
 */
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me) { return; }
  var statusUrl = me.dataset.statusUrl;
  var loginUrl = me.dataset.loginUrl;
  var warnSeconds = parseInt(me.dataset.warnSeconds || "60", 10);
  var ACTIVITY_PING_SECONDS = 60;
  var lastPing = Date.now();
  var pollTimer = null;
  var tickTimer = null;
  var deadline = null;
  var banner = null;

  var css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = me.src.replace(/idle\.js(\?.*)?$/, "security.css");
  document.head.appendChild(css);

  function csrfToken() {
    var input = document.querySelector('input[name="csrfmiddlewaretoken"]');
    if (input) { return input.value; }
    var m = document.cookie.match(/(?:^|;\s*)(?:__Host-)?csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function goToLogin(reason) {
    var next = window.location.pathname + window.location.search;
    window.location.assign(loginUrl + "?next=" + encodeURIComponent(next) + "&expired=" + reason);
  }

  function buildBanner() {
    banner = document.createElement("div");
    banner.className = "idle-warning";
    banner.id = "idle-warning";
    banner.setAttribute("role", "alertdialog");
    banner.setAttribute("aria-live", "assertive");
    banner.setAttribute("aria-labelledby", "idle-warning-text");
    var text = document.createElement("p");
    text.id = "idle-warning-text";
    var button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-primary";
    button.id = "idle-stay";
    button.textContent = "Stay signed in";
    button.addEventListener("click", function () { keepAlive(); });
    banner.appendChild(text);
    banner.appendChild(button);
    document.body.appendChild(banner);
  }

  function showWarning() {
    if (!banner) { buildBanner(); }
    var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    banner.querySelector("p").textContent =
      "For your security you will be signed out in " + left + " second" + (left === 1 ? "" : "s") +
      " because of inactivity.";
    banner.hidden = false;
    if (left <= 0) { clearInterval(tickTimer); tickTimer = null; poll(); }
  }

  function hideWarning() {
    if (banner) { banner.hidden = true; }
    if (tickTimer) { clearInterval(tickTimer); tickTimer = null; }
  }

  function schedule(seconds) {
    if (pollTimer) { clearTimeout(pollTimer); }
    pollTimer = setTimeout(poll, Math.max(1, seconds) * 1000);
  }

  function handle(response) {
    if (response.status === 401) { goToLogin("idle"); return null; }
    if (!response.ok) { schedule(30); return null; }
    return response.json();
  }

  function apply(data) {
    if (!data) { return; }
    var left = Math.min(data.idle_seconds, data.absolute_seconds);
    deadline = Date.now() + left * 1000;
    if (left <= 0) { poll(); return; }
    if (left <= warnSeconds) {
      showWarning();
      if (!tickTimer) { tickTimer = setInterval(showWarning, 1000); }
      schedule(left + 1);
    } else {
      hideWarning();
      // Re-check at the warning point, and at least every minute (other tabs).
      schedule(Math.min(60, left - warnSeconds));
    }
  }

  function poll() {
    fetch(statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(handle).then(apply).catch(function () { schedule(30); });
  }

  function keepAlive() {
    lastPing = Date.now();
    return fetch(statusUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() }
    }).then(handle).then(apply).catch(function () { schedule(30); });
  }

  function onActivity() {
    // Typing or clicking counts as activity even without a page load; a
    // visible warning is only dismissed by the button, on purpose.
    if (banner && !banner.hidden) { return; }
    if (Date.now() - lastPing >= ACTIVITY_PING_SECONDS * 1000) { keepAlive(); }
  }

  ["keydown", "pointerdown"].forEach(function (name) {
    document.addEventListener(name, onActivity, { passive: true });
  });
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { poll(); }
  });
  poll();
})();
