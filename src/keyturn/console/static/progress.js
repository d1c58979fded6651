// Live progress of "rotate now": polls the rotation's progress fragment (rebuilt from the journal on
// every request) until the rotation settles. A server that stops answering is said so on the page and
// polled more slowly; when it answers again the journal's state shows. A server that restarted has no
// session any more: the page offers to sign in again and come back here. No inline script (CSP).
(function () {
  "use strict";
  var panel = document.getElementById("progress");
  if (!panel) { return; }
  var url = panel.getAttribute("data-progress-url");
  var body = document.getElementById("progress-body");
  var conn = document.getElementById("progress-conn");
  var FAST = 600, SLOW = 1500;
  var lost = false;

  function say(text, kind) {
    conn.textContent = text;
    conn.className = "flash flash-" + kind;
    conn.hidden = !text;
  }

  function signInAgain() {
    var here = location.pathname + location.search + "#progress";
    var link = document.createElement("a");
    link.href = "/console/signin?next=" + encodeURIComponent(here);
    link.textContent = "Sign in again to see the rotation's state";
    say("The keyturn server is back but your session has ended (a restart signs everyone out). ", "error");
    conn.appendChild(link);
    panel.setAttribute("data-state", "signed-out");
  }

  function tick() {
    fetch(url, {credentials: "same-origin", cache: "no-store", redirect: "manual",
                headers: {"HX-Request": "true", "Accept": "text/html"}})
      .then(function (resp) {
        if (resp.status === 401 || resp.type === "opaqueredirect") { signInAgain(); return; }
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.text().then(function (html) {
          body.innerHTML = html;  // our own server-rendered, escaped fragment
          var state = resp.headers.get("X-Rotation-State") || "running";
          panel.setAttribute("data-state", state);
          if (lost) {
            lost = false;
            say("The keyturn server answers again: this is the rotation's state from its journal.", "ok");
          }
          if (state !== "settled") { setTimeout(tick, FAST); }
        });
      })
      .catch(function () {
        lost = true;
        panel.setAttribute("data-state", "unreachable");
        say("The keyturn server is not answering. The rotation finishes on the server or is settled by " +
            "recovery when it restarts; its state shows here as soon as the server is back.", "error");
        setTimeout(tick, SLOW);
      });
  }

  tick();
}());
