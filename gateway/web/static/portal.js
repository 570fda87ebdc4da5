/* Portal behaviour, progressive: every form works without this script. No dependencies, no network but our own. */
(function () {
  "use strict";
  // Copy buttons for API examples and one-time tokens.
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("button.copy");
    if (!btn) return;
    var src = document.getElementById(btn.getAttribute("data-copy"));
    if (!src || !navigator.clipboard) return;
    navigator.clipboard.writeText(src.textContent).then(function () {
      btn.setAttribute("data-done", "1");
      setTimeout(function () { btn.removeAttribute("data-done"); }, 1500);
    });
  });
  // Upload with a progress bar: XHR (fetch has no upload progress), CSRF token in a header.
  var form = document.querySelector("form[data-upload]");
  if (!form) return;
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var box = form.querySelector(".progress"), bar = form.querySelector("progress");
    var pct = form.querySelector(".pct"), status = form.querySelector(".status");
    var button = form.querySelector("button[type=submit]"), outcome = document.getElementById("outcome");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    xhr.setRequestHeader("X-CSRF-Token", form.querySelector("input[name=csrf]").value);
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable) return;
      var p = Math.round((100 * e.loaded) / e.total);
      bar.value = p; pct.textContent = p + "%";
      if (p === 100) status.textContent = form.getAttribute("data-checking") || "…";
    });
    xhr.addEventListener("load", function () {
      button.disabled = false;
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (body && body.redirect) { window.location.assign(body.redirect); return; }
      if (body && body.html) { outcome.innerHTML = body.html; status.textContent = ""; outcome.querySelector("h2").setAttribute("tabindex", "-1"); outcome.querySelector("h2").focus(); return; }
      status.textContent = (body && (body.detail || body.title)) || ("HTTP " + xhr.status);
    });
    xhr.addEventListener("error", function () { button.disabled = false; status.textContent = "network error"; });
    box.hidden = false; bar.value = 0; pct.textContent = "0%"; status.textContent = ""; outcome.innerHTML = "";
    button.disabled = true;
    xhr.send(new FormData(form));
  });
})();
