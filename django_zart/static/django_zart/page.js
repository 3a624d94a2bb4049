// The execution page: open the step a timeline bar points to, and reload the page every
// few seconds while the refresh box is ticked (remembered across pages).
(function () {
  "use strict";
  var KEY = "django_zart.refresh";

  function openStep(id) {
    var target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") {
      target.open = true;
    }
  }

  function openTarget() {
    openStep(window.location.hash.slice(1));
  }

  function setUpRefresh() {
    var box = document.getElementById("zart-refresh");
    if (!box) {
      return;
    }
    var seconds = Number(box.dataset.seconds) || 3;
    var timer = null;
    function schedule() {
      window.clearTimeout(timer);
      if (box.checked) {
        timer = window.setTimeout(function () { window.location.reload(); }, seconds * 1000);
      }
    }
    try {
      box.checked = window.localStorage.getItem(KEY) === "on";
    } catch (e) {
      box.checked = false;
    }
    box.addEventListener("change", function () {
      try {
        window.localStorage.setItem(KEY, box.checked ? "on" : "off");
      } catch (e) {
        // Storage refused (private mode): the box still works for this page.
      }
      schedule();
    });
    schedule();
  }

  document.addEventListener("DOMContentLoaded", function () {
    openTarget();
    setUpRefresh();
  });
  // A second click on the same bar changes no hash: open its block all the same.
  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest('a[href^="#step-"]');
    if (link) {
      openStep(link.getAttribute("href").slice(1));
    }
  });
  window.addEventListener("hashchange", openTarget);
})();
