// The reveal view: the value stays on the page for data-seconds seconds, then it is removed from the
// document (not just hidden). Leaving the page removes it at once. No inline script (CSP).
(function () {
  "use strict";
  var box = document.getElementById("reveal");
  var value = document.getElementById("revealed");
  if (!box || !value) { return; }
  var left = parseInt(box.getAttribute("data-seconds"), 10) || 30;
  var countdown = document.getElementById("reveal-countdown");
  var gone = document.getElementById("reveal-gone");

  function remove() {
    if (value.parentNode) { value.parentNode.removeChild(value); }
    countdown.hidden = true;
    gone.hidden = false;
    box.setAttribute("data-state", "removed");
  }

  function tick() {
    left -= 1;
    if (left <= 0) { remove(); return; }
    countdown.textContent = "Shown for " + left + " s more; this reveal was audited.";
    setTimeout(tick, 1000);
  }

  window.addEventListener("pagehide", remove);
  setTimeout(tick, 1000);
}());
