// keyturn console: small progressive enhancements; every page works without this file.
// "Select all" checkboxes: <input type="checkbox" data-select-all="NAME"> toggles every
// checkbox named NAME in the same form.
"use strict";
document.addEventListener("change", function (event) {
  var box = event.target;
  if (!(box instanceof HTMLInputElement) || !box.dataset.selectAll) { return; }
  var form = box.form || document;
  form.querySelectorAll('input[type="checkbox"][name="' + box.dataset.selectAll + '"]').forEach(function (b) {
    b.checked = box.checked;
  });
});
