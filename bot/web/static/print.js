// The 打印 button of a printable page (hidden until this script runs; Ctrl+P always works).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("print-page");
  if (!button) { return; }
  button.hidden = false;
  button.addEventListener("click", function () { window.print(); });
});
