// Small progressive enhancements for the staff pages; every page works without this file.
"use strict";

// Schedules: while staff type a cron expression, refresh the preview region (which has
// aria-live="polite") with the server's own description and next run times. Without this
// script the "预览" button shows the same thing.
(function () {
  function livePreview(input) {
    var region = document.getElementById(input.getAttribute("data-preview-target"));
    var url = input.getAttribute("data-preview-url");
    if (!region || !url || !window.fetch) {
      return;
    }
    var timer = null;
    var latest = 0;
    input.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(function () {
        var asked = ++latest;
        fetch(url + "?cron=" + encodeURIComponent(input.value), {
          credentials: "same-origin",
          headers: { Accept: "text/html" },
        })
          .then(function (response) {
            // A login page (session expired) is not a preview: leave the region as it is.
            var ours = response.ok && response.headers.get("X-Fragment") === "cron-preview";
            return ours ? response.text() : null;
          })
          .then(function (html) {
            if (html !== null && asked === latest) {
              region.innerHTML = html;
            }
          })
          .catch(function () {});
      }, 300);
    });
  }

  var inputs = document.querySelectorAll("input[data-preview-url]");
  for (var i = 0; i < inputs.length; i++) {
    livePreview(inputs[i]);
  }
})();
